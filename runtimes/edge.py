"""The edge tier: transformers weights run in-process by torch behind LangChain's chat-model API.

The weights come from a GGUF (the shipped SmolLM2 unless the tier names another): transformers' GGUF
support de-quantizes it once, the result is cached on disk as safetensors + tokenizer, and later loads
read the cache. On CPU the linear layers can be quantized to int8 (dynamic quantization); on CUDA the
model runs in bf16. An edge tier served by a local Ollama or llama.cpp server is declared as
``kind: openai`` with a loopback ``base_url`` instead and needs nothing from this module.

torch and transformers are imported lazily so that importing ``runtimes`` stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field, PrivateAttr
from tierflow.runtimes.config import TierConfig
from tierflow.runtimes.errors import ContextLengthExceeded, TierConfigError, TierTimeoutError, TierUnavailableError
from tierflow.runtimes.mobile import shipped_model_path

# Bumped whenever the layout of a converted directory changes, so stale caches are not reused.
_CACHE_FORMAT = "1"
_MANIFEST = "tierflow-edge.json"
# Used when a GGUF carries no chat template: one "role: text" line per message.
_PLAIN_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def cache_root() -> Path:
    """Root of tierflow's on-disk caches: ``$TIERFLOW_CACHE`` or ``~/.cache/tierflow``."""
    return Path(os.environ.get("TIERFLOW_CACHE") or Path.home() / ".cache" / "tierflow").expanduser()


def gguf_fingerprint(path: Path) -> str:
    """A cache key for a GGUF: name, size, mtime and the hash of its first and last MiB.

    Hashing the whole file (100 MB for SmolLM2, gigabytes for real models) would cost more than the
    cached load it guards; this changes whenever the file is replaced or rewritten.
    """
    stat = path.stat()
    digest = hashlib.sha256(f"{_CACHE_FORMAT}|{path.name}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 20))
        if stat.st_size > 2 << 20:
            handle.seek(-(1 << 20), os.SEEK_END)
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:20]


def converted_dir(source: Path, root: Path | None = None) -> Path:
    """Where the converted weights of ``source`` live (or will live) in the cache."""
    return (root or cache_root()) / "edge" / f"{source.stem}-{gguf_fingerprint(source)}"


def convert_gguf(source: Path, root: Path | None = None) -> Path:
    """Convert ``source`` to transformers weights in the cache once and return the directory.

    The work happens in a private temporary directory that is renamed into place at the end, so
    concurrent builds and interrupted conversions never leave a half-written cache entry behind.
    """
    target = converted_dir(source, root)
    if (target / _MANIFEST).is_file():
        return target
    import torch
    import transformers
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():  # a directory without a manifest was not written by us completely: start over
        shutil.rmtree(target)
    tmp = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        # ``from_pretrained(gguf_file=...)`` needs ``accelerate`` for the weights, which tierflow does
        # not depend on; the config, tokenizer and tensors come from the same transformers GGUF code.
        config = AutoConfig.from_pretrained(str(source.parent), gguf_file=source.name)
        tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
        with torch.device("meta"):  # only the parameter names are needed to map GGUF tensors
            skeleton = AutoModelForCausalLM.from_config(config)
        parsed = load_gguf_checkpoint(str(source), return_tensors=True, model_to_load=skeleton)
        tensors = {k: v.to(torch.float32).contiguous() for k, v in parsed["tensors"].items()}
        expected = set(skeleton.state_dict())
        if getattr(config, "tie_word_embeddings", False):
            expected.discard("lm_head.weight")
        missing = sorted(expected - set(tensors))
        if missing:
            raise ValueError(f"the GGUF lacks {len(missing)} tensors the model needs, e.g. {missing[:3]}")
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config.save_pretrained(tmp)
        GenerationConfig.from_model_config(config).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        stat = source.stat()
        (tmp / _MANIFEST).write_text(json.dumps({
            "source": str(source), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "format": _CACHE_FORMAT,
            "transformers": transformers.__version__, "architecture": config.model_type,
        }, indent=2))
        try:
            tmp.rename(target)
        except OSError:  # another process finished first; its result is as good as ours
            if not (target / _MANIFEST).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@dataclass
