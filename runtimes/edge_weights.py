"""Edge tier weights: convert a GGUF to transformers weights once, cache them on disk, load them back.

transformers' GGUF support de-quantizes the file; the result is cached as safetensors + tokenizer under
``$TIERFLOW_CACHE/edge`` so later loads skip the conversion. torch and transformers are imported lazily.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from tierflow.runtimes.errors import TierConfigError, TierUnavailableError

# Bumped whenever the layout of a converted directory changes, so stale caches are not reused.
_CACHE_FORMAT = "1"
_MANIFEST = "tierflow-edge.json"


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


def convert_for_tier(name: str, source: Path, cache: Path | None) -> Path:
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


def load_converted(directory: Path) -> tuple[Any, Any]:
    """The fp32 model and tokenizer of a converted directory."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32)
    return model, tokenizer


def pick_device(name: str, wanted: str) -> str:
    """The torch device for ``wanted`` (``auto``: CUDA when present); a missing CUDA device is an error."""
    import torch

    if wanted == "cuda" and not torch.cuda.is_available():
        raise TierUnavailableError(name, "device 'cuda' was requested but torch sees no CUDA device")
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return wanted
