"""Intent metrics: in-scope accuracy, out-of-scope recall/precision, macro-F1, latency, throughput.

Definitions (CLINC150 convention): ``accuracy`` is over in-scope examples only (predicting ``oos``
for them counts as wrong); ``oos_recall`` = oos examples predicted oos / oos examples;
``oos_precision`` = oos examples predicted oos / all oos predictions (0.0 when there are none);
``macro_f1`` averages per-class F1 over every label seen in truth or prediction, ``oos`` included.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tierflow.agents.intent import OUT_OF_SCOPE


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str]) -> dict[str, float | int]:
    """Score predicted labels against true ones (see the module docstring for the definitions)."""
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    true, pred = np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)
    in_scope = true != OUT_OF_SCOPE
    is_oos, said_oos = ~in_scope, pred == OUT_OF_SCOPE
    accuracy = float((true[in_scope] == pred[in_scope]).mean()) if in_scope.any() else 0.0
    oos_recall = float((is_oos & said_oos).sum() / is_oos.sum()) if is_oos.any() else 0.0
    oos_precision = float((is_oos & said_oos).sum() / said_oos.sum()) if said_oos.any() else 0.0
    f1s = []
    for label in sorted(set(true) | set(pred)):
        tp = float(((true == label) & (pred == label)).sum())
        fp = float(((true != label) & (pred == label)).sum())
        fn = float(((true == label) & (pred != label)).sum())
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return {
        "accuracy": accuracy,
        "oos_recall": oos_recall,
        "oos_precision": oos_precision,
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        "n": len(true),
    }


def latency_ms(fn: Callable[[str], Any], texts: Sequence[str], warmup: int = 5) -> dict[str, float]:
    """Single-query latency percentiles of ``fn`` (a loaded model's ``classify``), in milliseconds."""
    for text in list(texts)[:warmup]:
        fn(text)
    samples = []
    for text in texts:
        start = time.perf_counter()
        fn(text)
        samples.append((time.perf_counter() - start) * 1000.0)
    return {"p50_ms": float(np.percentile(samples, 50)), "p95_ms": float(np.percentile(samples, 95))}


def choose_threshold(
    best_prob: np.ndarray,
    oos_argmax: np.ndarray,
    correct: np.ndarray,
    is_oos: np.ndarray,
    objective: str = "oos_f1",
) -> tuple[float, dict[str, float]]:
    """Pick the confidence threshold (reject as ``oos`` below it) that maximises ``objective`` on validation.

    Inputs per validation example: the best in-scope probability, whether the ``oos`` class already
    wins the argmax, whether the best in-scope label is right, whether the truth is ``oos``.
    Objectives: ``oos_f1`` (F1 of oos detection; the default, it trades one rejected in-scope query
    against one missed oos query), ``balanced`` (mean of in-scope accuracy and oos recall),
    ``accuracy`` (accuracy over all examples with oos as a class).
    """
    # any threshold between two neighbouring validation scores behaves the same on validation: take midpoints
    scores = np.unique(np.concatenate([[0.0], best_prob, [1.0]]))
    candidates = (scores[:-1] + scores[1:]) / 2
    n_in, n_oos = max(int((~is_oos).sum()), 1), max(int(is_oos.sum()), 1)
    best: tuple[float, float, dict[str, float]] | None = None
    for t in candidates:
        said_oos = oos_argmax | (best_prob < t)
        in_acc = float((correct & ~said_oos & ~is_oos).sum() / n_in)
        tp = float((said_oos & is_oos).sum())
        recall = tp / n_oos
        precision = tp / max(float(said_oos.sum()), 1.0)
        if objective == "oos_f1":
            value = 2 * precision * recall / max(precision + recall, 1e-12)
        elif objective == "balanced":
            value = (in_acc + recall) / 2
        elif objective == "accuracy":
            value = (in_acc * n_in + tp) / (n_in + n_oos)
        else:
            raise ValueError(f"unknown threshold objective {objective!r}")
        # small tie-break toward in-scope accuracy so plateaus do not reject needlessly
        key = value + 1e-6 * in_acc
        if best is None or key > best[0] + 1e-12:
            best = (key, float(t), {"accuracy": in_acc, "oos_recall": recall, "oos_precision": precision})
    assert best is not None
    return best[1], best[2]
