"""Training: optional fine-tuning of the top encoder layers, then the cosine head, then the threshold.

Fine-tuning is cheap on CPU because the frozen lower layers run once: their hidden states are cached
and each epoch only runs (and back-propagates through) the top ``finetune_layers`` blocks.
The out-of-scope threshold is always chosen on a validation set, never on test data.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from tierflow.agents.intent import OUT_OF_SCOPE
from tierflow.agents.intents.data import Example, check_known_labels, check_trainable
from tierflow.agents.intents.encoder import Encoder, configure_threads
from tierflow.agents.intents.metrics import choose_threshold
from tierflow.agents.intents.model import CosineHead, TrainedIntentClassifier, _shared_base_encoder


@dataclass
class TrainConfig:
    """Hyper-parameters; the defaults are the ones the CLINC150 benchmark uses."""

    finetune_layers: int = 4  # top encoder blocks to fine-tune; 0 = frozen encoder, head only
    epochs: int = 4  # passes of joint (top layers + head) training
    head_epochs: int = 40  # passes of head-only training on frozen embeddings (when finetune_layers=0)
    batch_size: int = 32
    lr_encoder: float = 2e-4
    lr_head: float = 5e-3
    weight_decay: float = 0.01
    label_smoothing: float = 0.1
    hidden: int = 0
    dropout: float = 0.1
    max_length: int = 64
    val_fraction: float = 0.15  # held out of the training data when no validation set is given
    threshold_objective: str = "oos_f1"
    seed: int = 0
    threads: int | None = None


class _Progress:
    """Thin wrapper over rich's progress bar (on stderr) that can also be a no-op."""

    def __init__(self, enabled: bool) -> None:
        self._progress = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )

    def __enter__(self) -> _Progress:
        if self._progress:
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress:
            self._progress.__exit__(*exc)

    def task(self, description: str, total: int) -> Any:
        return self._progress.add_task(description, total=total) if self._progress else None

    def advance(self, task: Any, amount: int = 1) -> None:
        if self._progress and task is not None:
            self._progress.advance(task, amount)


