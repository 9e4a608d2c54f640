"""The mobile tier: a quantized GGUF run in-process by llama.cpp behind LangChain's chat-model API."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from langchain_community.chat_models.llamacpp import ChatLlamaCpp
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from pydantic import Field, PrivateAttr

from tierflow.runtimes.checks import CONFIDENCE_KEY
from tierflow.runtimes.config import TierConfig
from tierflow.runtimes.cost import chat_prompt_tokens
from tierflow.runtimes.errors import ContextLengthExceeded, TierConfigError, TierTimeoutError, TierUnavailableError
from tierflow.runtimes.schema import json_object_format


def shipped_model_path(name: str = "smollm2-135m") -> Path:
    """Path of a shipped GGUF (default SmolLM2-135M, the ``tiny`` tier), verified; see tierflow.runtimes.models."""
    from tierflow.runtimes.models import model_path

    return model_path(name)


class MobileChatModel(ChatLlamaCpp):
    """ChatLlamaCpp plus what tierflow needs and the community class lacks.

    Adds: usage metadata on every message (token accounting), a context-length check that fails
    with a typed error before llama.cpp is called, and a lock because one ``Llama`` object must not
    decode two prompts at once when graph branches run in threads.
    """

    tier: str = Field("mobile")
    timeout_s: float = Field(60.0, gt=0, description="wall-clock limit of one call, queueing included")
    _lock: threading.RLock = PrivateAttr(default_factory=threading.RLock)

    def _get_invocation_params(self, stop: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        return {**super()._get_invocation_params(stop=stop, **kwargs), "tier": self.tier,
                "model_name": self.model_alias()}

    def get_num_tokens(self, text: str) -> int:
        """Tokens of ``text`` under this model's own tokenizer."""
        return len(self.client.tokenize(text.encode("utf-8"), add_bos=False))

    def _prompt_tokens(self, messages: list[BaseMessage]) -> int:
        texts = (m.text if isinstance(m.content, list) else str(m.content) for m in messages)
        return chat_prompt_tokens(sum(self.get_num_tokens(text) for text in texts), len(messages))

    def _check_fits(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> int:
        n_ctx = self.client.n_ctx()
        reserve = int(kwargs.get("max_tokens") or self.max_tokens or 0)
        prompt = self._prompt_tokens(messages)
        if prompt + reserve > n_ctx:
            raise ContextLengthExceeded(self.tier, prompt, n_ctx - reserve)
        return prompt

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        usage: dict[str, Any] = {}
        text = "".join(self._decode(messages, stop, kwargs, usage))
        confidence = usage.pop("confidence", None)
        response = {"choices": [{"message": {"role": "assistant", "content": text},
                                 "finish_reason": usage.pop("finish_reason", None)}], "usage": usage}
        result = self._create_chat_result(response)
        if confidence:
            result.generations[0].message.response_metadata[CONFIDENCE_KEY] = confidence
        return result

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        usage: dict[str, Any] = {}
        for piece in self._decode(messages, stop, kwargs, usage):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        yield ChatGenerationChunk(
            message=AIMessageChunk(content="", usage_metadata={
                "input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"],
                "total_tokens": usage["total_tokens"]}, response_metadata={
                    "tier": self.tier, "model_name": self.model_alias(),
                    **({CONFIDENCE_KEY: usage["confidence"]} if usage.get("confidence") else {})}),
            generation_info={"finish_reason": usage.get("finish_reason")})

    def _decode(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any],
                usage: dict[str, Any]) -> Iterator[str]:
        """Decode token by token so a call can be cut off at its deadline; fills ``usage`` at the end.

        llama.cpp's own non-streaming call cannot be interrupted (its per-token callbacks swallow
        exceptions), so every call streams internally and checks the clock between tokens.
        """
        kwargs = dict(kwargs)
        timeout_s = float(kwargs.pop("timeout_s", None) or self.timeout_s)
        deadline = time.monotonic() + timeout_s
        self._check_fits(messages, kwargs)
        params = {**self._get_parameters(stop), **_llamacpp_response_format(kwargs)}
        tracker = TokenLogprobs()
        params["logits_processor"] = [*(params.get("logits_processor") or []), tracker]
        with self._locked(deadline, timeout_s):
            stream = self.client.create_chat_completion(messages=self._create_message_dicts(messages),
                                                        stream=True, **params)
            produced, finish = 0, None
            try:
                for chunk in stream:
                    choice = chunk["choices"][0]
                    piece = (choice.get("delta") or {}).get("content")
                    finish = choice.get("finish_reason") or finish
                    if piece:
                        produced += 1
                        yield piece
                    if time.monotonic() > deadline:
                        raise TierTimeoutError(self.tier, timeout_s)
            finally:
                stream.close()
            # After a streamed call the context holds the prompt plus every generated token except a
            # last one cut by the length limit, which is sampled but never evaluated.
            prompt = max(0, self.client.n_tokens - produced + (1 if finish == "length" else 0))
        usage.update(prompt_tokens=prompt, completion_tokens=produced, total_tokens=prompt + produced,
                     finish_reason=finish, confidence=tracker.summary())

    @contextmanager
    def _locked(self, deadline: float, timeout_s: float) -> Iterator[None]:
        """Hold the decode lock, giving up with TierTimeoutError if it is not free before the deadline."""
        if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise TierTimeoutError(self.tier, timeout_s)
        try:
            yield
        finally:
            self._lock.release()

    def _create_chat_result(self, response: dict) -> ChatResult:
        result = super()._create_chat_result(response)
        usage = response.get("usage") or {}
        for generation in result.generations:
            message = generation.message
            if isinstance(message, AIMessage):
                message.usage_metadata = {
                    "input_tokens": int(usage.get("prompt_tokens", 0)),
                    "output_tokens": int(usage.get("completion_tokens", 0)),
                    "total_tokens": int(usage.get("total_tokens", 0)),
                }
                message.response_metadata.update({"tier": self.tier, "model_name": self.model_alias()})
        return result

    def model_alias(self) -> str:
        """Short model name for accounting: the GGUF file name."""
        return Path(str(self.model_path)).name


