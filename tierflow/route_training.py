"""Learned-router training data: benchmark items, features, splits and the metrics ``tierflow route`` reports.

Input ("eval outputs") is the ``items.jsonl`` of a routing-benchmark output folder (or that file): one
:class:`tierflow.evals.routing.RoutingItem` per line as ``write_items`` writes it (``suite``, ``item``, ``input``,
``group``, ``private``, ``features`` with ``intent`` and ``tools``, and every tier's ``outcomes``). The rows are
read by :func:`tierflow.evals.routing.read_items`: unknown keys are ignored; a missing or mistyped field is an
error naming ``file:line``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tierflow.evals.routing import Fit, Predictor, RoutingDataError, RoutingItem, read_items, replay_cascade
from tierflow.runtimes.learned_router import LearnedRouter, LearnedRouterError, binary_metrics

if TYPE_CHECKING:
    from tierflow.agents.route_features import RouteFeatures

ITEMS_FILE = "items.jsonl"
QUALITY_LEVELS = (0.5, 0.7, 0.8, 0.9)


def passed(item: RoutingItem, tier: str) -> float:
    """1.0 / 0.0 when ``tier`` ran ``item``, NaN when it did not."""
    outcome = item.outcomes.get(tier)
    return math.nan if outcome is None else float(outcome.passed)


def usable(item: RoutingItem, tier: str) -> bool:
    """Whether ``tier`` ran ``item`` and may see its data (no privacy violation recorded)."""
    outcome = item.outcomes.get(tier)
    return outcome is not None and not outcome.private_violation


def items_path(source: Path) -> Path:
    """``source`` itself, or the ``items.jsonl`` inside a benchmark output folder."""
    path = source / ITEMS_FILE if source.is_dir() else source
    if not path.is_file():
        raise LearnedRouterError(f"{path} does not exist (give a routing-benchmark output folder or its {ITEMS_FILE})")
    return path


def load_items(source: Path) -> tuple[list[RoutingItem], str]:
    """The items of ``source`` (a folder or its ``items.jsonl``) and the SHA-256 of the file they came from.

    A bad row raises :class:`LearnedRouterError` with ``read_items``' message (``file:line: reason``).
    """
    path = items_path(source)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        items = read_items(path)
    except RoutingDataError as exc:
        raise LearnedRouterError(str(exc)) from None
    if not items:
        raise LearnedRouterError(f"{path} has no items")
    return items, digest


def tier_order(items: Sequence[RoutingItem], tiers: Sequence[str] | None = None) -> list[str]:
    """``tiers`` as given (checked), else every tier in the items, cheapest mean cost first (then fastest)."""
    seen = sorted({t for item in items for t in item.outcomes})
    if tiers:
        unknown = [t for t in tiers if t not in seen]
        if unknown:
            raise LearnedRouterError(f"--tiers names {unknown}, which no item has outcomes for; known: {seen}")
        return list(tiers)

    def mean(tier: str, key: str) -> float:
        values = [float(getattr(i.outcomes[tier], key)) for i in items if tier in i.outcomes]
        return sum(values) / len(values)

    return sorted(seen, key=lambda t: (mean(t, "cost"), mean(t, "wall_s"), t))


def mean_costs(items: Sequence[RoutingItem], tiers: Sequence[str]) -> dict[str, float]:
    """Each tier's mean cost per item over the items it ran."""
    out = {}
    for tier in tiers:
        values = [i.outcomes[tier].cost for i in items if tier in i.outcomes]
        out[tier] = round(sum(values) / len(values), 8) if values else 0.0
    return out


def split(items: Sequence[RoutingItem], holdout: float, seed: int,
          by: str = "item") -> tuple[list[int], list[int]]:
    """Deterministic train/holdout indices, by item or by ``group`` (items of one group stay on one side: use it when
    a group holds variants of one question; a benchmark's groups are categories, so items is the default)."""
    if not 0.0 <= holdout < 1.0:
        raise LearnedRouterError(f"--holdout must be in [0, 1), got {holdout}")
    if by not in ("item", "group"):
        raise LearnedRouterError(f"--split must be item or group, got {by!r}")
    keys = list(dict.fromkeys((item.group if by == "group" else None) or f"#{i}" for i, item in enumerate(items)))
    order = np.random.default_rng(seed).permutation(len(keys))
    n_hold = min(len(keys) - 1, math.ceil(holdout * len(keys))) if holdout > 0 else 0
    held = {keys[i] for i in order[:n_hold]}

    def key(i: int, item: RoutingItem) -> str:
        return (item.group if by == "group" else None) or f"#{i}"

    train = [i for i, item in enumerate(items) if key(i, item) not in held]
    test = [i for i, item in enumerate(items) if key(i, item) in held]
    return train, test


def features_of(items: Sequence[RoutingItem], features: RouteFeatures) -> tuple[np.ndarray, list[str]]:
    """Feature matrix of ``items`` and the intent each was given: ``features.intent`` when the classifier knows it,
    else the classifier's own label (what the run-time classify node will see)."""
    classifier: Any = features.classifier
    intents: list[str | None] = [i.features.get("intent") if i.features.get("intent") in features.labels else None
                                 for i in items]
    missing = [n for n, intent in enumerate(intents) if intent is None]
    if missing:
        results = classifier.classify_batch([items[n].input for n in missing])
        for n, result in zip(missing, results, strict=True):
            intents[n] = result.label
    tools = [float(i.features.get("tools") or 0) for i in items]
    X = features.matrix([i.input for i in items], intents, tools)
    return X, [str(i) for i in intents]