class _Prepared:
    """One call's encoded prompt and limits."""

    input_ids: Any
    attention_mask: Any
    prompt_tokens: int
    max_new_tokens: int
    temperature: float
    stop: list[str]
    deadline: float
    timeout_s: float


class _StopFilter:
    """Cuts generated text at the first stop sequence, holding back text that may begin one."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.buffer = ""
        self.hit = False

    def feed(self, piece: str) -> str:
        if self.hit:
            return ""
        self.buffer += piece
        cuts = [i for i in (self.buffer.find(s) for s in self.stops) if i >= 0]
        if cuts:
            self.hit = True
            out, self.buffer = self.buffer[: min(cuts)], ""
            return out
        hold = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(self.buffer)), hold, -1):
                if self.buffer.endswith(stop[:n]):
                    hold = n
                    break
        out, self.buffer = self.buffer[: len(self.buffer) - hold], self.buffer[len(self.buffer) - hold:]
        return out

    def flush(self) -> str:
        out, self.buffer = ("" if self.hit else self.buffer), ""
        return out


@cache
def _interrupt_class() -> type:
    """A transformers StoppingCriteria that ends decoding at a monotonic deadline or on cancellation."""
    import torch
    from transformers import StoppingCriteria

    class Interrupt(StoppingCriteria):
        def __init__(self, deadline: float, cancel: threading.Event) -> None:
            self.deadline = deadline
            self.cancel = cancel
            self.timed_out = False

        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
            if time.monotonic() >= self.deadline:
                self.timed_out = True
            stop = self.timed_out or self.cancel.is_set()
            return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

    return Interrupt


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
                 started: float) -> _Prepared:
        chat = _chat_dicts(messages, kwargs.get("response_format"))
        encoded = self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True,
                                                     return_dict=True, return_tensors="pt")
        prompt_tokens = int(encoded["input_ids"].shape[1])
        max_new = int(kwargs.get("max_tokens") or self.max_tokens)
        if prompt_tokens + max_new > self.n_ctx:
            raise ContextLengthExceeded(self.tier, prompt_tokens, self.n_ctx - max_new)
        timeout_s = float(kwargs.get("timeout_s") or self.timeout_s)
        temperature = kwargs.get("temperature")
        return _Prepared(
            input_ids=encoded["input_ids"].to(self.device),
            attention_mask=encoded["attention_mask"].to(self.device),
            prompt_tokens=prompt_tokens,
            max_new_tokens=max_new,
            temperature=float(self.temperature if temperature is None else temperature),
            stop=list(stop or []),
            deadline=started + timeout_s,
            timeout_s=timeout_s,
        )

    def _acquire(self, call: _Prepared) -> None:
        """Wait for the model, but not past the call's deadline."""
        if not self._lock.acquire(timeout=max(0.0, call.deadline - time.monotonic())):
            raise TierTimeoutError(self.tier, call.timeout_s)

    def _decode(self, call: _Prepared, cancel: threading.Event, streamer: Any = None) -> tuple[list[int], Any]:
        """Run ``generate`` for one prepared call; returns the new token ids and the interrupt criterion."""
        import torch
        from transformers import GenerationConfig, StoppingCriteriaList

        interrupt = _interrupt_class()(call.deadline, cancel)
        sampling = call.temperature > 0
        pad = self.tokenizer.pad_token_id
        settings: dict[str, Any] = {"max_new_tokens": call.max_new_tokens, "do_sample": sampling,
                                    "eos_token_id": sorted(self._eos_ids),
                                    "pad_token_id": min(self._eos_ids) if pad is None else pad}
        if sampling:
            settings["temperature"] = call.temperature
        else:  # greedy: clear the sampling knobs the checkpoint's defaults may carry
            settings.update(temperature=None, top_p=None, top_k=None)
        if call.stop:
            settings["stop_strings"] = call.stop
        devices = [torch.device(self.device).index or 0] if self.device.startswith("cuda") else []
        with torch.inference_mode(), torch.random.fork_rng(devices=devices, enabled=sampling):
            if sampling:
                torch.manual_seed(self.seed)
            output = self.hf_model.generate(
                input_ids=call.input_ids, attention_mask=call.attention_mask,
                generation_config=GenerationConfig(**settings), stopping_criteria=StoppingCriteriaList([interrupt]),
                tokenizer=self.tokenizer if call.stop else None, streamer=streamer)
        return output[0, call.prompt_tokens:].tolist(), interrupt

    def _usage(self, call: _Prepared, new_ids: list[int]) -> dict[str, int]:
        while new_ids and new_ids[-1] in self._eos_ids:  # the end-of-turn token is not output
            new_ids = new_ids[:-1]
        return {"input_tokens": call.prompt_tokens, "output_tokens": len(new_ids),
                "total_tokens": call.prompt_tokens + len(new_ids)}

    def _finish_reason(self, call: _Prepared, new_ids: list[int], stopped: bool) -> str:
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
        stops = _StopFilter(call.stop)
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
        from transformers import TextIteratorStreamer

        call = self._prepare(messages, stop, kwargs, time.monotonic())
        self._acquire(call)
        cancel = threading.Event()
        outcome: dict[str, Any] = {}
        # The queue wait is a safety net: decoding itself stops at the deadline and then ends the stream.
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True,
                                        timeout=max(0.0, call.deadline - time.monotonic()) + 30.0)

        def work() -> None:
            try:
                outcome["ids"], outcome["interrupt"] = self._decode(call, cancel, streamer)
            except BaseException as exc:  # re-raised in the consuming thread below
                outcome["error"] = exc
                streamer.end()

        worker = threading.Thread(target=work, name=f"edge-{self.tier}", daemon=True)
        stops = _StopFilter(call.stop)
        try:
            worker.start()
            try:
                for piece in streamer:
                    text = stops.feed(piece)
                    if text:
                        chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
                        if run_manager:
                            run_manager.on_llm_new_token(text, chunk=chunk)
                        yield chunk
            except queue.Empty:
                cancel.set()
                raise TierTimeoutError(self.tier, call.timeout_s) from None
            worker.join()
        finally:
            cancel.set()  # a consumer that stops reading ends decoding too
            worker.join()
            self._lock.release()
        if "error" in outcome:
            raise outcome["error"]
        if outcome["interrupt"].timed_out:
            raise TierTimeoutError(self.tier, call.timeout_s)
        tail = stops.flush()
        if tail:
            yield ChatGenerationChunk(message=AIMessageChunk(content=tail))
        new_ids = outcome["ids"]
        reason = self._finish_reason(call, new_ids, stops.hit)
        yield ChatGenerationChunk(
            message=AIMessageChunk(content="", usage_metadata=self._usage(call, new_ids), chunk_position="last",
                                   response_metadata={"tier": self.tier, "model_name": self.model_alias(),
                                                      "finish_reason": reason}),
            generation_info={"finish_reason": reason})


