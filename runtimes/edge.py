"""The edge tier: transformers weights run in-process by torch behind LangChain's chat-model API.

The weights come from a GGUF (the shipped SmolLM2 unless the tier names another): transformers' GGUF
support de-quantizes it once, the result is cached on disk as safetensors + tokenizer, and later loads
read the cache. On CPU the linear layers can be quantized to int8 (dynamic quantization); on CUDA the
model runs in bf16. An edge tier served by a local Ollama or llama.cpp server is declared as
``kind: openai`` with a loopback ``base_url`` instead and needs nothing from this module.

This module builds the tier; the work is split by job: ``edge_weights`` (GGUF conversion, cache, loading),
``edge_prompt`` (chat template and JSON instruction), ``edge_decode`` (generate, stop sequences, streaming)
and ``edge_model`` (the chat model). torch and transformers are imported lazily so that importing
``runtimes`` stays cheap.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

from tierflow.runtimes.config import TierConfig
from tierflow.runtimes.edge_model import EdgeChatModel
from tierflow.runtimes.edge_prompt import ensure_chat_template
from tierflow.runtimes.edge_weights import (
    cache_root,
    convert_for_tier,
    convert_gguf,
    converted_dir,
    gguf_fingerprint,
    load_converted,
    pick_device,
)
from tierflow.runtimes.errors import TierConfigError, TierUnavailableError
from tierflow.runtimes.mobile import shipped_model_path

__all__ = ["EdgeChatModel", "build_edge", "cache_root", "convert_gguf", "converted_dir", "gguf_fingerprint"]


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
    device = pick_device(name, config.device)
    import torch

    if "n_threads" in config.model_fields_set:
        torch.set_num_threads(config.n_threads)
    directory = convert_for_tier(name, source, cache)
    try:
        model, tokenizer = load_converted(directory)
    except (ValueError, KeyError, RuntimeError, OSError) as exc:  # a damaged cache entry: convert again
        shutil.rmtree(directory, ignore_errors=True)
        try:
            model, tokenizer = load_converted(convert_for_tier(name, source, cache))
        except (ValueError, KeyError, RuntimeError, OSError) as again:
            raise TierUnavailableError(name, f"could not load the converted {source.name}: {again}") from exc
    ensure_chat_template(tokenizer)
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