class TokenLogprobs:
    """A llama.cpp logits processor that records the log-probability of every token the model chose.

    llama-cpp-python returns logprobs only for models loaded with ``logits_all=True`` (a logits row per context
    position: 2.4 GB for Qwen's vocabulary at n_ctx 4096), so this reads the one row it samples from instead: each
    call keeps the log-softmax of the current logits, and the next call, whose input ids end with the token chosen
    from them, looks that token up. The distribution is the model's own, before the JSON grammar masks it, so a
    reply the grammar forced shows up as low confidence. The end-of-sequence token is not counted.
    """

    def __init__(self) -> None:
        self._previous: np.ndarray | None = None
        self.logprobs: list[float] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self._previous is not None and len(input_ids):
            token = int(input_ids[-1])
            if 0 <= token < self._previous.shape[0]:
                self.logprobs.append(float(self._previous[token]))
        logits = np.asarray(scores, dtype=np.float32)
        top = float(logits.max())
        self._previous = logits - (top + math.log(float(np.exp(logits - top).sum())))
        return scores

    def summary(self) -> dict[str, float] | None:
        """Mean and minimum log-probability over the chosen tokens, or None before any was chosen."""
        if not self.logprobs:
            return None
        return {"logprob_mean": round(sum(self.logprobs) / len(self.logprobs), 4),
                "logprob_min": round(min(self.logprobs), 4), "tokens": len(self.logprobs)}


def _llamacpp_response_format(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with any schema-carrying response format in llama.cpp's grammar-constrained form."""
    if kwargs.get("response_format") is None:
        return kwargs
    return {**kwargs, "response_format": json_object_format(kwargs["response_format"])}


def build_mobile(name: str, config: TierConfig) -> MobileChatModel:
    """Load the tier's GGUF (its shipped model unless ``model_path`` is set) into a chat model."""
    path = Path(config.model_path) if config.model_path else shipped_model_path(config.shipped)
    if not path.is_file():
        raise TierConfigError(f"tier {name!r}: model_path {path} does not exist")
    try:
        return MobileChatModel(
            tier=name,
            model_path=str(path),
            n_ctx=config.n_ctx,
            n_threads=config.n_threads,
            n_batch=min(512, config.n_ctx),
            max_tokens=config.max_tokens,
            temperature=config.temperature,
            seed=config.seed,
            timeout_s=config.timeout_s,
            verbose=False,
        )
    except (ValueError, RuntimeError, OSError) as exc:  # llama.cpp reports load failures as ValueError
        raise TierUnavailableError(name, f"could not load {path.name}: {exc}") from exc