def _chat_dicts(messages: list[BaseMessage], response_format: Any) -> list[dict[str, str]]:
    """LangChain messages as the role/content dicts chat templates take, plus a JSON instruction."""
    roles = {SystemMessage: "system", HumanMessage: "user", AIMessage: "assistant", ToolMessage: "tool"}
    chat = []
    for message in messages:
        if isinstance(message, ChatMessage):
            role = message.role
        else:
            role = next((name for kind, name in roles.items() if isinstance(message, kind)), "user")
        text = message.text if isinstance(message.content, list) else str(message.content)
        chat.append({"role": role, "content": text})
    instruction = _json_instruction(response_format)
    if instruction:
        if chat and chat[-1]["role"] == "user":
            chat[-1] = {"role": "user", "content": f"{chat[-1]['content']}\n\n{instruction}"}
        else:
            chat.append({"role": "user", "content": instruction})
    return chat


def _json_instruction(response_format: Any) -> str | None:
    """This tier cannot constrain decoding to a schema, so a requested format becomes an instruction."""
    if response_format is None:
        return None
    schema: Any = None
    if isinstance(response_format, dict):
        if response_format.get("type") == "json_schema":
            schema = (response_format.get("json_schema") or {}).get("schema")
        elif response_format.get("type") == "json_object":
            schema = response_format.get("schema")
        else:
            return None
    elif isinstance(response_format, type) and hasattr(response_format, "model_json_schema"):
        schema = response_format.model_json_schema()
    if schema:
        return ("Reply with a single JSON object and nothing else. It must follow this JSON schema:\n"
                + json.dumps(schema, separators=(",", ":")))
    return "Reply with a single JSON object and nothing else."


