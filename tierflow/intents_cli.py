"""``tierflow intents``: train, evaluate and query intent classifiers from the command line.

Errors in data or model directories are printed as one line on stderr with exit code 2 (bad input)
or 3 (bad model); no tracebacks.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from tierflow.agents.intents.errors import IntentDataError, IntentModelError

intents_app = typer.Typer(
    name="intents",
    help="Train, evaluate and query the intent classifier.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])
EXIT_DATA_ERROR = 2
EXIT_MODEL_ERROR = 3


def _clean_errors(fn: F) -> F:
    """Turn the capability's typed errors into a one-line stderr message and a non-zero exit."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except IntentDataError as exc:
            typer.echo(f"error: bad intent data: {exc}", err=True)
            raise typer.Exit(EXIT_DATA_ERROR) from None
        except IntentModelError as exc:
            typer.echo(f"error: bad intent model: {exc}", err=True)
            raise typer.Exit(EXIT_MODEL_ERROR) from None

    return wrapper  # type: ignore[return-value]


@intents_app.command()
@_clean_errors
def train(
    data: Annotated[Path, typer.Option("--data", help="JSONL of {text, label} rows, or CLINC150 data_full.json")],
    out: Annotated[Path, typer.Option("--out", help="model directory to write")],
    split: Annotated[str, typer.Option(help="split to train on (split files only)")] = "train",
    val_split: Annotated[str, typer.Option(help="split that picks the oos threshold (split files only)")] = "val",
    val_data: Annotated[
        Path | None, typer.Option(help="separate validation JSONL; default: the val split or a 15% hold-out")
    ] = None,
    finetune_layers: Annotated[int, typer.Option(help="top encoder layers to fine-tune (0 = head only)")] = 4,
    epochs: Annotated[int, typer.Option(help="fine-tuning epochs")] = 4,
    seed: Annotated[int, typer.Option()] = 0,
    progress: Annotated[bool, typer.Option(help="show a progress bar on stderr")] = True,
) -> None:
    """Train a classifier and save it as a model directory."""
    from tierflow.agents.intents.data import file_sha256, load_examples
    from tierflow.agents.intents.train import TrainConfig, train_classifier

    examples = load_examples(data, split)
    val = None
    if val_data is not None:
        val = load_examples(val_data, val_split)
    elif _is_split_file(data):
        val = load_examples(data, val_split)
    config = TrainConfig(finetune_layers=finetune_layers, epochs=epochs, seed=seed)
    start = time.perf_counter()
    model = train_classifier(
        examples,
        val,
        config,
        progress=progress,
        source=str(data),
        metadata={
            "data": str(data),
            "data_sha256": file_sha256(data),
            "split": split,
            "val_split": val_split if val is not None else "holdout",
        },
    )
    model.save(out)
    summary = {
        "out": str(out),
        "labels": len(model.labels),
        "threshold": round(model.threshold, 4),
        "train_seconds": round(time.perf_counter() - start, 1),
        "val": model.metadata.get("val_metrics_at_threshold", {}),
    }
    typer.echo(json.dumps(summary))


def _is_split_file(path: Path) -> bool:
    from tierflow.agents.intents.data import _looks_like_split_file

    if path.suffix == ".json":
        return True
    try:
        return _looks_like_split_file(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return False


@intents_app.command("eval")
@_clean_errors
def evaluate(
    data: Annotated[Path, typer.Option("--data", help="labelled JSONL or CLINC150 data_full.json")],
    model: Annotated[Path, typer.Option("--model", help="model directory")],
    split: Annotated[str, typer.Option(help="split to evaluate (split files only)")] = "test",
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    latency_queries: Annotated[int, typer.Option(help="single queries timed for p50/p95")] = 300,
    precision: Annotated[str, typer.Option(help="encoder precision: fp32, or int8 (faster on CPU)")] = "fp32",
) -> None:
    """Score a model on labelled data: accuracy, oos recall/precision, macro-F1, latency, throughput."""
    from tierflow.agents.intents.data import check_known_labels, load_examples
    from tierflow.agents.intents.metrics import classification_metrics, latency_ms
    from tierflow.agents.intents.model import TrainedIntentClassifier

    examples = load_examples(data, split)
    clf = TrainedIntentClassifier.load(model, precision=precision)
    check_known_labels(examples, clf.labels, data)
    texts = [e.text for e in examples]
    start = time.perf_counter()
    predicted = clf.predict_labels(texts)
    batch_seconds = time.perf_counter() - start
    result: dict[str, Any] = classification_metrics([e.label for e in examples], predicted)
    result.update(latency_ms(clf.classify, texts[: max(1, latency_queries)]))
    result["batch_qps"] = len(texts) / max(batch_seconds, 1e-9)
    if as_json:
        typer.echo(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))
    else:
        for key, value in result.items():
            typer.echo(f"{key:>14}: {value:.4f}" if isinstance(value, float) else f"{key:>14}: {value}")


@intents_app.command()
@_clean_errors
def predict(
    text: Annotated[str, typer.Argument(help="the request to classify")],
    model: Annotated[Path | None, typer.Option("--model", help="model directory (default: the demo model)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the IntentResult as JSON")] = False,
    precision: Annotated[str, typer.Option(help="encoder precision: fp32, or int8 (faster on CPU)")] = "fp32",
) -> None:
    """Classify one request: label, confidence, out-of-scope flag, top-3 alternatives."""
    from tierflow.agents.intents import load_default_classifier
    from tierflow.agents.intents.model import TrainedIntentClassifier

    if not text.strip():
        typer.echo("error: empty text", err=True)
        raise typer.Exit(EXIT_DATA_ERROR)
    clf = (TrainedIntentClassifier.load(model, precision=precision) if model is not None
           else load_default_classifier(precision))
    result = clf.classify(text)
    if as_json:
        typer.echo(result.model_dump_json())
        return
    typer.echo(f"label: {result.label}")
    typer.echo(f"confidence: {result.confidence:.3f}")
    typer.echo(f"out_of_scope: {str(result.out_of_scope).lower()}")
    typer.echo("alternatives: " + ", ".join(f"{label} ({p:.3f})" for label, p in result.alternatives))


if __name__ == "__main__":
    intents_app(sys.argv[1:])
