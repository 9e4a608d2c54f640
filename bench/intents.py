"""CLINC150 benchmark of the intent classifier, with a frozen-embedding baseline measured in the same run.

Train on train(+oos_train), choose the oos threshold on val(+oos_val), report test(+oos_test).
Prints one JSON object: ``model`` and ``baseline`` metrics (accuracy, oos_recall, oos_precision,
macro_f1, n, p50_ms, p95_ms, batch_qps, train_seconds) and their ratios, and ``model_int8``: the
same model with its encoder on int8 dynamic quantization, with its ratios over fp32.

    .venv/bin/python bench/intents.py [--data data_full.json] [--finetune-layers 2] [--epochs 3] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tierflow.agents.intent import OUT_OF_SCOPE
from tierflow.agents.intents.data import Example, file_sha256, load_examples
from tierflow.agents.intents.encoder import configure_threads
from tierflow.agents.intents.metrics import choose_threshold, classification_metrics, latency_ms
from tierflow.agents.intents.model import TrainedIntentClassifier, _shared_base_encoder, int8_encoder
from tierflow.agents.intents.train import TrainConfig, train_classifier

DEFAULT_DATA = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "clinc150" / "data_full.json")


def evaluate(model: TrainedIntentClassifier, test: list[Example], latency_queries: int) -> dict[str, Any]:
    """Test metrics plus single-query latency and batch throughput of a loaded model."""
    texts = [e.text for e in test]
    start = time.perf_counter()
    predicted = model.predict_labels(texts)
    qps = len(texts) / (time.perf_counter() - start)
    scores: dict[str, Any] = classification_metrics([e.label for e in test], predicted)
    scores.update(latency_ms(model.classify, texts[:latency_queries], warmup=20))
    scores["batch_qps"] = qps
    return scores


def baseline(train: list[Example], val: list[Example], test: list[Example], latency_queries: int) -> dict[str, Any]:
    """Frozen all-MiniLM-L6-v2 embeddings + multinomial logistic regression, threshold on val."""
    encoder = _shared_base_encoder(64)
    start, cpu_start = time.perf_counter(), time.process_time()
    labels = sorted({e.label for e in train})
    index = {label: i for i, label in enumerate(labels)}
    x = encoder.embed([e.text for e in train]).clone()  # a normal tensor: autograd cannot use inference ones
    y = torch.tensor([index[e.label] for e in train])
    linear = nn.Linear(x.shape[1], len(labels))
    optimizer = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=300, history_size=20)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(linear(x), y) + 1e-4 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)

    def probs(texts: list[str]) -> np.ndarray:
        with torch.inference_mode():
            return torch.softmax(linear(encoder.embed(texts)), dim=-1).numpy()

    in_cols = np.array([i for i, label in enumerate(labels) if label != OUT_OF_SCOPE])
    oos_col = labels.index(OUT_OF_SCOPE)

    def decide(p: np.ndarray, threshold: float) -> list[str]:
        best = in_cols[p[:, in_cols].argmax(axis=1)]
        best_p = p[np.arange(len(p)), best]
        said_oos = (p[:, oos_col] > best_p) | (best_p < threshold)
        return [OUT_OF_SCOPE if o else labels[b] for o, b in zip(said_oos, best, strict=True)]

    pv = probs([e.text for e in val])
    best = in_cols[pv[:, in_cols].argmax(axis=1)]
    best_p = pv[np.arange(len(pv)), best]
    truth = np.array([e.label for e in val], dtype=object)
    threshold, _ = choose_threshold(
        best_p,
        pv[:, oos_col] > best_p,
        np.array([labels[b] for b in best], dtype=object) == truth,
        truth == OUT_OF_SCOPE,
    )
    train_seconds = time.perf_counter() - start
    train_cpu_seconds = time.process_time() - cpu_start
    texts = [e.text for e in test]
    t0 = time.perf_counter()
    predicted = decide(probs(texts), threshold)
    qps = len(texts) / (time.perf_counter() - t0)
    scores: dict[str, Any] = classification_metrics([e.label for e in test], predicted)
    scores.update(latency_ms(lambda t: decide(probs([t]), threshold), texts[:latency_queries], warmup=20))
    scores.update(batch_qps=qps, train_seconds=train_seconds, train_cpu_seconds=train_cpu_seconds, threshold=threshold)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--finetune-layers", type=int, default=TrainConfig.finetune_layers)
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--lr-encoder", type=float, default=TrainConfig.lr_encoder)
    parser.add_argument("--objective", default=TrainConfig.threshold_objective)
    parser.add_argument("--latency-queries", type=int, default=300)
    parser.add_argument("--out", default=None, help="also save the trained model here")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--model", default=None, help="evaluate this saved model instead of training one")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: every core, at most 8)")
    parser.add_argument("--no-int8", action="store_true", help="skip the int8 encoder measured beside fp32")
    args = parser.parse_args()

    threads = configure_threads(args.threads)
    train, val, test = (load_examples(args.data, s) for s in ("train", "val", "test"))
    config = TrainConfig(
        finetune_layers=args.finetune_layers,
        epochs=args.epochs,
        lr_encoder=args.lr_encoder,
        threshold_objective=args.objective,
    )
    _shared_base_encoder(config.max_length, lean=False)  # load outside the timed region, as training would
    load_seconds = None
    if args.model:  # re-evaluate a model trained earlier; its training time comes from its metadata
        t0 = time.perf_counter()
        model = TrainedIntentClassifier.load(args.model)
        load_seconds = time.perf_counter() - t0
        train_seconds, train_cpu_seconds = model.metadata.get("train_seconds"), None
        config = TrainConfig(**model.metadata.get("train_config", {}))
    else:
        start, cpu_start = time.perf_counter(), time.process_time()
        model = train_classifier(
            train,
            val,
            config,
            progress=args.progress,
            source=args.data,
            metadata={"data": args.data, "data_sha256": file_sha256(args.data), "split": "train", "val_split": "val"},
        )
        train_seconds = time.perf_counter() - start
        train_cpu_seconds = time.process_time() - cpu_start  # CPU time: robust to other jobs sharing the cores
        if args.out:  # evaluate what a user gets: the saved directory, loaded back (load time recorded)
            model.save(args.out)
            t0 = time.perf_counter()
            model = TrainedIntentClassifier.load(args.out)
            load_seconds = time.perf_counter() - t0
    result: dict[str, Any] = {"model": evaluate(model, test, args.latency_queries)}
    result["model"].update(
        train_seconds=train_seconds,
        train_cpu_seconds=train_cpu_seconds,
        threshold=model.threshold,
        load_seconds=load_seconds,
    )
    print(json.dumps({"model": result["model"]}, default=str), file=sys.stderr, flush=True)  # kept if baseline fails
    if not args.no_int8:  # the same trained model with an int8 encoder, measured in this run
        int8 = TrainedIntentClassifier(int8_encoder(model.encoder), model.head, model.labels, model.threshold,
                                       finetuned_from_layer=model.finetuned_from_layer, metadata=model.metadata,
                                       precision="int8")
        result["model_int8"] = evaluate(int8, test, args.latency_queries)
        result["ratio_int8_over_fp32"] = {
            k: result["model_int8"][k] / result["model"][k]
            for k in ("accuracy", "oos_recall", "oos_precision", "macro_f1", "p50_ms", "p95_ms", "batch_qps")
            if result["model"].get(k)
        }
    if not args.no_baseline:
        result["baseline"] = baseline(train, val, test, args.latency_queries)
        result["ratio_model_over_baseline"] = {
            k: result["model"][k] / result["baseline"][k]
            for k in (
                "accuracy",
                "oos_recall",
                "oos_precision",
                "macro_f1",
                "p95_ms",
                "batch_qps",
                "train_seconds",
            )
            if result["baseline"].get(k)
        }
    result["setup"] = {
        "config": {k: v for k, v in vars(config).items()},
        "threads": threads,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "n_train": len(train),
        "n_val": len(val),
        "n_test": len(test),
    }
    print(json.dumps(result, indent=None, default=lambda v: round(v, 4) if isinstance(v, float) else str(v)))


if __name__ == "__main__":
    main()