def _pick_device(name: str, wanted: str) -> str:
    import torch

    if wanted == "cuda" and not torch.cuda.is_available():
        raise TierUnavailableError(name, "device 'cuda' was requested but torch sees no CUDA device")
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return wanted


def _load_converted(directory: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32)
    return model, tokenizer


def _convert(name: str, source: Path, cache: Path | None) -> Path:
    """``convert_gguf`` with its failures turned into the runtime layer's typed errors."""
    try:
        return convert_gguf(source, cache)
    except OSError as exc:  # the source was readable a moment ago: this is the cache (permissions, disk full)
        raise TierUnavailableError(name, f"could not cache the converted {source.name} under "
                                         f"{(cache or cache_root()) / 'edge'}: {exc}") from exc
    except Exception as exc:  # the GGUF parser fails in many ways (IndexError on a truncated file, ...)
        raise TierConfigError(f"tier {name!r}: {source} is not a GGUF that transformers can convert "
                              f"(truncated, corrupt or an unsupported architecture): {type(exc).__name__}: {exc}"
                              ) from exc


def build_edge(name: str, config: TierConfig, *, cache: Path | None = None) -> EdgeChatModel:
    """Load the tier's model: convert its GGUF once (cached), then int8 on CPU or bf16 on CUDA.

    ``cache`` overrides the cache root (default ``$TIERFLOW_CACHE`` or ``~/.cache/tierflow``). torch's
    thread count is process-wide, so it is set only when the tier declares ``n_threads`` explicitly.
    """
    source = Path(config.model_path).expanduser() if config.model_path else shipped_model_path(config.shipped)
    if not source.is_file():
        raise TierConfigError(f"tier {name!r}: model_path {source} does not exist")
    try:
        with source.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise TierConfigError(f"tier {name!r}: cannot read model_path {source}: {exc}") from exc
    if magic != b"GGUF":
        raise TierConfigError(f"tier {name!r}: model_path {source} is not a GGUF file (it starts with {magic!r})")
    device = _pick_device(name, config.device)
    import torch

    if "n_threads" in config.model_fields_set:
        torch.set_num_threads(config.n_threads)
    directory = _convert(name, source, cache)
    try:
        model, tokenizer = _load_converted(directory)
    except (ValueError, KeyError, RuntimeError, OSError) as exc:  # a damaged cache entry: convert again
        shutil.rmtree(directory, ignore_errors=True)
        try:
            model, tokenizer = _load_converted(_convert(name, source, cache))
        except (ValueError, KeyError, RuntimeError, OSError) as again:
            raise TierUnavailableError(name, f"could not load the converted {source.name}: {again}") from exc
    if not tokenizer.chat_template:
        tokenizer.chat_template = _PLAIN_TEMPLATE
    dtype, quantize = "float32", "none"
    if device.startswith("cuda"):
        model = model.to(device=device, dtype=torch.bfloat16)
        dtype = "bfloat16"
    elif config.quantize == "int8":
        with warnings.catch_warnings():
            # Deprecated in favour of torchao, which tierflow does not depend on; still shipped in torch 2.15.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*", category=UserWarning)
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
        dtype, quantize = "qint8-dynamic", "int8"
    model.eval()
    n_ctx = min(config.n_ctx, int(getattr(model.config, "max_position_embeddings", config.n_ctx) or config.n_ctx))
    chat = EdgeChatModel(tier=name, model_name=source.name, model_path=str(source), max_tokens=config.max_tokens,
                         temperature=config.temperature, n_ctx=n_ctx, timeout_s=config.timeout_s, seed=config.seed,
                         device=device, dtype=dtype, quantize=quantize)
    return chat.attach(model, tokenizer)
