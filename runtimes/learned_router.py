"""The learned router: per tier, a logistic regression that predicts whether that tier's answer will pass.

Trained by ``tierflow route train`` on routing-benchmark outputs (one row per item, every tier's outcome) from
a request's feature vector (see ``tierflow.agents.route_features``). At run time :meth:`LearnedRouter.choose`
picks the cheapest allowed tier predicted to pass ``min_quality``; the cascade still catches its mistakes.

Folder layout (``FORMAT_VERSION`` 1): ``metadata.json`` (tiers cheapest first, their mean cost, feature names,
encoder, training data digest and counts, per-tier train pass rate) and ``weights.npz`` (standardisation and
per-tier weights). numpy only: prediction is one matrix-vector product, microseconds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tierflow.runtimes.errors import RuntimeLayerError

FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "weights.npz"
_WEIGHT_KEYS = ("mean", "scale", "coef", "intercept")


class LearnedRouterError(RuntimeLayerError, ValueError):
    """A learned router folder or its training input is unusable; the message names the folder and the problem."""


class LearnedRouter:
    """Per-tier L2-regularised logistic regressions over standardised features, tiers kept cheapest first."""

    def __init__(self, l2: float = 10.0, max_iter: int = 100, tol: float = 1e-8) -> None:
        """``l2``: ridge strength on the standardised weights (the intercept is not penalised); Newton steps."""
        if l2 <= 0:
            raise LearnedRouterError(f"l2 must be > 0, got {l2}")
        self.l2, self.max_iter, self.tol = float(l2), int(max_iter), float(tol)
        self.tiers: list[str] = []
        self.costs: dict[str, float] = {}
        self.feature_names: list[str] = []
        self.metadata: dict[str, Any] = {}
        self.mean = np.zeros(0)
        self.scale = np.ones(0)
        self.coef = np.zeros((0, 0))  # (tiers, features), on standardised features
        self.intercept = np.zeros(0)
        self._w = np.zeros((0, 0))  # coef folded with the standardisation: predict is one product
        self._b = np.zeros(0)

    # -- training ----------------------------------------------------------------------------------

    def fit(self, X: np.ndarray, Y: Mapping[str, Sequence[float] | np.ndarray], tiers: Sequence[str],
            costs: Mapping[str, float], feature_names: Sequence[str],
            meta: Mapping[str, Any] | None = None) -> LearnedRouter:
        """Fit one model per tier on ``X`` (items x features) and ``Y[tier]`` (1 pass, 0 fail, NaN: not run).

        ``tiers`` is the order cheapest to strongest; ``meta`` is kept in the saved metadata (encoder, data digest).
        """
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] == 0:
            raise LearnedRouterError(f"training features must be a non-empty 2-D array, got shape {X.shape}")
        if X.shape[1] != len(feature_names):
            raise LearnedRouterError(f"{X.shape[1]} feature columns but {len(feature_names)} feature names")
        if not tiers or len(set(tiers)) != len(tiers):
            raise LearnedRouterError(f"tiers must be distinct and non-empty, got {list(tiers)}")
        missing = [t for t in tiers if t not in Y]
        if missing:
            raise LearnedRouterError(f"no labels for tiers {missing}")
        if not np.all(np.isfinite(X)):
            raise LearnedRouterError("training features contain NaN or infinite values")
        self.mean = X.mean(axis=0)
        scale = X.std(axis=0)
        self.scale = np.where(scale > 1e-8, scale, 1.0)
        Z = (X - self.mean) / self.scale
        coef = np.zeros((len(tiers), X.shape[1]))
        intercept = np.zeros(len(tiers))
        counts: dict[str, dict[str, Any]] = {}
        for i, tier in enumerate(tiers):
            y = np.asarray(Y[tier], dtype=np.float64)
            if y.shape != (X.shape[0],):
                raise LearnedRouterError(f"tier {tier!r}: {y.shape[0] if y.ndim else 0} labels for {X.shape[0]} rows")
            known = ~np.isnan(y)
            if not known.any():
                raise LearnedRouterError(f"tier {tier!r} has no outcomes in the training data")
            yk = y[known]
            if not np.all((yk == 0) | (yk == 1)):
                raise LearnedRouterError(f"tier {tier!r}: labels must be 0 or 1")
            coef[i], intercept[i] = self._fit_one(Z[known], yk)
            counts[tier] = {"items": int(known.sum()), "passed": int(yk.sum()),
                            "pass_rate": round(float(yk.mean()), 4)}
        self.tiers = list(tiers)
        self.costs = {t: float(costs.get(t, 0.0)) for t in self.tiers}
        self.feature_names = list(feature_names)
        self.coef, self.intercept = coef, intercept
        self.metadata = {**dict(meta or {}), "tiers_trained": counts, "rows": int(X.shape[0]),
                         "l2": self.l2}
        self._fold()
        return self

    def _fit_one(self, Z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
        """Newton (IRLS) on the L2-penalised log-likelihood; a tier that always (never) passes gets a smoothed
        constant rate instead of an infinite intercept. Deterministic: no sampling, no random start."""
        n, d = Z.shape
        rate = (y.sum() + 1.0) / (n + 2.0)  # Laplace: never exactly 0 or 1
        if y.min() == y.max():
            return np.zeros(d), math.log(rate / (1.0 - rate))
        A = np.hstack([Z, np.ones((n, 1))])
        penalty = np.full(d + 1, self.l2)
        penalty[-1] = 1e-6  # the intercept is (almost) free
        theta = np.zeros(d + 1)
        theta[-1] = math.log(rate / (1.0 - rate))
        for _ in range(self.max_iter):
            p = _sigmoid(A @ theta)
            grad = A.T @ (p - y) + penalty * theta
            weights = p * (1.0 - p)
            hessian = (A.T * weights) @ A + np.diag(penalty)
            step = np.linalg.solve(hessian, grad)
            theta -= step
            if float(np.max(np.abs(step))) < self.tol:
                break
        return theta[:-1].copy(), float(theta[-1])

    def _fold(self) -> None:
        self._w = np.ascontiguousarray(self.coef / self.scale)
        self._b = self.intercept - self._w @ self.mean

    # -- inference ---------------------------------------------------------------------------------

    def predict(self, x: np.ndarray | Sequence[float]) -> dict[str, float]:
        """Predicted pass probability of each tier for one feature vector, cheapest tier first."""
        p = self.predict_array(x)
        return {tier: float(v) for tier, v in zip(self.tiers, p, strict=True)}

    def predict_array(self, x: np.ndarray | Sequence[float]) -> np.ndarray:
        """Pass probabilities in ``self.tiers`` order for one vector (features,) or a matrix (rows, features)."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1] != len(self.feature_names) or x.ndim not in (1, 2):
            raise LearnedRouterError(f"feature vector of shape {x.shape} does not match the router's "
                                     f"{len(self.feature_names)} features")
        return _sigmoid(x @ self._w.T + self._b)

    def choose(self, x: np.ndarray | Sequence[float], min_quality: float,
               allowed: Sequence[str]) -> tuple[str, float, str]:
        """The cheapest allowed tier predicted to pass ``min_quality``, else the allowed tier most likely to pass.

        Returns (tier, predicted pass rate, reason); tiers the router was not trained on are ignored.
        """
        return self.choose_from(self.predict_array(x), min_quality, allowed)

    def choose_from(self, p: np.ndarray, min_quality: float, allowed: Sequence[str]) -> tuple[str, float, str]:
        """:meth:`choose` on probabilities already predicted (``self.tiers`` order)."""
        allowed_set = set(allowed)
        usable = [(tier, float(p[i])) for i, tier in enumerate(self.tiers) if tier in allowed_set]
        if not usable:
            raise LearnedRouterError(f"none of the allowed tiers ({', '.join(allowed) or 'none'}) is one the "
                                     f"learned router knows ({', '.join(self.tiers)})")
        for tier, prob in usable:
            if prob >= min_quality:
                return tier, prob, f"learned router: {tier} predicted {prob:.2f} >= {min_quality:.2f}"
        tier, prob = max(usable, key=lambda tp: tp[1])  # first (cheapest) of equal maxima
        return tier, prob, f"learned router: no tier predicted >= {min_quality:.2f}; {tier} is likeliest ({prob:.2f})"

    # -- persistence -------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write ``metadata.json`` and ``weights.npz`` into ``directory`` (created when missing)."""
        if not self.tiers:
            raise LearnedRouterError("the router is not trained; nothing to save")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / WEIGHTS_FILE, mean=self.mean, scale=self.scale, coef=self.coef, intercept=self.intercept)
        metadata = {
            "format_version": FORMAT_VERSION,
            "kind": "tierflow-learned-router",
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "tiers": self.tiers,
            "costs": self.costs,
            "feature_names": self.feature_names,
            "model": {"type": "logistic", "l2": self.l2, "max_iter": self.max_iter},
            "train_pass_rate": {t: c["pass_rate"] for t, c in self.metadata.get("tiers_trained", {}).items()},
            "metadata": self.metadata,
        }
        (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> LearnedRouter:
        """Read a saved router; raises :class:`LearnedRouterError` naming the folder and what is wrong."""
        directory = Path(directory)
        if not directory.is_dir():
            raise LearnedRouterError(f"learned router folder {directory} does not exist or is not a folder")
        meta_path, weights_path = directory / METADATA_FILE, directory / WEIGHTS_FILE
        for path in (meta_path, weights_path):
            if not path.is_file():
                raise LearnedRouterError(f"learned router folder {directory} has no {path.name} "
                                         "(train one with `tierflow route train`)")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            version = meta["format_version"]
            tiers, costs, names = list(meta["tiers"]), dict(meta["costs"]), list(meta["feature_names"])
            model = dict(meta.get("model") or {})
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise LearnedRouterError(f"{meta_path} is malformed: {exc}") from None
        if version != FORMAT_VERSION:
            raise LearnedRouterError(f"{meta_path}: unsupported format_version {version!r} (want {FORMAT_VERSION}); "
                                     "retrain with `tierflow route train`")
        try:
            with np.load(weights_path, allow_pickle=False) as data:
                arrays = {key: np.asarray(data[key], dtype=np.float64) for key in _WEIGHT_KEYS}
        except (OSError, ValueError, KeyError) as exc:
            raise LearnedRouterError(f"{weights_path} is unreadable: {exc}") from None
        want = {"mean": (len(names),), "scale": (len(names),), "coef": (len(tiers), len(names)),
                "intercept": (len(tiers),)}
        for key, shape in want.items():
            if arrays[key].shape != shape:
                raise LearnedRouterError(f"{weights_path}: {key} has shape {arrays[key].shape}, metadata says "
                                         f"{shape} ({len(tiers)} tiers, {len(names)} features)")
        router = cls(l2=float(model.get("l2", 10.0)), max_iter=int(model.get("max_iter", 100)))
        router.tiers, router.feature_names = tiers, names
        router.costs = {t: float(costs.get(t, 0.0)) for t in tiers}
        router.mean, router.scale = arrays["mean"], arrays["scale"]
        router.coef, router.intercept = arrays["coef"], arrays["intercept"]
        router.metadata = dict(meta.get("metadata") or {})
        router.metadata["created"] = meta.get("created")
        router._fold()
        return router


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -35.0, 35.0)))


def binary_metrics(y: Sequence[float] | np.ndarray, p: Sequence[float] | np.ndarray,
                   threshold: float = 0.5) -> dict[str, float | int | None]:
    """AUC (None when only one class is present), Brier score and accuracy at ``threshold`` of predictions ``p``."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    known = ~np.isnan(y)
    y, p = y[known], p[known]
    n = int(y.size)
    if n == 0:
        return {"n": 0, "auc": None, "brier": None, "accuracy": None, "pass_rate": None}
    return {"n": n, "auc": _auc(y, p), "brier": round(float(np.mean((p - y) ** 2)), 4),
            "accuracy": round(float(np.mean((p >= threshold) == (y == 1))), 4),
            "pass_rate": round(float(y.mean()), 4)}


def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """Area under the ROC curve by the rank-sum formula (ties count half)."""
    positives, negatives = int((y == 1).sum()), int((y == 0).sum())
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p))
    sorted_p = p[order]
    i = 0
    while i < len(p):  # average ranks over ties
        j = i
        while j + 1 < len(p) and sorted_p[j + 1] == sorted_p[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    rank_sum = float(ranks[y == 1].sum())
    return round((rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives), 4)
