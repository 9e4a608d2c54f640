"""Offline routing benchmark analysis: quality–cost curves of routing strategies from stored per-tier outcomes.

A routing benchmark runs every item of a suite on every tier once and stores one :class:`RoutingItem` per item
(JSON lines, :func:`write_items` / :func:`read_items`). :func:`analyze` then replays routing strategies over those
rows WITHOUT running a model: each single tier, random mixes of two tiers, the static order (escalate when a
run-time check fails) and the confidence cascade at a grid of log-probability thresholds, both for every cascade
order (each subsequence of the tiers, cheapest first, of two or more tiers ending at the strongest: what
``routing.cascade`` may list), an optional learned router (cross-fitted) and the oracle. It scores them with
RouterBench's AIQ (Hu et al. 2024, arXiv:2403.12031) and RouteLLM's APGR / CPT (Ong et al. 2024,
arXiv:2406.18665), and recommends the order and the cascade thresholds to set as ``routing.cascade`` and
``routing.checks.min_mean_logprob`` / ``min_token_logprob``.
:func:`write_routing_report` writes routing.json, routing.md and routing.html.

Conventions (all stated again in the report):
- quality = mean of ``passed`` over items; cost = mean cost per item (every tier a strategy tried is paid);
- strong_share = share of items whose accepted answer or any attempt ran on the strongest tier;
- a private item may only run on tiers in ``cleared_for_private`` that have an outcome row; a strategy asked to use
  another tier for it uses the nearest allowed one (the next stronger allowed tier, else the strongest allowed);
- envelopes are the non-decreasing upper concave hull of a strategy's points (RouterBench): between two operating
  points a strategy can mix them at random, so the segment between them is achievable; before a strategy's
  cheapest point its quality counts as 0 and after its dearest point it stays flat;
- strategies ``static:<order>`` / ``cascade:<order>`` (order as ``mobile+edge``) hold one order each; ``static`` and
  ``cascade`` are the union of their points over all orders (each point's ``params["order"]`` names its order).
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from itertools import combinations, pairwise
from pathlib import Path
from typing import Any

import numpy as np

from tierflow.evals.errors import DatasetError, EvalError
from tierflow.evals.report import Section, Table, _png, sections_html, sections_markdown

__all__ = [
    "Fit",
    "Predictor",
    "RoutingDataError",
    "RoutingItem",
    "TierOutcome",
    "aiq",
    "analyze",
    "apgr",
    "cpt",
    "envelope_value",
    "fit_group_rates",
    "held_out_recommendation",
    "load_routellm",
    "load_routerbench",
    "pareto_frontier",
    "read_items",
    "replay_cascade",
    "routing_html",
    "routing_markdown",
    "routing_plots",
    "upper_envelope",
    "write_items",
    "write_routing_report",
]

EPS = 1e-9
MIX_STEPS = 20  # random mixes: p = 0, 0.05, ..., 1
RECOMMEND_QUALITY = 0.95  # recommended cascade: >= 95% of the strongest tier's quality ...
RECOMMEND_STRONG = 0.40  # ... with <= 40% of its calls
MAX_ORDERS = 31  # all cascade orders up to 6 tiers; beyond, the full order and those of two or three tiers
MAX_PLOT_ORDERS = 5  # cascade orders drawn in the quality-cost plot (best AIQ first)


class RoutingDataError(DatasetError):
    """A routing-benchmark file or row is unusable; the message starts with ``file:line``."""


# -- data ----------------------------------------------------------------------------------------------------


@dataclass
class TierOutcome:
    """What one tier did on one item: passed the suite's checks or not, what it cost, and the run-time signals."""

    passed: bool
    cost: float
    tokens: int
    wall_s: float
    calls: int
    checks_ok: bool
    failed_check: str | None
    logprob_mean: float | None
    logprob_min: float | None
    private_violation: bool = False
    budget_overrun: bool = False


@dataclass
class RoutingItem:
    """One benchmark item with every tier's outcome (``outcomes`` by tier name) and cheap routing features."""

    suite: str
    item: str
    input: str
    group: str | None
    private: bool
    features: dict[str, Any]
    outcomes: dict[str, TierOutcome]


Predictor = Callable[[RoutingItem], dict[str, float]]
Fit = Callable[[list[RoutingItem]], Predictor]


def write_items(items: Iterable[RoutingItem], path: Path) -> None:
    """Write items as JSON lines (one ``asdict(item)`` per line), the file :func:`read_items` reads back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(asdict(item), ensure_ascii=False, sort_keys=True) + "\n")


_OUTCOME_TYPES: dict[str, tuple[type, ...]] = {
    "passed": (bool,), "cost": (int, float), "tokens": (int,), "wall_s": (int, float), "calls": (int,),
    "checks_ok": (bool,), "failed_check": (str, type(None)), "logprob_mean": (int, float, type(None)),
    "logprob_min": (int, float, type(None)), "private_violation": (bool,), "budget_overrun": (bool,)}
_OUTCOME_OPTIONAL = {"private_violation", "budget_overrun"}
_ITEM_TYPES: dict[str, tuple[type, ...]] = {
    "suite": (str,), "item": (str,), "input": (str,), "group": (str, type(None)), "private": (bool,),
    "features": (dict,), "outcomes": (dict,)}


def _kind(types: tuple[type, ...]) -> str:
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string", dict: "an object",
             type(None): "null"}
    return " or ".join(dict.fromkeys(names[t] for t in types))


def _check_fields(obj: dict[str, Any], types: Mapping[str, tuple[type, ...]], optional: set[str], where: str,
                  path: Path, line: int) -> None:
    missing = [k for k in types if k not in obj and k not in optional]
    if missing:
        raise RoutingDataError(f"{where}missing field(s) {', '.join(missing)}", path, line)
    for key, allowed in types.items():
        if key not in obj:
            continue
        value = obj[key]
        ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
        if isinstance(value, float) and not math.isfinite(value):
            ok = False
        if not ok:
            raise RoutingDataError(f"{where}{key} must be {_kind(allowed)}, got {json.dumps(value)[:60]}", path,
                                   line)


def _item_from(obj: object, path: Path, line: int) -> RoutingItem:
    if not isinstance(obj, dict):
        raise RoutingDataError("expected a JSON object (one RoutingItem per line)", path, line)
    _check_fields(obj, _ITEM_TYPES, set(), "", path, line)
    if not obj["outcomes"]:
        raise RoutingDataError("outcomes is empty: every item needs at least one tier's outcome", path, line)
    outcomes: dict[str, TierOutcome] = {}
    for tier, raw in obj["outcomes"].items():
        if not isinstance(raw, dict):
            raise RoutingDataError(f"outcomes.{tier} must be an object", path, line)
        _check_fields(raw, _OUTCOME_TYPES, _OUTCOME_OPTIONAL, f"outcomes.{tier}: ", path, line)
        known = {k: raw[k] for k in _OUTCOME_TYPES if k in raw}
        for key in ("cost", "wall_s", "logprob_mean", "logprob_min"):
            known[key] = None if known[key] is None else float(known[key])
        if known["cost"] < 0:
            raise RoutingDataError(f"outcomes.{tier}: cost must not be negative", path, line)
        outcomes[tier] = TierOutcome(**known)
    return RoutingItem(suite=obj["suite"], item=obj["item"], input=obj["input"], group=obj["group"],
                       private=obj["private"], features=obj["features"], outcomes=outcomes)


def read_items(path: Path) -> list[RoutingItem]:
    """Read the JSON lines :func:`write_items` writes; a bad row raises :class:`RoutingDataError` naming file:line.

    Blank lines are skipped and unknown keys are ignored (producers may store more); missing or mistyped required
    fields, an empty ``outcomes`` and a duplicate ``(suite, item)`` are errors.
    """
    path = Path(path)
    if not path.is_file():
        raise RoutingDataError("file not found", path)
    items: list[RoutingItem] = []
    seen: dict[tuple[str, str], int] = {}
    for line_no, obj in _json_lines(path):
        item = _item_from(obj, path, line_no)
        key = (item.suite, item.item)
        if key in seen:
            raise RoutingDataError(f"duplicate item {item.suite}/{item.item} (first on line {seen[key]})",
                                   path, line_no)
        seen[key] = line_no
        items.append(item)
    return items


def _json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) of each non-blank line; bad JSON raises RoutingDataError naming file:line."""
    with path.open(encoding="utf-8-sig") as f:
        for line_no, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                yield line_no, json.loads(text)
            except json.JSONDecodeError as exc:
                raise RoutingDataError(f"not valid JSON: {exc.msg} (column {exc.colno})", path, line_no) from None


