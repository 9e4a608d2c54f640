"""The routing benchmark's run side: which suites run on which tiers, and their eval records as routing items.

A routing benchmark file (``kind: routing``, e.g. the shipped ``evals/suites/routing.yaml``) names suites and
tiers. ``tierflow eval routing`` runs every item of each suite once on each tier alone (the benchmark's settings
turn escalation off), then :func:`routing_items` turns the eval records into one :class:`RoutingItem` per item,
and :func:`tierflow.evals.routing.analyze` computes the strategies' curves offline, without re-running a model.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tierflow.evals.datasets import EvalItem
from tierflow.evals.errors import SuiteError
from tierflow.evals.routing import RoutingItem, TierOutcome
from tierflow.evals.suite import SUITES_DIR
from tierflow.runtimes.cost import call_cost

# Notes the orchestrator writes when it had to replace the synthesizer's answer (tools.grounding).
_GROUNDING_NOTE = "synthesized answer had numbers"


class RoutingBenchmark(BaseModel):
    """A routing benchmark: suites (with how many items of each), the tiers cheapest first, and how to run them."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["routing"]
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    suites: dict[str, int | None] = Field(min_length=1, description="suite name or YAML -> items to run "
                                                                     "(None: the suite's own limit)")
    tiers: list[str] = Field(min_length=2, description="tiers, cheapest first; the last is the strongest")
    pattern: str = Field("sequential", description="collaboration pattern of run suites")
    config: Path | None = Field(None, description="settings TOML (tiers, MCP servers); escalation is turned off")
    folds: int = Field(5, ge=2, description="cross-fitting folds of the learned router")
    seed: int = 0
    path: Path | None = Field(None, exclude=True)


def is_routing_file(spec: str | Path) -> Path | None:
    """The YAML file of ``spec`` (a path or shipped name) when it declares ``kind: routing``, else None."""
    path = Path(spec)
    if not path.suffix and not path.exists():
        path = SUITES_DIR / f"{spec}.yaml"
    if not path.is_file():
        return None
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return None
    return path if isinstance(raw, dict) and raw.get("kind") == "routing" else None


