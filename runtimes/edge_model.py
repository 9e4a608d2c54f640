"""The edge tier's chat model: a loaded transformers causal LM behind LangChain's chat-model API."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field, PrivateAttr

from tierflow.runtimes.edge_decode import Prepared, StopFilter, generate_ids, stream_decode
from tierflow.runtimes.edge_prompt import chat_dicts
from tierflow.runtimes.errors import ContextLengthExceeded, TierTimeoutError, TierUnavailableError


class EdgeChatModel(BaseChatModel):
    """A transformers causal LM served in-process, with tierflow's accounting and limits.

    Hand-written on BaseChatModel because langchain-huggingface is not a dependency. Adds what every
    tier has: usage metadata on each message (and a closing usage chunk when streaming), the tier and
    model on ``response_metadata``, a context-length check before decoding, a deadline that stops
    decoding and raises TierTimeoutError, and a lock because one model must not decode two prompts at
    once when graph branches run in threads. JSON-schema constrained decoding is not available here:
    a ``response_format`` only adds an instruction to the prompt and the router validates the answer.
    """

    tier: str = Field("edge")
    model_name: str = Field("", description="model alias for accounting: the GGUF file name")
    model_path: str = Field("", description="the GGUF the weights were converted from")
    max_tokens: int = 256
    temperature: float = 0.0
    n_ctx: int = 2048
    timeout_s: float = 60.0
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    quantize: str = "none"

    _model: Any = PrivateAttr(default=None)
    _tokenizer: Any = PrivateAttr(default=None)
    _eos_ids: set[int] = PrivateAttr(default_factory=set)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "tierflow-edge-torch"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"tier": self.tier, "model_name": self.model_name, "device": self.device, "dtype": self.dtype,
                "quantize": self.quantize}

    @property
    def hf_model(self) -> Any:
        """The loaded transformers model (quantized or moved to the device already)."""
        if self._model is None:
            raise TierUnavailableError(self.tier, "no model is loaded; build it with tierflow.runtimes.edge.build_edge")
        return self._model

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer, with its chat template."""
        if self._tokenizer is None:
            raise TierUnavailableError(self.tier, "no tokenizer is loaded; build it with "
                                       "tierflow.runtimes.edge.build_edge")
        return self._tokenizer

    def attach(self, model: Any, tokenizer: Any) -> EdgeChatModel:
        """Give this chat model its loaded weights and tokenizer (``build_edge`` does this)."""
        self._model, self._tokenizer = model, tokenizer
        eos = getattr(model.generation_config, "eos_token_id", None)
        ids = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id}
        self._eos_ids = {int(i) for i in ids if i is not None}
        return self

    def model_alias(self) -> str:
        """Short model name for accounting: the GGUF file name."""
        return self.model_name

    def _get_invocation_params(self, stop: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        return {**super()._get_invocation_params(stop=stop, **kwargs), "tier": self.tier,
                "model_name": self.model_alias()}

    def get_token_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` under this model's own tokenizer (LangChain's default would fetch GPT-2's)."""
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def get_num_tokens(self, text: str) -> int:
        """Exact token count of ``text`` on this tier."""
        return len(self.get_token_ids(text))

    # -- preparing a call -------------------------------------------------------------------------

    def _prepare(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any],
                 started: float) -> Prepared:
        chat = chat_dicts(messages, kwargs.get("response_format"))
        encoded = self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True,
                                                     return_dict=True, return_tensors="pt")
        prompt_tokens = int(encoded["input_ids"].shape[1])
        max_new = int(kwargs.get("max_tokens") or self.max_tokens)
        if prompt_tokens + max_new > self.n_ctx:
            raise ContextLengthExceeded(self.tier, prompt_tokens, self.n_ctx - max_new)
        timeout_s = float(kwargs.get("timeout_s") or self.timeout_s)
        temperature = kwargs.get("temperature")
        return Prepared(
            input_ids=encoded["input_ids"].to(self.device),
            attention_mask=encoded["attention_mask"].to(self.device),
            prompt_tokens=prompt_tokens,
            max_new_tokens=max_new,
            temperature=float(self.temperature if temperature is None else temperature),
            stop=list(stop or []),
            deadline=started + timeout_s,
            timeout_s=timeout_s,
        )

    def _acquire(self, call: Prepared) -> None:
        """Wait for the model, but not past the call's deadline."""
        if not self._lock.acquire(timeout=max(0.0, call.deadline - time.monotonic())):
            raise TierTimeoutError(self.tier, call.timeout_s)

    def _decode(self, call: Prepared, cancel: threading.Event, streamer: Any = None) -> tuple[list[int], Any]:
        """Run ``generate`` for one prepared call; returns the new token ids and the interrupt criterion."""
        return generate_ids(self.hf_model, self.tokenizer, self._eos_ids, call, cancel, device=self.device,
                            seed=self.seed, streamer=streamer)

    def _usage(self, call: Prepared, new_ids: list[int]) -> dict[str, int]:
        while new_ids and new_ids[-1] in self._eos_ids:  # the end-of-turn token is not output
            new_ids = new_ids[:-1]
        return {"input_tokens": call.prompt_tokens, "output_tokens": len(new_ids),
                "total_tokens": call.prompt_tokens + len(new_ids)}

    def _finish_reason(self, call: Prepared, new_ids: list[int], stopped: bool) -> str:
        if stopped or (new_ids and new_ids[-1] in self._eos_ids):
            return "stop"
        return "length" if len(new_ids) >= call.max_new_tokens else "stop"

    # -- LangChain entry points ------------------------------------------------------------------

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = self._prepare(messages, stop, kwargs, time.monotonic())
        self._acquire(call)
        try:
            new_ids, interrupt = self._decode(call, threading.Event())
        finally:
            self._lock.release()
        if interrupt.timed_out:
            raise TierTimeoutError(self.tier, call.timeout_s)
        stops = StopFilter(call.stop)
        text = stops.feed(self.tokenizer.decode(new_ids, skip_special_tokens=True)) + stops.flush()
        reason = self._finish_reason(call, new_ids, stops.hit)
        message = AIMessage(content=text, usage_metadata=self._usage(call, new_ids),
                            response_metadata={"tier": self.tier, "model_name": self.model_alias(),
                                               "finish_reason": reason})
        return ChatResult(generations=[ChatGeneration(message=message, generation_info={"finish_reason": reason})])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        call = self._prepare(messages, stop, kwargs, time.monotonic())
        self._acquire(call)
        stops = StopFilter(call.stop)
        decoding = stream_decode(lambda cancel, streamer: self._decode(call, cancel, streamer), self.tokenizer,
                                 call, self.tier)
        try:
            while True:
                try:
                    piece = next(decoding)
                except StopIteration as done:
                    new_ids: list[int] = done.value
                    break
                text = stops.feed(piece)
                if text:
                    chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
                    if run_manager:
                        run_manager.on_llm_new_token(text, chunk=chunk)
                    yield chunk
        finally:
            decoding.close()  # a consumer that stops reading ends decoding too
            self._lock.release()
        tail = stops.flush()
        if tail:
            yield ChatGenerationChunk(message=AIMessageChunk(content=tail))
        reason = self._finish_reason(call, new_ids, stops.hit)
        yield ChatGenerationChunk(
            message=AIMessageChunk(content="", usage_metadata=self._usage(call, new_ids), chunk_position="last",
                                   response_metadata={"tier": self.tier, "model_name": self.model_alias(),
                                                      "finish_reason": reason}),
            generation_info={"finish_reason": reason})