# -- envelopes and metrics ------------------------------------------------------------------------------------

Pt = tuple[float, float]


def pareto_frontier(points: Iterable[Pt]) -> list[Pt]:
    """The (cost, quality) points no other point beats: sorted by cost, quality strictly rising.

    A point is kept when every cheaper-or-equal point has lower quality (ties in cost keep the best quality).
    """
    ordered = sorted(points, key=lambda p: (p[0], -p[1]))
    out: list[Pt] = []
    for x, y in ordered:
        if not out or y > out[-1][1] + EPS:
            out.append((float(x), float(y)))
    return out


def upper_envelope(points: Iterable[Pt]) -> list[Pt]:
    """Vertices of the non-decreasing upper concave hull of (x, y) points (RouterBench's non-decreasing convex hull).

    Between two vertices the value is linear (mixing the two operating points at random achieves it). Use
    :func:`envelope_value` to read it: 0 before the first vertex, flat after the last.
    """
    hull: list[Pt] = []
    for p in pareto_frontier(points):
        while len(hull) >= 2:
            (ox, oy), (ax, ay) = hull[-2], hull[-1]
            if (ax - ox) * (p[1] - oy) - (ay - oy) * (p[0] - ox) >= -EPS:  # hull[-1] is on or below o→p
                hull.pop()
            else:
                break
        hull.append(p)
    return hull


def envelope_value(env: Sequence[Pt], x: float) -> float:
    """The envelope at ``x``: 0 before its first vertex, linear between vertices, the last value after the last."""
    if not env or x < env[0][0] - EPS:
        return 0.0
    for (x0, y0), (x1, y1) in pairwise(env):
        if x <= x1:
            return y0 if x1 - x0 <= EPS else y0 + (y1 - y0) * (max(x, x0) - x0) / (x1 - x0)
    return env[-1][1]


def _integral(env: Sequence[Pt], a: float, b: float) -> float:
    """∫_a^b envelope_value(env, x) dx, exactly (the envelope is piecewise linear with a step at its start)."""
    if not env or b <= a:
        return 0.0
    knots = sorted({a, b, *(x for x, _ in env if a < x < b)})
    total = 0.0
    for x0, x1 in pairwise(knots):
        if x1 <= env[0][0] + EPS and x0 < env[0][0] - EPS:  # wholly before the first vertex: 0
            continue
        left = envelope_value(env, x0) if x0 >= env[0][0] - EPS else 0.0
        total += (left + envelope_value(env, x1)) / 2 * (x1 - x0)
    return total


def aiq(points: Iterable[Pt], c_min: float, c_max: float) -> float | None:
    """RouterBench's AIQ (Hu et al. 2024): (1 / (c_max − c_min)) ∫_{c_min}^{c_max} Q̂(c) dc.

    Q̂ is the non-decreasing upper concave hull of the strategy's (cost, quality) points, 0 below its cheapest
    point and flat above its dearest; [c_min, c_max] must be the same for every strategy compared. None when the
    range is empty (every point costs the same, e.g. all tiers priced 0).
    """
    if c_max - c_min <= EPS:
        return None
    return _integral(upper_envelope(points), c_min, c_max) / (c_max - c_min)


def _pgr(quality: float, q_weak: float, q_strong: float) -> float | None:
    if q_strong - q_weak <= EPS:
        return None
    return (quality - q_weak) / (q_strong - q_weak)


def apgr(points: Iterable[tuple[float, float]], q_weak: float, q_strong: float) -> float | None:
    """RouteLLM's APGR (Ong et al. 2024): ∫_0^1 PGR(s) ds over the strongest-tier call share s.

    Points are (strong_share, quality); PGR(q) = (q − q_weak)/(q_strong − q_weak), clipped to [0, 1] per point
    before the envelope (non-decreasing upper concave hull, 0 before the lowest share, flat after the highest) is
    integrated. Random mixing of weak and strong gives PGR = s, so 0.5; None when q_strong <= q_weak.
    """
    curve = []
    for share, quality in points:
        value = _pgr(quality, q_weak, q_strong)
        if value is None:
            return None
        curve.append((share, min(1.0, max(0.0, value))))
    return _integral(upper_envelope(curve), 0.0, 1.0)


def cpt(points: Iterable[tuple[float, float]], q_weak: float, q_strong: float, target: float) -> float | None:
    """RouteLLM's CPT(x): the smallest strongest-tier call share among points reaching PGR >= x (None: none does)."""
    shares = []
    for share, quality in points:
        value = _pgr(quality, q_weak, q_strong)
        if value is None:
            return None
        if value >= target - EPS:
            shares.append(share)
    return min(shares) if shares else None


def _margin_vs(env: Sequence[Pt], baseline: Sequence[Pt]) -> tuple[float, float] | None:
    """(worst margin, cost at which it occurs) of env − baseline over env's own cost range (both piecewise linear,
    so checking every vertex of either inside that range finds the minimum)."""
    if not env:
        return None
    lo, hi = env[0][0], env[-1][0]
    xs = sorted({lo, hi, *(x for x, _ in env), *(x for x, _ in baseline if lo <= x <= hi)})
    return min(((envelope_value(env, x) - envelope_value(baseline, x), x) for x in xs), key=lambda m: m[0])


def _above(env: Sequence[Pt], baseline: Sequence[Pt]) -> dict[str, Any] | None:
    """Whether env is strictly above baseline on the open interior of env's cost range (its two end costs
    excluded; a one-cost range is judged at that cost), with the worst margin over the closed range.

    The difference is linear between consecutive knots (vertices of either), so it is positive on the open interior
    when it is positive at every interior knot and at every midpoint between knots, and not negative at the ends."""
    margin = _margin_vs(env, baseline)
    if margin is None:
        return None
    lo, hi = env[0][0], env[-1][0]

    def diff(x: float) -> float:
        return envelope_value(env, x) - envelope_value(baseline, x)

    if hi - lo <= EPS:
        interior = margin[0] > EPS
    else:
        knots = sorted({lo, hi, *(x for x, _ in env), *(x for x, _ in baseline if lo < x < hi)})
        inner = [x for x in knots if lo < x < hi] + [(a + b) / 2 for a, b in pairwise(knots)]
        interior = diff(lo) >= -EPS and diff(hi) >= -EPS and all(diff(x) > EPS for x in inner)
    return {"everywhere": interior, "worst_margin": margin[0], "at_cost": margin[1], "range": [lo, hi]}


# -- replaying strategies over the stored outcomes -------------------------------------------------------------