def labels_of(items: Sequence[RoutingItem], tiers: Sequence[str]) -> dict[str, np.ndarray]:
    """Per tier, 1/0 whether each item passed there (NaN: the tier did not run it)."""
    return {t: np.array([passed(i, t) for i in items]) for t in tiers}


def escalate_from(items: Sequence[RoutingItem], starts: Sequence[str], tiers: Sequence[str]) -> list[dict[str, Any]]:
    """Per item, :func:`tierflow.evals.routing.replay_cascade`'s decision (``tried``, ``answered_by``, ``passed``,
    ``cost``) with the cascade started at ``starts[n]`` (one of ``tiers``, :func:`usable` for item n) instead of the
    cheapest tier; it escalates while ``checks_ok`` is false and the last usable tier's answer always stands.

    ``replay_cascade`` always starts at the cheapest allowed tier, so each start tier's items are replayed over the
    tiers from that one up. It only tries tiers an item may use; here those are the :func:`usable` ones, given to
    it as the only outcomes of an item marked private with every tier cleared ("a private item may only run on
    cleared tiers that have an outcome row"), which also lets an item lack a tier's outcome.
    """
    decisions: list[dict[str, Any]] = [{} for _ in items]
    for k, start in enumerate(tiers):
        picked = [n for n, s in enumerate(starts) if s == start]
        if not picked:
            continue
        later = list(tiers[k:])
        view = [replace(items[n], private=True,
                        outcomes={t: o for t, o in items[n].outcomes.items() if t in later and usable(items[n], t)})
                for n in picked]
        for n, decision in zip(picked, replay_cascade(view, later, cleared_for_private=later), strict=True):
            decisions[n] = decision
    return decisions


def routing_quality(model: LearnedRouter, P: np.ndarray, items: Sequence[RoutingItem],
                    levels: Sequence[float] = QUALITY_LEVELS) -> dict[str, Any]:
    """What routing ``items`` by ``P`` (pass predictions, rows x model tiers) would give: pass rate and mean cost at
    each min_quality, alone and with the cascade behind it, beside each fixed tier and the oracle.

    Not :func:`tierflow.evals.routing.analyze`'s learned strategy: that cross-fits its own router over a 0..1 grid
    and falls back to the strongest tier when none clears the bar, and it needs every tier's outcome on non-private
    items; this scores a router already trained, picking as the run-time router does
    (:meth:`LearnedRouter.choose_from`: cheapest usable tier predicted to pass, else the likeliest).
    """
    def cost(item: RoutingItem, tier: str) -> float:
        return item.outcomes[tier].cost

    out: dict[str, Any] = {"items": len(items), "min_quality": {}}
    rows = [(n, item, [t for t in model.tiers if usable(item, t)]) for n, item in enumerate(items)]
    rows = [(n, item, allowed) for n, item, allowed in rows if allowed]  # no usable tier: not routed
    routed = [item for _, item, _ in rows]
    for level in levels:
        picks = [model.choose_from(P[n], level, allowed)[0] for n, _, allowed in rows]
        cascaded = escalate_from(routed, picks, model.tiers)
        out["min_quality"][f"{level:.2f}"] = {
            "quality": _mean([passed(item, t) for item, t in zip(routed, picks, strict=True)]),
            "cost": _mean([cost(item, t) for item, t in zip(routed, picks, strict=True)], 6),
            "quality_with_cascade": _mean([float(d["passed"]) for d in cascaded]),
            "cost_with_cascade": _mean([d["cost"] for d in cascaded], 6),
            "tiers": {t: picks.count(t) for t in model.tiers},
        }
    out["fixed_tier"] = {t: {"quality": _mean([passed(item, t) for _, item, allowed in rows if t in allowed]),
                             "cost": _mean([cost(item, t) for _, item, allowed in rows if t in allowed], 6)}
                         for t in model.tiers}
    oracle = [(item, next((t for t in allowed if passed(item, t) == 1.0), allowed[-1])) for _, item, allowed in rows]
    out["oracle"] = {"quality": _mean([passed(item, t) for item, t in oracle]),
                     "cost": _mean([cost(item, t) for item, t in oracle], 6)}
    return out


def _mean(values: Sequence[float], digits: int = 4) -> float | None:
    values = [v for v in values if not math.isnan(v)]
    return round(sum(values) / len(values), digits) if values else None


def tier_metrics(model: LearnedRouter, P: np.ndarray, items: Sequence[RoutingItem]) -> dict[str, dict[str, Any]]:
    """AUC, Brier and accuracy of each tier's pass predictions against what the tier did."""
    return {t: binary_metrics([passed(i, t) for i in items], P[:, k]) for k, t in enumerate(model.tiers)}


def learned_fit(items: Sequence[RoutingItem], classifier: Any, tiers: Sequence[str], l2: float = 10.0) -> Fit:
    """A ``fit`` for :func:`tierflow.evals.routing.analyze`: the learned router on ``items``' features.

    Features of every item are computed once here (the encoder is the slow part); each fold fits a fresh
    :class:`LearnedRouter` on its training rows and predicts the others by item key.
    """
    from tierflow.agents.route_features import RouteFeatures

    features = RouteFeatures(classifier)
    X, _ = features_of(items, features)
    index = {(i.suite, i.item): n for n, i in enumerate(items)}

    def fit(train: list[RoutingItem]) -> Predictor:
        picked = [index[(i.suite, i.item)] for i in train]
        model = LearnedRouter(l2=l2).fit(X[picked], labels_of(train, tiers), tiers, mean_costs(train, tiers),
                                         features.names)

        def predict(item: RoutingItem) -> dict[str, float]:
            return model.predict(X[index[(item.suite, item.item)]])
        return predict
    return fit
