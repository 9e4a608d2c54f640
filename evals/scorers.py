"""Scorers: per-item metrics from an item's expectations and a task's output.

A scorer returns ``{metric: value}`` for the items it applies to and ``{}`` for the others, so an
aggregate is the mean over the items that carry the metric (``oos_recall`` is the mean over
out-of-scope items only). Quality metrics lie in [0, 1]; an item passes when all of them are 1.
The answer scorers below are registered with the core registry; benchmarks register their own scorers there.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Mapping
from typing import Any

import jsonschema

from tierflow.evals.datasets import OUT_OF_SCOPE, EvalItem
from tierflow.evals.errors import SuiteError
from tierflow.evals.registry import REGISTRY, Output, Scorer


def predicted_label(output: Output) -> str:
    """The label an intent output stands for: ``oos`` when flagged out of scope."""
    return OUT_OF_SCOPE if output.get("out_of_scope") else str(output.get("label", ""))


def score_intent(item: EvalItem, output: Output) -> dict[str, float]:
    """``accuracy`` on every item; ``in_scope_accuracy`` or ``oos_recall`` depending on the expected label."""
    if "label" not in item.expected:
        return {}
    expected = str(item.expected["label"])
    hit = float(predicted_label(output) == expected)
    scores = {"accuracy": hit}
    scores["oos_recall" if expected == OUT_OF_SCOPE else "in_scope_accuracy"] = hit
    return scores


def score_contains(item: EvalItem, output: Output) -> dict[str, float]:
    """``answer_contains``: the share of expected substrings found in the answer (case-insensitive)."""
    wanted = item.expected.get("contains")
    if wanted is None:
        return {}
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    answer = str(output.get("answer", "")).lower()
    return {"answer_contains": sum(str(w).lower() in answer for w in wanted) / len(wanted) if wanted else 1.0}


def score_regex(item: EvalItem, output: Output) -> dict[str, float]:
    """``answer_regex``: 1 when the expected pattern is found in the answer."""
    pattern = item.expected.get("regex")
    if pattern is None:
        return {}
    try:
        return {"answer_regex": float(re.search(pattern, str(output.get("answer", ""))) is not None)}
    except re.error as exc:
        raise SuiteError(f"item {item.id}: expected.regex {pattern!r} is not a valid pattern: {exc}") from None


def score_json_schema(item: EvalItem, output: Output) -> dict[str, float]:
    """``answer_json_schema``: 1 when the answer parses as JSON and validates against the expected schema."""
    schema = item.expected.get("json_schema")
    if schema is None:
        return {}
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise SuiteError(f"item {item.id}: expected.json_schema is not a valid schema: {exc.message}") from None
    try:
        value = json.loads(str(output.get("answer", "")))
    except json.JSONDecodeError:
        return {"answer_json_schema": 0.0}
    return {"answer_json_schema": float(jsonschema.Draft202012Validator(schema).is_valid(value))}


def _call_matches(expected: Any, actual: Mapping[str, Any]) -> bool:
    if isinstance(expected, str):
        return actual.get("tool") == expected
    if actual.get("tool") != expected.get("tool"):
        return False
    args = actual.get("args") or {}
    return all(args.get(k) == v for k, v in (expected.get("args") or {}).items())


def score_tool_calls(item: EvalItem, output: Output) -> dict[str, float]:
    """``tool_recall``: share of expected calls (a name, or ``{"tool", "args"}`` subset) the run made, each once."""
    expected = item.expected.get("tool_calls")
    if expected is None:
        return {}
    remaining = [c for c in output.get("tool_calls", []) if not c.get("error")]
    found = 0
    for want in expected:
        match = next((i for i, call in enumerate(remaining) if _call_matches(want, call)), None)
        if match is not None:
            found += 1
            remaining.pop(match)
    return {"tool_recall": found / len(expected) if expected else float(not output.get("tool_calls"))}


def score_usage(item: EvalItem, output: Output) -> dict[str, float]:
    """Latency, tokens, cost, number of model calls and the share of calls each tier served."""
    calls = output.get("model_calls", [])
    scores = {"latency_ms": float(output.get("latency_ms", 0.0)), "model_calls": float(len(calls)),
              "input_tokens": float(sum(c.get("input_tokens", 0) for c in calls)),
              "output_tokens": float(sum(c.get("output_tokens", 0) for c in calls)),
              "cost": float(output.get("cost", 0.0))}
    for call in calls:
        key = f"tier_share.{call.get('tier', '?')}"
        scores[key] = scores.get(key, 0.0) + 1.0 / len(calls)
    return scores


REGISTRY.add_scorer("intent", score_intent)
REGISTRY.add_scorer("contains", score_contains)
REGISTRY.add_scorer("regex", score_regex)
REGISTRY.add_scorer("json_schema", score_json_schema)
REGISTRY.add_scorer("tool_calls", score_tool_calls)
REGISTRY.add_scorer("usage", score_usage, quality=False)


def resolve_scorer(name: str) -> Scorer:
    """A registered scorer by name, or ``package.module:function`` returning a float or a dict of metrics."""
    registered = REGISTRY.scorers()
    if name in registered:
        return registered[name]
    if ":" not in name:
        raise SuiteError(f"unknown scorer {name!r}; built-in: {', '.join(registered)}, or package.module:function")
    module_name, _, attr = name.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise SuiteError(f"custom scorer {name!r} cannot be imported: {exc}") from None

    def custom(item: EvalItem, output: Output) -> dict[str, float]:
        value = fn(item, output)
        if isinstance(value, Mapping):
            return {str(k): float(v) for k, v in value.items()}
        return {attr: float(value)}

    return Scorer(name, custom)


def score_item(scorers: list[Scorer], item: EvalItem, output: Output) -> tuple[dict[str, float], bool]:
    """All scorers' metrics for one output, and whether every quality metric is 1 (the item passed)."""
    metrics: dict[str, float] = {}
    quality: list[float] = []
    for scorer in scorers:
        values = scorer(item, output)
        metrics.update(values)
        if scorer.quality:
            quality.extend(values.values())
    return metrics, all(v >= 1.0 for v in quality)


def pass_hat_k(passes: Mapping[str, list[bool]]) -> float:
    """pass^k: the share of items whose every one of their k repeats passed (consistency, not best-of-k)."""
    if not passes:
        return 0.0
    return sum(all(runs) and bool(runs) for runs in passes.values()) / len(passes)
