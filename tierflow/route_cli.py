"""``tierflow route``: train and score the learned router on routing-benchmark outputs (``items.jsonl``).

See ``tierflow.route_training`` for the input format. Errors print as one literal line; bad input exits 2.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from tierflow.console import exit_code, fail, offline_env
from tierflow.runtimes.errors import TierflowError

if TYPE_CHECKING:
    from tierflow.agents.route_features import RouteFeatures

route_app = typer.Typer(name="route", help="Train and evaluate the learned tier router.", no_args_is_help=True,
                        pretty_exceptions_enable=False)

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="settings TOML file (its intent model gives the "
                                                                 "embeddings; default: ./tierflow.toml)")]
FromOpt = Annotated[Path, typer.Option("--from", help="routing-benchmark output folder or its items.jsonl")]
F = TypeVar("F", bound=Callable[..., Any])


def _features_for(config: Path | None) -> RouteFeatures:
    from tierflow.agents.route_features import RouteFeatures
    from tierflow.app import load_classifier
    from tierflow.settings import load_settings

    return RouteFeatures(load_classifier(load_settings(config)))  # type: ignore[arg-type]


def _clean_errors(fn: F) -> F:
    """tierflow's typed errors as one literal line on stderr and a non-zero exit (2: bad input)."""
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TierflowError as exc:
            raise fail(str(exc), exit_code(exc)) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise fail(f"cannot read input: {exc}", 2) from None
    return wrapper  # type: ignore[return-value]


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec) if isinstance(value, float) else str(value)


def _print_metrics(title: str, metrics: dict[str, dict[str, Any]]) -> None:
    typer.echo(title)
    for tier, m in metrics.items():
        typer.echo(f"  {tier:<10} n={m['n']:<4} pass={_fmt(m['pass_rate'])}  acc={_fmt(m['accuracy'])}  "
                   f"auc={_fmt(m['auc'])}  brier={_fmt(m['brier'])}")


@route_app.command()
@_clean_errors
def train(
    source: FromOpt,
    out: Annotated[Path, typer.Option("--out", help="folder to write the learned router to")],
    tiers: Annotated[str | None, typer.Option("--tiers", help="tiers cheapest first, comma-separated "
                                                              "(default: all, by mean cost)")] = None,
    holdout: Annotated[float, typer.Option("--holdout", help="share of items held out for the reported "
                                                             "metrics")] = 0.2,
    seed: Annotated[int, typer.Option("--seed", help="seed of the train/holdout split")] = 0,
    split_by: Annotated[str, typer.Option("--split", help="hold out by item, or by group (a group's items stay "
                                                          "on one side: variants of one question)")] = "item",
    l2: Annotated[float, typer.Option("--l2", help="ridge strength on standardised features")] = 10.0,
    config: ConfigOpt = None,
) -> None:
    """Fit the per-tier pass predictors on benchmark items, report holdout metrics, save the router to --out."""
    import numpy as np

    from tierflow.route_training import (
        features_of,
        items_path,
        labels_of,
        load_items,
        mean_costs,
        routing_quality,
        split,
        tier_metrics,
        tier_order,
    )
    from tierflow.runtimes.learned_router import LearnedRouter

    offline_env()
    items, digest = load_items(source)
    order = tier_order(items, [t.strip() for t in tiers.split(",") if t.strip()] if tiers else None)
    train_idx, test_idx = split(items, holdout, seed, split_by)
    features = _features_for(config)
    X, intents = features_of(items, features)
    Y = labels_of(items, order)
    train_items = [items[i] for i in train_idx]
    tools: dict[str, list[float]] = {}
    for i in train_idx:
        tools.setdefault(intents[i], []).append(float(items[i].features.get("tools") or 0))
    meta = {
        "encoder": features.encoder,
        "intent_labels": features.labels,
        "data": {"file": items_path(source).name, "sha256": digest, "items": len(items),
                 "train": len(train_idx), "holdout": len(test_idx), "holdout_share": holdout, "seed": seed,
                 "split": split_by},
        "tools_by_intent": {k: round(sum(v) / len(v), 3) for k, v in tools.items()},
        "tools_mean": round(float(np.mean([i.features.get("tools") or 0 for i in train_items])), 3),
    }
    model = LearnedRouter(l2=l2).fit(X[train_idx], {t: y[train_idx] for t, y in Y.items()}, order,
                                     mean_costs(train_items, order), features.names, meta)
    typer.echo(f"items: {len(items)} (train {len(train_idx)}, holdout {len(test_idx)}); tiers cheapest first: "
               f"{', '.join(order)}")
    train_metrics = tier_metrics(model, model.predict_array(X[train_idx]), train_items)
    _print_metrics("train:", train_metrics)
    if test_idx:
        held = [items[i] for i in test_idx]
        P = model.predict_array(X[test_idx])
        metrics = tier_metrics(model, P, held)
        _print_metrics("holdout:", metrics)
        model.metadata["holdout_metrics"] = metrics
        model.metadata["holdout_routing"] = routing_quality(model, P, held)
    model.metadata["train_metrics"] = train_metrics
    model.save(out)
    typer.echo(f"saved the learned router to {out}")


@route_app.command("eval")
@_clean_errors
def evaluate(
    model_dir: Annotated[Path, typer.Option("--model", help="learned router folder (tierflow route train --out)")],
    source: FromOpt,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    config: ConfigOpt = None,
) -> None:
    """Score a learned router on benchmark items: per-tier AUC/Brier/accuracy, routing quality and cost."""
    from tierflow.route_training import features_of, items_path, load_items, routing_quality, tier_metrics
    from tierflow.runtimes.learned_router import LearnedRouter

    offline_env()
    model = LearnedRouter.load(model_dir)
    items, digest = load_items(source)
    features = _features_for(config)
    features.check(model, str(model_dir))
    X, _ = features_of(items, features)
    P = model.predict_array(X)
    report = {"model": str(model_dir), "data": {"file": str(items_path(source)), "sha256": digest,
                                                "items": len(items)},
              "tiers": model.tiers, "per_tier": tier_metrics(model, P, items),
              "routing": routing_quality(model, P, items)}
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(f"{len(items)} items; tiers cheapest first: {', '.join(model.tiers)}")
    _print_metrics("per tier:", report["per_tier"])
    typer.echo("routing (chosen tier alone | with the cascade):")
    for level, r in report["routing"]["min_quality"].items():
        picks = ", ".join(f"{t} {n}" for t, n in r["tiers"].items())
        typer.echo(f"  min_quality {level}: quality {_fmt(r['quality'])} cost {_fmt(r['cost'], '.4g')} | quality "
                   f"{_fmt(r['quality_with_cascade'])} cost {_fmt(r['cost_with_cascade'], '.4g')}  ({picks})")
    for tier, r in report["routing"]["fixed_tier"].items():
        typer.echo(f"  always {tier}: quality {_fmt(r['quality'])} cost {_fmt(r['cost'], '.4g')}")
    oracle = report["routing"]["oracle"]
    typer.echo(f"  oracle: quality {_fmt(oracle['quality'])} cost {_fmt(oracle['cost'], '.4g')}")