def load_routing(path: Path) -> RoutingBenchmark:
    """The routing benchmark in ``path``; a bad field raises SuiteError naming it."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        bench = RoutingBenchmark.model_validate(raw)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{path}: invalid YAML: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "routing"
        raise SuiteError(f"{path}: {where}: {first['msg']}") from None
    base = path.resolve().parent
    if bench.config is not None and not bench.config.is_absolute():
        bench.config = base / bench.config
    bench.suites = {(str(base / s) if s.endswith((".yaml", ".yml")) and not Path(s).is_absolute() else s): n
                    for s, n in bench.suites.items()}
    bench.path = path
    return bench


def _tools_offered(item: EvalItem) -> int:
    """How many functions or tools the item offers the model (0 for free-form requests)."""
    for value in item.expected.values():
        if isinstance(value, Mapping):
            for key in ("functions", "tools"):
                if isinstance(value.get(key), list):
                    return len(value[key])
    return 0


def _failed_check(record: Mapping[str, Any]) -> str | None:
    """The first run-time check (not the scorer's verdict) the record failed: what a router can see."""
    if record.get("error"):
        return "error"
    output = record.get("output") or {}
    calls = output.get("model_calls") or []
    if output.get("output_error"):
        return "schema"
    if any(c.get("error") for c in calls):
        return "model_error"
    if output.get("status") not in (None, "done"):
        return "status"
    if any(t.get("error") for t in output.get("tool_calls") or []):
        return "tool_error"
    if any(_GROUNDING_NOTE in note for note in output.get("notes") or []):
        return "grounding"
    return next((str(c["unverified"]) for c in calls if c.get("unverified")), None)


def _confidence(calls: Sequence[Mapping[str, Any]]) -> tuple[float | None, float | None]:
    """The item's confidence: the lowest mean and the lowest single token log-probability over its calls."""
    means = [float(c["logprob_mean"]) for c in calls if c.get("logprob_mean") is not None]
    mins = [float(c["logprob_min"]) for c in calls if c.get("logprob_min") is not None]
    return (min(means) if means else None), (min(mins) if mins else None)


def outcome_of(record: Mapping[str, Any], private: bool, cleared: set[str],
               budget: Mapping[str, Any] | None = None,
               prices: Mapping[str, tuple[float, ...]] | None = None) -> TierOutcome:
    """One eval record (an item on one tier) as the routing benchmark's outcome.

    ``prices`` (tier -> :class:`tierflow.runtimes.cost.Price`) re-prices the record's calls with today's cost model
    (else the cost stored at run time counts); ``budget`` (the settings' ``routing.budget``) flags an item whose run
    used more tokens, cost or wall time than a run may.
    """
    output = record.get("output") or {}
    calls = list(output.get("model_calls") or [])
    mean, low = _confidence(calls)
    failed = _failed_check(record)
    tokens = int(sum(int(c.get("input_tokens") or 0) + int(c.get("output_tokens") or 0) for c in calls))
    wall_s = float(output.get("latency_ms") or 0.0) / 1000
    if prices is None:
        cost = float(output.get("cost") or 0.0)
    else:
        cost = sum(call_cost(prices.get(str(c.get("tier"))), int(c.get("input_tokens") or 0),
                             int(c.get("output_tokens") or 0), float(c.get("latency_ms") or 0.0) / 1000).total
                   for c in calls)
    limits = budget or {}
    over = any(cap is not None and used > cap for used, cap in ((tokens, limits.get("max_tokens")),
                                                                 (cost, limits.get("max_cost")),
                                                                 (wall_s, limits.get("max_wall_s"))))
    return TierOutcome(
        passed=bool(record.get("passed")), cost=cost, tokens=tokens, wall_s=wall_s, calls=len(calls),
        checks_ok=failed is None, failed_check=failed, logprob_mean=mean, logprob_min=low,
        private_violation=private and any(str(c.get("tier")) not in cleared for c in calls), budget_overrun=over)


def routing_items(suite: str, items: Iterable[EvalItem], records: Iterable[Mapping[str, Any]],
                  tiers: Sequence[str], *, cleared_for_private: Iterable[str],
                  private_patterns: Sequence[str] = (), budget: Mapping[str, Any] | None = None,
                  prices: Mapping[str, tuple[float, ...]] | None = None) -> list[RoutingItem]:
    """One routing item per eval item that ran on every tier (or, when private, on a cleared one).

    An item is private when one of the router's ``private_patterns`` matches it, as the router would decide;
    ``budget`` (``max_tokens``/``max_cost``/``max_wall_s`` of a run) flags overruns; ``prices`` re-prices calls.
    """
    cleared = set(cleared_for_private)
    patterns = [re.compile(p) for p in private_patterns]
    by_item: dict[str, dict[str, Mapping[str, Any]]] = {}
    for record in records:
        if record.get("tier") in tiers and int(record.get("repeat") or 0) == 0:
            by_item.setdefault(str(record["item"]), {})[str(record["tier"])] = record
    out: list[RoutingItem] = []
    for item in items:
        ran = by_item.get(item.id, {})
        private = any(p.search(item.input) for p in patterns)
        needed = [t for t in tiers if t in cleared] if private else list(tiers)
        if not needed or any(t not in ran for t in needed):
            continue
        intents = {str((r.get("output") or {}).get("intent")) for r in ran.values() if (r.get("output") or {})
                   .get("intent")}
        features: dict[str, Any] = {"tools": _tools_offered(item)}
        if len(intents) == 1:  # the classifier does not depend on the tier: one label per item
            features["intent"] = intents.pop()
        out.append(RoutingItem(suite=Path(suite).stem, item=item.id, input=item.input, group=item.group,
                               private=private, features=features,
                               outcomes={t: outcome_of(r, private, cleared, budget, prices) for t, r in ran.items()
                                         if t in tiers}))
    return out