def split_validation(examples: Sequence[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Stratified hold-out (at least one example per class stays in training) for threshold selection."""
    rng = random.Random(seed)
    by_label: dict[str, list[Example]] = {}
    for example in examples:
        by_label.setdefault(example.label, []).append(example)
    train, val = [], []
    for label in sorted(by_label):
        group = by_label[label][:]
        rng.shuffle(group)
        k = min(len(group) - 1, round(len(group) * fraction))
        val.extend(group[:k])
        train.extend(group[k:])
    return train, val


def _batches(n: int, size: int, rng: np.random.Generator, lengths: Sequence[int] | None = None) -> Iterator[np.ndarray]:
    """Shuffled mini-batches; with ``lengths``, similar lengths are grouped (within pools of 64 batches)
    so padding, and hence CPU time, drops while batch order stays random."""
    order = rng.permutation(n)
    if lengths is not None:
        pool = size * 64
        order = np.concatenate(
            [sorted(order[i : i + pool], key=lambda j: lengths[j]) for i in range(0, n, pool)]
        ).astype(int)
    batches = [order[start : start + size] for start in range(0, n, size)]
    for b in rng.permutation(len(batches)):
        yield batches[b]


def _cache_hidden(
    encoder: Encoder, texts: Sequence[str], layer: int, progress: _Progress, label: str, batch_size: int = 128
) -> list[torch.Tensor]:
    """Hidden states after ``layer`` blocks for every text, unpadded, in input order."""
    out: list[torch.Tensor] = [torch.empty(0)] * len(texts)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    task = progress.task(label, len(texts))
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = encoder.tokenize([texts[i] for i in chunk])
            hidden = encoder.hidden_at(batch, layer)
            lengths = batch["attention_mask"].sum(dim=1).tolist()
            for row, i in enumerate(chunk):
                out[i] = hidden[row, : lengths[row]].clone()
            progress.advance(task, len(chunk))
    return out


def _pad(hidden: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(h.shape[0] for h in hidden)
    states = torch.zeros(len(hidden), length, hidden[0].shape[1])
    mask = torch.zeros(len(hidden), length, dtype=torch.long)
    for row, h in enumerate(hidden):
        states[row, : h.shape[0]] = h
        mask[row, : h.shape[0]] = 1
    return states, mask


def _schedule(optimizer: torch.optim.Optimizer, total: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_classifier(
    train: Sequence[Example],
    val: Sequence[Example] | None = None,
    config: TrainConfig | None = None,
    *,
    progress: bool = False,
    metadata: dict[str, Any] | None = None,
    source: str = "<examples>",
) -> TrainedIntentClassifier:
    """Train a classifier on ``train``; pick the oos threshold on ``val`` (or on a stratified hold-out)."""
    config = config or TrainConfig()
    configure_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    started = time.perf_counter()
    labels = check_trainable(train, source)
    if val is None or not val:
        train, val = split_validation(train, config.val_fraction, config.seed)
    else:
        check_known_labels(val, labels, source)
    index = {label: i for i, label in enumerate(labels)}
    y = torch.tensor([index[e.label] for e in train])
    texts = [e.text for e in train]

    base = _shared_base_encoder(config.max_length, lean=False)
    finetune = 0 < config.finetune_layers
    encoder = copy.deepcopy(base) if finetune else base
    head = CosineHead(encoder.dim, len(labels), hidden=config.hidden, dropout=config.dropout)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    layer = encoder.num_layers - min(config.finetune_layers, encoder.num_layers) if finetune else None

    with _Progress(progress) as bar:
        if finetune:
            assert layer is not None
            hidden = _cache_hidden(encoder, texts, layer, bar, "encoding (frozen layers)")
            lengths = [h.shape[0] for h in hidden]
            top = [p for block in encoder.bert.encoder.layer[layer:] for p in block.parameters()]
            optimizer = torch.optim.AdamW(
                [
                    {"params": top, "lr": config.lr_encoder},
                    {"params": head.parameters(), "lr": config.lr_head},
                ],
                weight_decay=config.weight_decay,
            )
            steps = config.epochs * -(-len(texts) // config.batch_size)
            scheduler = _schedule(optimizer, steps, max(1, steps // 10))
            task = bar.task(f"fine-tuning top {config.finetune_layers} layers", steps)
            encoder.train()
            head.train()
            for _ in range(config.epochs):
                for idx in _batches(len(texts), config.batch_size, rng, lengths):
                    states, mask = _pad([hidden[i] for i in idx])
                    loss = loss_fn(head(encoder.forward_from(states, mask, layer)), y[idx])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    nn.utils.clip_grad_norm_(top + list(head.parameters()), 1.0)
                    optimizer.step()
                    scheduler.step()
                    bar.advance(task)
            encoder.eval()
            head.eval()
        else:
            task = bar.task("encoding", len(texts))
            emb = encoder.embed(texts)
            bar.advance(task, len(texts))
            optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr_head, weight_decay=config.weight_decay)
            steps = config.head_epochs * -(-len(texts) // config.batch_size)
            scheduler = _schedule(optimizer, steps, max(1, steps // 20))
            task = bar.task("training head", steps)
            head.train()
            for _ in range(config.head_epochs):
                for idx in _batches(len(texts), config.batch_size, rng):
                    loss = loss_fn(head(emb[idx]), y[idx])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    scheduler.step()
                    bar.advance(task)
            head.eval()

        model = TrainedIntentClassifier(encoder, head, labels, 0.0, finetuned_from_layer=layer)
        task = bar.task("choosing threshold on validation", len(val))
        probs = model.predict_proba([e.text for e in val])
        bar.advance(task, len(val))

    threshold, val_metrics = threshold_from_probs(model, probs, val, config.threshold_objective)
    model.threshold = threshold
    model.metadata = {
        **(metadata or {}),
        "n_train": len(train),
        "n_val": len(val),
        "train_seconds": round(time.perf_counter() - started, 2),
        "val_metrics_at_threshold": val_metrics,
        "train_config": asdict(config),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "torch": torch.__version__,
    }
    return model


def threshold_from_probs(
    model: TrainedIntentClassifier, probs: np.ndarray, val: Sequence[Example], objective: str
) -> tuple[float, dict[str, float]]:
    """Choose the threshold from validation probabilities (see :func:`choose_threshold`)."""
    in_cols = np.array([i for i, label in enumerate(model.labels) if label != OUT_OF_SCOPE])
    in_probs = probs[:, in_cols]
    best_col = in_probs.argmax(axis=1)
    best_prob = in_probs[np.arange(len(probs)), best_col]
    oos_col = model.labels.index(OUT_OF_SCOPE) if OUT_OF_SCOPE in model.labels else None
    oos_argmax = probs[:, oos_col] > best_prob if oos_col is not None else np.zeros(len(probs), dtype=bool)
    predicted = np.array([model.labels[in_cols[c]] for c in best_col], dtype=object)
    truth = np.array([e.label for e in val], dtype=object)
    is_oos = truth == OUT_OF_SCOPE
    if not is_oos.any():  # nothing to calibrate against: only the oos class (if any) rejects
        return 0.0, {}
    return choose_threshold(best_prob, oos_argmax, predicted == truth, is_oos, objective)