class _Table:
    """Per-tier × per-item arrays of the outcomes (tiers cheapest first), with the privacy mask."""

    def __init__(self, items: Sequence[RoutingItem], tiers: Sequence[str], cleared: set[str]) -> None:
        t, n = len(tiers), len(items)
        self.tiers, self.items = list(tiers), list(items)
        shape = (t, n)
        self.has = np.zeros(shape, bool)
        self.passed, self.checks = np.zeros(shape, bool), np.zeros(shape, bool)
        self.pv, self.bo = np.zeros(shape, bool), np.zeros(shape, bool)
        self.cost, self.wall = np.zeros(shape), np.zeros(shape)
        self.tokens, self.calls = np.zeros(shape), np.zeros(shape)
        self.lp_mean, self.lp_min = np.full(shape, np.nan), np.full(shape, np.nan)
        self.private = np.array([item.private for item in items], bool)
        cleared_row = np.array([tier in cleared for tier in tiers], bool)
        for j, item in enumerate(items):
            for i, tier in enumerate(tiers):
                out = item.outcomes.get(tier)
                if out is None:
                    continue
                self.has[i, j] = True
                self.passed[i, j], self.checks[i, j] = out.passed, out.checks_ok
                self.pv[i, j], self.bo[i, j] = out.private_violation, out.budget_overrun
                self.cost[i, j], self.wall[i, j] = out.cost, out.wall_s
                self.tokens[i, j], self.calls[i, j] = out.tokens, out.calls
                if out.logprob_mean is not None:
                    self.lp_mean[i, j] = out.logprob_mean
                if out.logprob_min is not None:
                    self.lp_min[i, j] = out.logprob_min
        self.allowed = self.has & (~self.private[None, :] | cleared_row[:, None])
        for j, item in enumerate(items):
            if not item.private:
                missing = [tier for i, tier in enumerate(tiers) if not self.has[i, j]]
                if missing:
                    raise EvalError(f"item {item.suite}/{item.item} has no outcome for tier(s) {', '.join(missing)}; "
                                    "a benchmark must run every non-private item on every tier")
            elif not self.allowed[:, j].any():
                raise EvalError(f"private item {item.suite}/{item.item} has no outcome on a tier cleared for private "
                                f"data (cleared: {', '.join(sorted(cleared)) or 'none'})")
        self.idx = np.arange(t)[:, None]
        self.first_allowed = np.argmax(self.allowed, axis=0)
        self.last_allowed = t - 1 - np.argmax(self.allowed[::-1], axis=0)

    def onehot(self, chosen: np.ndarray) -> np.ndarray:
        return self.idx == chosen[None, :]

    def cascade(self, accept: np.ndarray, start: np.ndarray | None = None,
                mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Try allowed tiers (those in ``mask``, default all) from ``start`` up; stop at the first accepted one (the
        last allowed one always is, and every mask of :meth:`order_mask` holds it)."""
        start = self.first_allowed if start is None else start
        later = (self.allowed if mask is None else mask) & (self.idx >= start[None, :])
        eligible = later & (accept | (self.idx == self.last_allowed[None, :]))
        chosen = np.argmax(eligible, axis=0)
        return chosen, later & (self.idx <= chosen[None, :])

    def accept(self, min_mean: float | None, min_token: float | None) -> np.ndarray:
        """checks_ok, and each given log-probability threshold met (a tier that reports none passes on checks)."""
        ok = self.checks.copy()
        if min_mean is not None:
            ok &= np.isnan(self.lp_mean) | (self.lp_mean >= min_mean)
        if min_token is not None:
            ok &= np.isnan(self.lp_min) | (self.lp_min >= min_token)
        return ok

    def substitute(self, tier: int) -> np.ndarray:
        """Tier ``tier`` for every item; where it is not allowed, the next stronger allowed tier, else the strongest
        allowed one."""
        stronger = self.allowed & (self.idx > tier)
        fallback = np.where(stronger.any(axis=0), np.argmax(stronger, axis=0), self.last_allowed)
        return np.where(self.allowed[tier], tier, fallback)

    def order_mask(self, order: Sequence[int]) -> np.ndarray:
        """Per item, the tiers a cascade over ``order`` (tier indices, cheapest first, ending at the strongest) tries:
        each order tier, or where an item may not use it, its :meth:`substitute` (so every item ends on its strongest
        allowed tier, and one with no allowed tier in the order uses the strongest allowed one)."""
        mask = np.zeros_like(self.allowed)
        cols = np.arange(len(self.items))
        for tier in order:
            mask[self.substitute(tier), cols] = True
        return mask

    def point(self, label: str, params: dict[str, Any], chosen: np.ndarray, tried: np.ndarray) -> dict[str, Any]:
        """Aggregate one strategy configuration: the accepted tier ``chosen`` per item and every tier ``tried``."""
        n = len(self.items)
        cols = np.arange(n)
        tried = tried | self.onehot(chosen)
        return {"label": label, "params": params,
                "quality": float(self.passed[chosen, cols].mean()),
                "cost": float((self.cost * tried).sum() / n),
                "strong_share": float(tried[-1].mean()),
                "passed": int(self.passed[chosen, cols].sum()),
                "answered_by": {t: int((chosen == i).sum()) for i, t in enumerate(self.tiers)},
                "tried": {t: int(tried[i].sum()) for i, t in enumerate(self.tiers)},
                "calls": {t: int((self.calls[i] * tried[i]).sum()) for i, t in enumerate(self.tiers)},
                "tokens": float((self.tokens * tried).sum() / n),
                "wall_s": float((self.wall * tried).sum() / n),
                "privacy_violations": int((tried & ~self.allowed & self.private[None, :]).sum()),
                "private_violation_rows": int((tried & self.pv).sum()),
                "budget_overrun_rows": int((tried & self.bo).sum())}


def _mix(a: dict[str, Any], b: dict[str, Any], p: float, label: str, params: dict[str, Any]) -> dict[str, Any]:
    """The expected point of running ``b`` with probability p and ``a`` otherwise (RouterBench's random router)."""
    def lerp(x: Any, y: Any) -> Any:
        if isinstance(x, dict):
            return {k: lerp(x[k], y[k]) for k in x}
        return (1 - p) * x + p * y

    keys = ("quality", "cost", "strong_share", "passed", "answered_by", "tried", "calls", "tokens", "wall_s")
    flags = ("privacy_violations", "private_violation_rows", "budget_overrun_rows")  # what can happen, not means
    return {"label": label, "params": params, **{k: lerp(a[k], b[k]) for k in keys},
            **{k: a[k] if p == 0 else b[k] if p == 1 else max(a[k], b[k]) for k in flags}}


def _grid(values: np.ndarray, size: int) -> list[float | None]:
    """None (threshold off) plus ``size`` quantiles (5%..100% for 20) of the observed values."""
    finite = values[np.isfinite(values)]
    if not finite.size or size <= 0:
        return [None]
    qs = np.quantile(finite, np.linspace(0, 1, size + 1)[1:])
    return [None, *sorted({float(q) for q in qs})]


def _orders(n: int) -> list[list[int]]:
    """Cascade orders over n tiers: every subsequence of 0..n-1 of length >= 2 ending at n-1, the full order first,
    longer before shorter (above :data:`MAX_ORDERS` orders: the full order and those of two or three tiers)."""
    last = n - 1
    orders = [[*head, last] for k in range(last, 0, -1) for head in combinations(range(last), k)]
    if len(orders) > MAX_ORDERS:
        orders = [o for o in orders if len(o) <= 3 or len(o) == n]
    return orders


def _folds(n: int, folds: int, seed: int) -> tuple[int, dict[int, int]]:
    """k (at least 2, at most n) and each item index's fold: items shuffled with ``random.Random(seed)``, dealt round
    robin; the one split cross-fitting and the held-out recommendation share."""
    k = max(2, min(folds, n))
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return k, {index: pos % k for pos, index in enumerate(order)}


def _cross_fit(items: Sequence[RoutingItem], fit: Fit, folds: int, seed: int) -> list[dict[str, float]]:
    """Predicted pass probability per tier for every item, each from a model fitted without that item's fold.

    Items are shuffled with ``random.Random(seed)`` and dealt into k folds; the predictor sees the item with its
    outcomes removed, so it can only use what a router has at request time (input, group, features, private).
    """
    n = len(items)
    k, fold_of = _folds(n, folds, seed)
    predictions: list[dict[str, float]] = [{} for _ in items]
    for fold in range(k):
        train = [items[i] for i in range(n) if fold_of[i] != fold]
        predict = fit(train)
        for i in range(n):
            if fold_of[i] == fold:
                predictions[i] = {str(t): float(p) for t, p in predict(replace(items[i], outcomes={})).items()}
    return predictions


def fit_group_rates(feature: str | None = None, prior: float = 1.0) -> Fit:
    """A simple learned router: per tier, the smoothed pass rate of training items sharing the item's ``feature``
    value (its ``group`` when feature is None), falling back to the tier's overall rate. A baseline, and an
    example of the ``fit`` contract."""
    def key(item: RoutingItem) -> Any:
        value = item.group if feature is None else item.features.get(feature)
        return json.dumps(value, sort_keys=True, default=str)

    def fit(train: list[RoutingItem]) -> Predictor:
        overall: dict[str, list[int]] = {}
        by_key: dict[tuple[str, str], list[int]] = {}
        for item in train:
            for tier, out in item.outcomes.items():
                for counts in (overall.setdefault(tier, [0, 0]), by_key.setdefault((key(item), tier), [0, 0])):
                    counts[0] += int(out.passed)
                    counts[1] += 1
        base = {tier: (c[0] + 0.5 * prior) / (c[1] + prior) for tier, c in overall.items()}

        def predict(item: RoutingItem) -> dict[str, float]:
            out = {}
            for tier, rate in base.items():
                passed, total = by_key.get((key(item), tier), (0, 0))
                out[tier] = (passed + rate * prior) / (total + prior)
            return out

        return predict

    return fit


def _metrics(points: list[dict[str, Any]], ctx: dict[str, Any], random_env: list[Pt] | None,
             pgr_points: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A strategy's metrics; ``pgr_points`` (default: all its points) are the ones APGR, CPT and the strongest-tier
    savings are read from: for the random router, the weak↔strong mixes only, as in RouteLLM."""
    pgr_points = points if pgr_points is None else pgr_points
    cq = [(p["cost"], p["quality"]) for p in points]
    sq = [(p["strong_share"], p["quality"]) for p in pgr_points]
    qw, qs = ctx["q_weak"], ctx["q_strong"]
    env = upper_envelope(cq)
    near_strong = [1 - p["strong_share"] for p in pgr_points if p["quality"] >= qs - 0.01 - EPS]
    best = max(points, key=lambda p: (p["quality"], -p["cost"]))
    out: dict[str, Any] = {
        "points": len(points), "best_quality": best["quality"], "best_quality_cost": best["cost"],
        "min_cost": min(p["cost"] for p in points),
        "aiq": aiq(cq, ctx["c_min"], ctx["c_max"]),
        "apgr": apgr(sq, qw, qs), "cpt50": cpt(sq, qw, qs, 0.5), "cpt80": cpt(sq, qw, qs, 0.8),
        "strong_calls_saved_1pt": max(near_strong) if near_strong else None,
        "privacy_violations": max(p["privacy_violations"] for p in points),
        "private_violation_rows": max(p["private_violation_rows"] for p in points),
        "budget_overrun_rows": max(p["budget_overrun_rows"] for p in points),
        "above_random": None}
    if random_env is not None:
        out["above_random"] = _above(env, random_env)
    return out


def _default_tiers(items: Sequence[RoutingItem]) -> list[str]:
    names = list(dict.fromkeys(t for item in items for t in item.outcomes))
    costs = {t: [item.outcomes[t].cost for item in items if t in item.outcomes] for t in names}
    return sorted(names, key=lambda t: sum(costs[t]) / len(costs[t]))  # stable: ties keep first-seen order


def analyze(items: Sequence[RoutingItem], tiers: Sequence[str] | None = None, *, cleared_for_private: Iterable[str],
            fit: Fit | None = None, folds: int = 5, seed: int = 0, grid: int = 20,
            learned_thresholds: tuple[float | None, float | None] | None = None) -> dict[str, Any]:
    """Replay every routing strategy over the stored outcomes and score it; returns a JSON-able report.

    ``tiers`` runs cheapest → strongest (default: by mean cost, ties in first-seen order); ``fit`` (optional) builds
    the learned router, cross-fitted over ``folds`` folds shuffled with ``seed``; ``grid`` quantiles per
    log-probability threshold; ``learned_thresholds`` (min mean, min token log-prob) for the learned router's
    cascade, which otherwise escalates on ``checks_ok`` alone. Raises EvalError (a ValueError) when a non-private
    item lacks a tier's outcome or a private item has none on a cleared tier.
    """
    items = list(items)
    if not items:
        raise EvalError("no routing items to analyze")
    tiers = list(tiers) if tiers is not None else _default_tiers(items)
    if len(tiers) < 2 or len(set(tiers)) != len(tiers):
        raise EvalError(f"need at least two distinct tiers, cheapest first; got {tiers}")
    cleared = set(cleared_for_private)
    table = _Table(items, tiers, cleared)
    n_t = len(tiers)
    strategies: dict[str, dict[str, Any]] = {}

    for i, tier in enumerate(tiers):
        chosen = table.substitute(i)
        point = table.point(tier, {"tier": tier}, chosen, table.onehot(chosen))
        point["substituted"] = int((chosen != i).sum())
        strategies[f"tier:{tier}"] = {"kind": "single", "points": [point]}
    singles = [strategies[f"tier:{t}"]["points"][0] for t in tiers]

    mixes = []
    for a in range(n_t):
        for b in range(a + 1, n_t):
            for step in range(MIX_STEPS + 1):
                p = step / MIX_STEPS
                mixes.append(_mix(singles[a], singles[b], p, f"{tiers[a]}↔{tiers[b]} p={p:.2f}",
                                  {"cheap": tiers[a], "strong": tiers[b], "p_strong": p}))
    strategies["random"] = {"kind": "random", "points": mixes}

    orders = [[tiers[i] for i in order] for order in _orders(n_t)]
    checks_only = table.accept(None, None)
    per_static: dict[str, dict[str, Any]] = {}
    per_cascade: dict[str, dict[str, Any]] = {}
    grids: dict[str, dict[str, list[float | None]]] = {}
    for order, names in zip(_orders(n_t), orders, strict=True):
        key = "+".join(names)
        mask = table.order_mask(order)
        chosen, tried = table.cascade(checks_only, mask=mask)
        per_static[f"static:{key}"] = {"kind": "static", "order": names, "points": [
            table.point(f"{key} checks only", {"order": names}, chosen, tried)]}
        body = mask & (table.idx < table.last_allowed[None, :])  # where a threshold can escalate
        grids[key] = {"min_mean_logprob": _grid(table.lp_mean[body], grid),
                      "min_token_logprob": _grid(table.lp_min[body], grid)}
        points = []
        for th_mean in grids[key]["min_mean_logprob"]:
            for th_min in grids[key]["min_token_logprob"]:
                chosen, tried = table.cascade(table.accept(th_mean, th_min), mask=mask)
                label = f"{key} mean>={_threshold(th_mean)} min>={_threshold(th_min)}"
                points.append(table.point(label, {"min_mean_logprob": th_mean, "min_token_logprob": th_min,
                                                  "order": names}, chosen, tried))
        per_cascade[f"cascade:{key}"] = {"kind": "cascade", "order": names, "points": points,
                                         "thresholds_grid": grids[key]}
    static = [p for s in per_static.values() for p in s["points"]]
    cascade = [p for s in per_cascade.values() for p in s["points"]]
    strategies["static"] = {"kind": "static", "orders": orders, "points": static}
    strategies.update(per_static)
    strategies["cascade"] = {"kind": "cascade", "orders": orders, "points": cascade}
    strategies.update(per_cascade)
    grid_mean, grid_min = grids["+".join(tiers)].values()

    if fit is not None:
        predictions = _cross_fit(items, fit, folds, seed)
        prob = np.array([[pred.get(t, 0.0) for pred in predictions] for t in tiers])
        lt_mean, lt_min = learned_thresholds or (None, None)
        accept = table.accept(lt_mean, lt_min)
        alone, cascaded = [], []
        for step in range(MIX_STEPS + 1):
            mq = step / MIX_STEPS
            ok = table.allowed & (prob >= mq - EPS)
            start = np.where(ok.any(axis=0), np.argmax(ok, axis=0), table.last_allowed)
            params = {"min_quality": mq}
            alone.append(table.point(f"p>={mq:.2f}", params, start, table.onehot(start)))
            chosen, tried = table.cascade(accept, start)
            cascaded.append(table.point(f"p>={mq:.2f}", params | {"min_mean_logprob": lt_mean,
                                                                   "min_token_logprob": lt_min}, chosen, tried))
        strategies["learned"] = {"kind": "learned", "points": alone, "folds": max(2, min(folds, len(items))),
                                 "seed": seed}
        strategies["learned+cascade"] = {"kind": "learned+cascade", "points": cascaded,
                                         "folds": max(2, min(folds, len(items))), "seed": seed}

    ok = table.allowed & table.passed
    chosen = np.where(ok.any(axis=0), np.argmax(ok, axis=0), table.first_allowed)
    strategies["oracle"] = {"kind": "oracle", "points": [table.point("oracle", {}, chosen, table.onehot(chosen))]}

    all_costs = [p["cost"] for s in strategies.values() for p in s["points"]]
    ctx = {"q_weak": singles[0]["quality"], "q_strong": singles[-1]["quality"],
           "c_min": min(all_costs), "c_max": max(all_costs)}
    random_env = upper_envelope((p["cost"], p["quality"]) for p in mixes)
    for name, strategy in strategies.items():
        points = strategy["points"]
        strategy["envelope"] = [list(v) for v in upper_envelope((p["cost"], p["quality"]) for p in points)]
        pgr_points = [p for p in points if p["params"]["cheap"] == tiers[0] and p["params"]["strong"] == tiers[-1]] \
            if name == "random" else points
        strategy["pgr_envelope"] = _pgr_envelope(pgr_points, ctx)
        strategy["metrics"] = _metrics(points, ctx, None if name == "random" else random_env, pgr_points)

    return {"kind": "routing",
            "suites": sorted({item.suite for item in items}),
            "tiers": tiers, "weak": tiers[0], "strong": tiers[-1],
            "items": len(items), "private_items": int(table.private.sum()),
            "cleared_for_private": sorted(cleared),
            "q_weak": ctx["q_weak"], "q_strong": ctx["q_strong"], "cost_range": [ctx["c_min"], ctx["c_max"]],
            "orders": orders,
            "thresholds_grid": {"min_mean_logprob": grid_mean, "min_token_logprob": grid_min},
            "thresholds_grid_by_order": grids,
            "privacy_violations": {name: s["metrics"]["privacy_violations"] for name, s in strategies.items()},
            "private_violation_rows": int((table.has & table.pv).sum()),
            "budget_overrun_rows": int((table.has & table.bo).sum()),
            "strategies": strategies,
            "recommendation": _recommend(cascade, singles[-1]),
            "cheapest_at_95": _cheapest(static + cascade, singles[-1]),
            "random_envelope": [list(v) for v in random_env],
            "definitions": DEFINITIONS}


def held_out_recommendation(items: Sequence[RoutingItem], tiers: Sequence[str], *, cleared_for_private: Iterable[str],
                            folds: int = 5, seed: int = 0, grid: int = 20) -> dict[str, Any]:
    """The recommendation's quality out of sample: for each fold, the cascade order and thresholds recommended on the
    other folds' items (else their cheapest point at 95% of the strongest tier's quality, else the strongest tier
    alone), replayed on this fold's; summed over folds. The in-sample recommendation picks its
    thresholds on the items it is scored on, so it flatters; this is what a calibrated setting does on new items."""
    items, tiers = list(items), list(tiers)
    cleared = set(cleared_for_private)
    n = len(items)
    k, fold_of = _folds(n, folds, seed)
    rows: list[dict[str, Any]] = []
    chosen: list[dict[str, Any]] = []
    for fold in range(k):
        train = [items[i] for i in range(n) if fold_of[i] != fold]
        test = [items[i] for i in range(n) if fold_of[i] == fold]
        try:
            report = analyze(train, tiers, cleared_for_private=cleared, grid=grid)
            rec = report["recommendation"] if report["recommendation"]["found"] else report["cheapest_at_95"]
        except EvalError:  # a fold too small to analyze (e.g. one tier's quality undefined)
            rec = {"found": False}
        if not rec.get("found") or not rec.get("order"):  # nothing met the bar on the training folds: the strongest
            rec = {"found": False, "order": [tiers[-1]], "min_mean_logprob": None, "min_token_logprob": None}
        chosen.append({key: rec.get(key) for key in ("found", "order", "min_mean_logprob", "min_token_logprob")})
        rows += replay_cascade(test, tiers, cleared_for_private=cleared, min_mean_logprob=rec["min_mean_logprob"],
                               min_token_logprob=rec["min_token_logprob"], order=rec["order"])
    total = len(rows) or 1
    return {"folds": k, "items": len(rows), "quality": sum(r["passed"] for r in rows) / total,
            "cost": sum(r["cost"] for r in rows) / total,
            "strong_share": sum(tiers[-1] in r["tried"] for r in rows) / total, "per_fold": chosen}


def replay_cascade(items: Sequence[RoutingItem], tiers: Sequence[str] | None = None, *,
                   cleared_for_private: Iterable[str], min_mean_logprob: float | None = None,
                   min_token_logprob: float | None = None, order: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Per item, what the cascade at the given thresholds does (None = that threshold off, i.e. the static order):
    the tiers it tries, the tier whose answer it accepts, whether that passed and what it cost. ``order`` (default:
    every tier) is the cascade order, tiers of ``tiers`` ending at the strongest. For explaining a point of
    :func:`analyze`."""
    items = list(items)
    tiers = list(tiers) if tiers is not None else _default_tiers(items)
    table = _Table(items, tiers, set(cleared_for_private))
    mask = None
    if order is not None:
        unknown = [t for t in order if t not in tiers]
        index = sorted({tiers.index(t) for t in order if t in tiers})
        if unknown or not index or index[-1] != len(tiers) - 1:
            raise EvalError(f"cascade order {list(order)} must be tiers of {tiers} ending at the strongest")
        mask = table.order_mask(index)
    chosen, tried = table.cascade(table.accept(min_mean_logprob, min_token_logprob), mask=mask)
    return [{"suite": item.suite, "item": item.item, "tried": [t for i, t in enumerate(tiers) if tried[i, j]],
             "answered_by": tiers[chosen[j]], "passed": bool(table.passed[chosen[j], j]),
             "cost": float(table.cost[:, j][tried[:, j]].sum())} for j, item in enumerate(items)]


def _pgr_envelope(points: list[dict[str, Any]], ctx: dict[str, Any]) -> list[list[float]] | None:
    curve = []
    for p in points:
        value = _pgr(p["quality"], ctx["q_weak"], ctx["q_strong"])
        if value is None:
            return None
        curve.append((p["strong_share"], min(1.0, max(0.0, value))))
    return [list(v) for v in upper_envelope(curve)]


def _recommend(cascade: list[dict[str, Any]], strong: dict[str, Any]) -> dict[str, Any]:
    """The cascade point with >= 95% of the strongest tier's quality on <= 40% of its strongest-tier calls: the best
    quality, then the lowest cost. Its thresholds are the ones to set in routing.checks."""
    criterion = (f"quality >= {RECOMMEND_QUALITY:.0%} of the strongest tier's and strongest-tier calls <= "
                 f"{RECOMMEND_STRONG:.0%} of its; best quality, then lowest cost")
    q_ref, s_ref = strong["quality"], strong["strong_share"]
    fits = [p for p in cascade if p["quality"] >= RECOMMEND_QUALITY * q_ref - EPS
            and p["strong_share"] <= RECOMMEND_STRONG * s_ref + EPS]
    if not fits:
        return {"found": False, "criterion": criterion}
    best = min(fits, key=lambda p: (-p["quality"], p["cost"]))
    order = best["params"].get("order")
    return {"found": True, "criterion": criterion, "label": best["label"], "order": order,
            "strategy": None if order is None else "cascade:" + "+".join(order),
            "min_mean_logprob": best["params"]["min_mean_logprob"],
            "min_token_logprob": best["params"]["min_token_logprob"],
            "quality": best["quality"], "cost": best["cost"], "strong_share": best["strong_share"],
            "quality_vs_strong": best["quality"] / q_ref if q_ref else None,
            "strong_calls_vs_strong": best["strong_share"] / s_ref if s_ref else None}


def _cheapest(points: list[dict[str, Any]], strong: dict[str, Any]) -> dict[str, Any]:
    """The cheapest static or cascade point (any order) with >= 95% of the strongest tier's quality, whatever its
    strongest-tier calls; ties: better quality, then fewer strongest-tier calls."""
    criterion = (f"quality >= {RECOMMEND_QUALITY:.0%} of the strongest tier's, any static or cascade point of any "
                 "order; lowest cost, then best quality")
    q_ref, s_ref = strong["quality"], strong["strong_share"]
    fits = [p for p in points if p["quality"] >= RECOMMEND_QUALITY * q_ref - EPS]
    if not fits:
        return {"found": False, "criterion": criterion}
    best = min(fits, key=lambda p: (p["cost"], -p["quality"], p["strong_share"]))
    order = best["params"].get("order")
    kind = "cascade" if "min_mean_logprob" in best["params"] else "static"
    return {"found": True, "criterion": criterion, "label": best["label"], "order": order,
            "strategy": None if order is None else f"{kind}:" + "+".join(order),
            "min_mean_logprob": best["params"].get("min_mean_logprob"),
            "min_token_logprob": best["params"].get("min_token_logprob"),
            "quality": best["quality"], "cost": best["cost"], "strong_share": best["strong_share"],
            "quality_vs_strong": best["quality"] / q_ref if q_ref else None,
            "strong_calls_vs_strong": best["strong_share"] / s_ref if s_ref else None}


DEFINITIONS = [
    "quality = share of items whose accepted answer passed the suite's checks; cost = mean cost per item, every "
    "tier a strategy tried paid in full; strong share = share of items whose answer or any attempt ran on the "
    "strongest tier.",
    "single tier: every item on that tier. random: for each pair of tiers, the stronger one with probability p (0, "
    "0.05, ..., 1), expected values (RouterBench's random router); its envelope is the best random mix at each cost "
    "and gives its AIQ, while its APGR, CPT and savings use the cheapest↔strongest mixes only (RouteLLM's random "
    "router). static: the tiers of a cascade order in turn, cheapest first, the first answer whose run-time checks "
    "(schema, grounding, tool errors, status) pass is accepted, else the strongest tier's answer; an order is any "
    "two or more tiers ending at the strongest (routing.cascade), static:<order> is one order and static the union "
    "of all orders' points. cascade: the same, also requiring mean and minimum token log-probability at or above "
    "thresholds (per order, quantiles of the values observed on its tiers before the last; a tier that reports none "
    "is judged on its checks). learned: a fitted router predicts each tier's pass probability (cross-fitted, no "
    "item scored by a model trained on it) and picks the cheapest tier with p >= min quality; learned+cascade "
    "escalates from there like the static order. oracle: the cheapest tier that passes, else the cheapest.",
    "Private items only run on tiers cleared for private data that have an outcome; where a strategy would use "
    "another tier (an order's tier included), the next stronger allowed tier (else the strongest allowed) stands "
    "in. privacy violations count attempts of private items on a tier not cleared (must be 0).",
    "Envelope: the non-decreasing upper concave hull of a strategy's (cost, quality) points; mixing two operating "
    "points at random reaches the segment between them. Quality counts as 0 below a strategy's cheapest point and "
    "stays flat above its dearest.",
    "AIQ (RouterBench, Hu et al. 2024): the area under the envelope over the cost range shared by all strategies, "
    "divided by its width.",
    "PGR = (quality − weak) / (strong − weak), weak = cheapest tier alone, strong = strongest tier alone, clipped "
    "to [0, 1]. APGR (RouteLLM, Ong et al. 2024): the area under the envelope of PGR against strong share on [0, 1] "
    "(random mixing of weak and strong: 0.5). CPT(x%): the smallest strong share of a point with PGR >= x.",
    "saved at ≤1 pt: the largest share of strongest-tier calls saved by a point whose quality is within 0.01 of the "
    "strongest tier's. above random: whether the envelope is strictly above the best random mix at every cost "
    "inside the strategy's own cost range, its two end costs excluded (a strategy whose cheapest point is a single "
    "tier's point still counts; a one-point strategy is judged at its point); worst margin: the smallest difference "
    "in quality over the whole range, ends included.",
]


# -- loaders for published routing data ------------------------------------------------------------------------


def _score(value: Any, path: Path, line: int, column: str) -> float:
    """A quality or correctness cell as a number: booleans, 0/1, floats, 'True'/'False' strings."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in {"true", "false"}:
            return float(text == "true")
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if math.isfinite(number):
            return number
    if hasattr(value, "item"):  # numpy scalars from a pickled DataFrame
        return _score(value.item(), path, line, column)
    raise RoutingDataError(f"column {column!r}: expected a number or true/false, got {str(value)[:40]!r}", path, line)


def _rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """(columns, [(line or row number, row)]) of a CSV, JSON lines or pandas pickle file."""
    path = Path(path)
    if not path.is_file():
        raise RoutingDataError("file not found", path)
    suffix = path.suffix.lower()
    if suffix in {".pkl", ".pickle"}:
        try:
            import pandas as pd  # RouterBench ships a pickled DataFrame; only unpickle files you trust
        except ImportError:
            raise RoutingDataError("reading a .pkl needs pandas (pip install pandas), or convert it to CSV", path) \
                from None
        frame = pd.read_pickle(path)
        columns = [str(c) for c in frame.columns]
        return columns, [(i + 1, {str(k): v for k, v in row.items()})
                         for i, row in enumerate(frame.to_dict("records"))]
    if suffix == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            columns = list(reader.fieldnames or [])
            return columns, [(reader.line_num, dict(row)) for row in reader]
    if suffix in {".jsonl", ".json"}:
        rows, columns = [], {}
        for line_no, row in _json_lines(path):
            if not isinstance(row, dict):
                raise RoutingDataError("expected a JSON object per line", path, line_no)
            columns.update(dict.fromkeys(row))
            rows.append((line_no, row))
        return list(columns), rows
    raise RoutingDataError(f"unknown file type {suffix or '(none)'}; expected .csv, .jsonl or .pkl", path)


def _require(columns: Sequence[str], needed: Iterable[str], path: Path, hint: str) -> None:
    missing = [c for c in needed if c not in columns]
    if missing:
        raise RoutingDataError(f"missing column(s) {', '.join(missing)}; {hint}", path, 1)


def _outcome(passed: bool, cost: float) -> TierOutcome:
    return TierOutcome(passed=passed, cost=cost, tokens=0, wall_s=0.0, calls=1, checks_ok=True, failed_check=None,
                       logprob_mean=None, logprob_min=None)


def load_routerbench(path: Path, *, models: Sequence[str] | None = None,
                     suite: str = "routerbench") -> list[RoutingItem]:
    """RouterBench's wide table (withmartian/routerbench, the .pkl or a CSV of it) as routing items.

    One row per prompt: ``sample_id``, ``eval_name``, ``prompt`` and for each model ``m`` the columns ``m``
    (quality 0..1) and ``m|total_cost``. Models are ``models`` or every ``m`` with both columns. passed = quality
    >= 0.5; run-time checks count as passed and no log-probabilities are known, so cascades reduce to the static
    order. Unpickling runs code: read only .pkl files you trust (or a CSV export).
    """
    path = Path(path)
    columns, rows = _rows(path)
    hint = "RouterBench rows need sample_id, eval_name, prompt and, per model m, m and m|total_cost"
    _require(columns, ["sample_id", "eval_name", "prompt"], path, hint)
    names = list(models) if models is not None else [c for c in columns if f"{c}|total_cost" in columns]
    if not names:
        raise RoutingDataError(f"no model columns (m beside m|total_cost) found; {hint}", path, 1)
    _require(columns, [c for m in names for c in (m, f"{m}|total_cost")], path, hint)
    items = []
    for line, row in rows:
        outcomes = {}
        for m in names:
            quality = _score(row[m], path, line, m)
            cost = _score(row[f"{m}|total_cost"], path, line, f"{m}|total_cost")
            outcomes[m] = _outcome(quality >= 0.5, cost)
        eval_name = str(row["eval_name"])
        items.append(RoutingItem(suite=suite, item=str(row["sample_id"]), input=str(row["prompt"]),
                                 group=eval_name, private=False, features={"eval_name": eval_name},
                                 outcomes=outcomes))
    return items


def load_routellm(path: Path, prices: Mapping[str, float], *, suite: str = "routellm",
                  group: str | None = None) -> list[RoutingItem]:
    """RouteLLM's benchmark responses (lm-sys/RouteLLM evals, e.g. mmlu/responses/*.csv, gsm8k_responses.csv)
    as routing items.

    CSV or JSON lines with ``prompt`` and one correctness column per model named as in ``prices`` (e.g.
    ``gpt-4-1106-preview``, ``mixtral-8x7b-instruct-v0.1``: True/False); ``prices`` gives each model's cost per
    call. An ``id``/``question_id`` column names items (else the line); ``group`` (e.g. the MMLU domain) or a
    ``category`` column groups them. MT-Bench's long judgement format (1–10 scores) is not this format.
    """
    path = Path(path)
    if not prices:
        raise RoutingDataError("prices is empty: give each model column's cost per call", path)
    columns, rows = _rows(path)
    _require(columns, ["prompt", *prices], path,
             "RouteLLM rows need prompt and one correctness column per model named in prices")
    items = []
    for line, row in rows:
        outcomes = {m: _outcome(_score(row[m], path, line, m) >= 0.5, float(price)) for m, price in prices.items()}
        name = row.get("id", row.get("question_id"))
        row_group = group if group is not None else row.get("category")
        items.append(RoutingItem(suite=suite, item=str(name if name not in (None, "") else line),
                                 input=str(row["prompt"]), group=None if row_group in (None, "") else str(row_group),
                                 private=False, features={}, outcomes=outcomes))
    return items


# -- reports ---------------------------------------------------------------------------------------------------


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if value != 0 and abs(value) < 0.01:
        return f"{value:.3g}"
    return f"{value:.{digits}f}"


def _threshold(value: float | None) -> str:
    return "off" if value is None else f"{value:g}"


def _order_text(order: Sequence[str] | None) -> str:
    return "–" if not order else json.dumps(list(order))


def _param(value: Any) -> str:
    if isinstance(value, list):
        return "+".join(str(v) for v in value)
    return _threshold(value) if value is None or isinstance(value, float) else str(value)


def _plotted(strategies: dict[str, Any]) -> list[str]:
    """Strategies drawn in the plots: all but single tiers and random mixes; static and cascade per order (at most
    :data:`MAX_PLOT_ORDERS` orders, best cascade AIQ first) instead of their unions when the report has them."""
    per_order = [n for n, s in strategies.items() if s["kind"] == "cascade" and "order" in s]
    ranked = sorted(per_order, key=lambda n: -(strategies[n]["metrics"]["aiq"] or 0.0))[:MAX_PLOT_ORDERS]
    keep = set(ranked) | {"static:" + n.split(":", 1)[1] for n in ranked}
    names = []
    for name, s in strategies.items():
        if s["kind"] in {"single", "random"}:
            continue
        if s["kind"] in {"static", "cascade"} and per_order and (name not in keep if "order" in s else True):
            continue
        names.append(name)
    return names


def _sections(report: dict[str, Any]) -> list[Section]:
    """The routing report's content once, for Markdown and HTML."""
    strategies = report["strategies"]
    out = []
    head = ["strategy", "points", "best quality", "at cost", "min cost", "AIQ", "APGR", "CPT(50%)", "CPT(80%)",
            "strong calls saved (≤1 pt)", "above random (worst margin)", "privacy violations"]
    table = Table(head, numeric=set(range(1, len(head))))
    for name, s in strategies.items():
        m = s["metrics"]
        above = m["above_random"]
        above_text = "–" if above is None else f"{_f(above['everywhere'])} ({above['worst_margin']:+.3f})"
        table.rows.append([name, str(m["points"]), _f(m["best_quality"]), _f(m["best_quality_cost"]),
                           _f(m["min_cost"]), _f(m["aiq"]), _f(m["apgr"]), _f(m["cpt50"]), _f(m["cpt80"]),
                           _f(m["strong_calls_saved_1pt"]), above_text, str(m["privacy_violations"])])
    c_min, c_max = report["cost_range"]
    out.append(Section("Strategies", [
        f"AIQ over the shared cost range {_f(c_min)} to {_f(c_max)}; PGR between {report['weak']} "
        f"(quality {_f(report['q_weak'])}) and {report['strong']} (quality {_f(report['q_strong'])}).",
        *report["definitions"]], table))

    head = ["tier", "quality", "passed", "cost", "strong share", "model calls", "tokens", "wall s",
            "private items substituted"]
    table = Table(head, numeric=set(range(1, len(head))))
    for tier in report["tiers"]:
        p = strategies[f"tier:{tier}"]["points"][0]
        table.rows.append([tier, _f(p["quality"]), str(p["passed"]), _f(p["cost"]), _f(p["strong_share"]),
                           str(sum(p["calls"].values())), _f(p["tokens"], 1), _f(p["wall_s"], 2),
                           str(p.get("substituted", 0))])
    out.append(Section("Single tiers", ["Means per item; model calls are totals."], table))

    rec = report["recommendation"]
    if rec["found"]:
        order = f"routing.cascade = {_order_text(rec.get('order'))}, " if rec.get("order") else ""
        notes = [f"Set {order}routing.checks.min_mean_logprob = {_threshold(rec['min_mean_logprob'])} and "
                 f"routing.checks.min_token_logprob = {_threshold(rec['min_token_logprob'])}: quality "
                 f"{_f(rec['quality'])} ({_f(rec['quality_vs_strong'])} of the strongest tier's), cost "
                 f"{_f(rec['cost'])}, strong share {_f(rec['strong_share'])}.", f"Criterion: {rec['criterion']}."]
    else:
        notes = [f"No cascade point meets the criterion ({rec['criterion']}); keep the current thresholds."]
    cheap = report.get("cheapest_at_95")
    if cheap and cheap["found"]:
        notes.append(f"Cheapest at {RECOMMEND_QUALITY:.0%} of the strongest tier's quality, whatever its strong "
                     f"share: {cheap['strategy'] or cheap['label']} (routing.cascade = "
                     f"{_order_text(cheap.get('order'))}, min_mean_logprob = {_threshold(cheap['min_mean_logprob'])}, "
                     f"min_token_logprob = {_threshold(cheap['min_token_logprob'])}): quality {_f(cheap['quality'])}, "
                     f"cost {_f(cheap['cost'])}, strong share {_f(cheap['strong_share'])}.")
    elif cheap:
        notes.append(f"No static or cascade point reaches {RECOMMEND_QUALITY:.0%} of the strongest tier's quality.")
    held = report.get("recommendation_held_out")
    if held:
        strong = strategies[f"tier:{report['strong']}"]["points"][0]
        ratio = held["quality"] / strong["quality"] if strong["quality"] else float("nan")
        notes.append(f"Out of sample ({held['folds']} folds: each fold's order and thresholds recommended on the other "
                     f"folds, replayed on its items): quality {_f(held['quality'])} ({_f(ratio)} of the strongest "
                     f"tier's), cost {_f(held['cost'])}, strong share {_f(held['strong_share'])}; the in-sample "
                     "figures above pick thresholds on the items they are scored on.")
    out.append(Section("Recommended cascade thresholds", notes))

    for name in ("cascade", "learned", "learned+cascade"):
        if name not in strategies:
            continue
        points = strategies[name]["points"]
        front = set(pareto_frontier((p["cost"], p["quality"]) for p in points))
        chosen, seen = [], set()
        for p in sorted(points, key=lambda p: (p["cost"], -p["quality"])):
            key = (p["cost"], p["quality"])
            if key in front and key not in seen:
                seen.add(key)
                chosen.append(p)
        head = ["params", "quality", "cost", "strong share", *(f"answered by {t}" for t in report["tiers"])]
        table = Table(head, numeric=set(range(1, len(head))))
        for p in chosen:
            params = ", ".join(f"{k} {_param(v)}" for k, v in p["params"].items()) or "–"
            table.rows.append([params, _f(p["quality"]), _f(p["cost"]), _f(p["strong_share"]),
                               *(str(p["answered_by"][t]) for t in report["tiers"])])
        out.append(Section(f"{name}: Pareto points", [f"{len(chosen)} of {len(points)} points are on the Pareto "
                                                      "frontier (no cheaper point is as good)."], table))

    flags = [f"{report['private_violation_rows']} outcome row(s) flagged private_violation and "
             f"{report['budget_overrun_rows']} flagged budget_overrun by the producer (both must be 0).",
             f"{report['private_items']} private item(s); tiers cleared for private data: "
             f"{', '.join(report['cleared_for_private']) or 'none'}."]
    bad = {k: v for k, v in report["privacy_violations"].items() if v}
    bullets = [f"{k}: {v} attempt(s) of a private item on a tier not cleared" for k, v in bad.items()]
    out.append(Section("Privacy and budgets", flags, bullets=bullets))
    return out


def _intro(report: dict[str, Any]) -> str:
    return (f"{report['items']} items from {', '.join(report['suites'])}; tiers (cheapest first): "
            f"{', '.join(report['tiers'])}. Figures are replayed from stored per-tier outcomes; no model was run.")


def routing_markdown(report: dict[str, Any]) -> str:
    """The routing report as plain-text Markdown tables."""
    return sections_markdown("Routing benchmark", _intro(report), _sections(report))


def _colors(strategies: dict[str, Any], names: Sequence[str]) -> dict[str, str]:
    """A colour per strategy; static and cascade of the same order share one."""
    groups: dict[str, str] = {}
    out = {}
    for name in names:
        group = name.split(":", 1)[1] if "order" in strategies[name] else name
        out[name] = groups.setdefault(group, f"C{len(groups) % 10}")
    return out


def routing_plots(report: dict[str, Any]) -> dict[str, str]:
    """Base64 PNGs: quality vs cost (envelope per strategy, single tiers as points, random mix dashed) and PGR vs
    strong share."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    strategies = report["strategies"]
    c_max = report["cost_range"][1]
    images: dict[str, str] = {}
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    env = report["random_envelope"]
    ax.plot([x for x, _ in env], [y for _, y in env], "--", color="grey", label="best random mix")
    plotted = _plotted(strategies)
    colors = _colors(strategies, plotted)
    for name, color in colors.items():
        pts = strategies[name]["points"]
        if len(pts) == 1:
            marker = "*" if strategies[name]["kind"] == "oracle" else "D"
            ax.scatter([pts[0]["cost"]], [pts[0]["quality"]], marker=marker, s=90, zorder=4, label=name, color=color)
            continue
        env = strategies[name]["envelope"]
        ax.plot([x for x, _ in env], [y for _, y in env], marker=".", label=name, color=color)
        ax.scatter([p["cost"] for p in pts], [p["quality"] for p in pts], s=6, alpha=0.25, color=color)
    for tier in report["tiers"]:
        p = strategies[f"tier:{tier}"]["points"][0]
        ax.scatter([p["cost"]], [p["quality"]], s=60, color="black", zorder=5)
        ax.annotate(tier, (p["cost"], p["quality"]), xytext=(4, -10), textcoords="offset points", fontsize=8)
    ax.set_xlim(left=min(0.0, report["cost_range"][0]), right=c_max * 1.05 if c_max > 0 else 1.0)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("mean cost per item")
    ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 3))  # tiny per-item costs: 4e-05, not 0.000040
    ax.set_ylabel("quality (share passed)")
    ax.set_title("quality vs cost (envelopes; dots: every point)")
    ax.legend(fontsize=7, loc="lower right")
    images["quality vs cost"] = _png(fig)
    plt.close(fig)

    if any(s["pgr_envelope"] for s in strategies.values()):
        fig, ax = plt.subplots(figsize=(5.2, 4.2))
        ax.plot([0, 1], [0, 1], "--", color="grey", label="random (weak↔strong)")
        pgr_colors = _colors(strategies, [n for n, s in strategies.items() if s["kind"] == "single"] + plotted)
        for name, color in pgr_colors.items():
            s = strategies[name]
            env = s["pgr_envelope"]
            if not env:
                continue
            if len(env) == 1:
                marker = "*" if s["kind"] == "oracle" else "D" if s["kind"] == "static" else "o"
                ax.scatter([env[0][0]], [env[0][1]], s=50, label=name, zorder=4, color=color, marker=marker)
            else:
                ax.plot([x for x, _ in env] + [1.0], [y for _, y in env] + [env[-1][1]], marker=".", label=name,
                        color=color)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel(f"strong share (items calling {report['strong']})")
        ax.set_ylabel("PGR (clipped to 0..1)")
        ax.set_title("performance gap recovered")
        ax.legend(fontsize=7, loc="lower right")
        images["PGR vs strong share"] = _png(fig)
        plt.close(fig)
    return images


def routing_html(report: dict[str, Any]) -> str:
    """A self-contained page: HTML tables and the plots inline as base64 PNGs."""
    return sections_html("Routing benchmark", "Routing benchmark", _intro(report), _sections(report),
                         routing_plots(report))


def write_routing_report(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write routing.json, routing.md and routing.html into ``out_dir``; returns their paths by kind."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "routing.json", "markdown": out_dir / "routing.md", "html": out_dir / "routing.html"}
    paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["markdown"].write_text(routing_markdown(report), encoding="utf-8")
    paths["html"].write_text(routing_html(report), encoding="utf-8")
    return paths

