"""Features a learned router reads, and the run-time glue that starts each run on the tier it picks.

A request becomes: the intent classifier's MiniLM sentence embedding (reused from ``classify``'s cache, never
computed twice), a one-hot of the intent over the classifier's labels (+ unknown), log(1 + characters), how many
numbers it holds, and how many tools it needs. :class:`LearnedRouting` turns that into
``TierRouter.start_run_at(run_id, tier, reason)`` for the orchestrator's classify node.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from tierflow.runtimes.learned_router import LearnedRouter, LearnedRouterError
from tierflow.runtimes.router import TierRouter

UNKNOWN_INTENT = "<unknown>"
CHEAP_FEATURES = ("log1p_chars", "numbers", "tools")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


@runtime_checkable
class EmbeddingClassifier(Protocol):
    """An intent classifier that also hands out its sentence embeddings (``TrainedIntentClassifier`` does)."""

    labels: list[str]

    def embedding(self, text: str) -> np.ndarray: ...


def encoder_name(classifier: Any) -> str:
    """Names the embedding space: the base encoder, plus the intent model's fine-tuning when it changed it."""
    from tierflow.agents.intents.encoder import BASE_MODEL_NAME

    layer = getattr(classifier, "finetuned_from_layer", None)
    if layer is None:
        return BASE_MODEL_NAME
    data = (getattr(classifier, "metadata", None) or {}).get("data_sha256", "?")
    return f"{BASE_MODEL_NAME} fine-tuned from layer {layer} (intent data {str(data)[:12]})"


class RouteFeatures:
    """(request text, intent label, tools count) -> the learned router's feature vector."""

    def __init__(self, classifier: EmbeddingClassifier) -> None:
        """``classifier``: the run's intent model; its embeddings and label set define the features."""
        if not isinstance(classifier, EmbeddingClassifier):
            raise LearnedRouterError(f"a learned router needs an intent classifier with embeddings (a trained "
                                     f"intent model), got {type(classifier).__name__}")
        self.classifier = classifier
        self.labels = list(classifier.labels)
        self._intent_index = {label: i for i, label in enumerate(self.labels)}
        encoder = getattr(classifier, "encoder", None)
        self.dim = int(encoder.dim) if encoder is not None else int(np.asarray(classifier.embedding("")).size)
        self.encoder = encoder_name(classifier)
        self.names = [f"emb_{i}" for i in range(self.dim)] + [f"intent={label}" for label in self.labels] + \
            [f"intent={UNKNOWN_INTENT}", *CHEAP_FEATURES]

    def vector(self, text: str, intent: str | None, tools: float = 0.0,
               embedding: np.ndarray | None = None) -> np.ndarray:
        """One request's features; ``embedding`` defaults to the classifier's (cached after ``classify``)."""
        emb = self.classifier.embedding(text) if embedding is None else embedding
        out = np.zeros(len(self.names), dtype=np.float64)
        out[: self.dim] = emb
        out[self.dim + self._intent_index.get(intent or "", len(self.labels))] = 1.0
        out[-3] = math.log1p(len(text))
        out[-2] = len(_NUMBER.findall(text))
        out[-1] = float(tools)
        return out

    def matrix(self, texts: Sequence[str], intents: Sequence[str | None],
               tools: Sequence[float]) -> np.ndarray:
        """Features of many requests (training): embeddings in batches, intents as given."""
        encoder = getattr(self.classifier, "encoder", None)
        if encoder is not None and hasattr(encoder, "embed"):
            embeddings = encoder.embed(list(texts)).numpy()
        else:
            embeddings = np.stack([self.classifier.embedding(t) for t in texts]) if texts else np.zeros((0, self.dim))
        rows = [self.vector(t, i, n, e) for t, i, n, e in zip(texts, intents, tools, embeddings, strict=True)]
        return np.stack(rows) if rows else np.zeros((0, len(self.names)))

    def check(self, model: LearnedRouter, where: str) -> None:
        """Raise :class:`LearnedRouterError` when ``model`` was trained on other features (labels or encoder)."""
        if model.feature_names != self.names:
            theirs = [n for n in model.feature_names if n.startswith("intent=")]
            ours = [n for n in self.names if n.startswith("intent=")]
            raise LearnedRouterError(f"learned router {where} was trained on other features ({len(model.feature_names)}"
                                     f" features, intents {theirs}) than this intent model gives ({len(self.names)}"
                                     f", intents {ours}); retrain it with `tierflow route train`")
        trained_on = model.metadata.get("encoder")
        if trained_on and trained_on != self.encoder:
            raise LearnedRouterError(f"learned router {where} was trained on embeddings of {trained_on}, this intent "
                                     f"model gives {self.encoder}; retrain it with `tierflow route train`")


@dataclass(frozen=True)
class RouteChoice:
    """A learned router's pick for one run: the tier, its predicted pass rate, why, and every tier's prediction."""

    tier: str
    p: float
    reason: str
    predictions: dict[str, float] = field(default_factory=dict)
    allowed: list[str] = field(default_factory=list)


class LearnedRouting:
    """A trained :class:`LearnedRouter` with its features and the run's tier router: picks where each run starts."""

    def __init__(self, model: LearnedRouter, features: RouteFeatures, router: TierRouter,
                 min_quality: float = 0.8, where: str = "(in memory)") -> None:
        """Checks at construction that ``model`` reads the features ``features`` makes."""
        features.check(model, where)
        self.model, self.features, self.router = model, features, router
        self.min_quality = float(min_quality)
        self.where = where
        tools = model.metadata.get("tools_by_intent") or {}
        self._tools_by_intent: Mapping[str, float] = {str(k): float(v) for k, v in tools.items()}
        self._tools_default = float(model.metadata.get("tools_mean", 0.0) or 0.0)

    @classmethod
    def load(cls, folder: str | Path, classifier: EmbeddingClassifier, router: TierRouter,
             min_quality: float = 0.8) -> LearnedRouting:
        """Load the router in ``folder`` for ``classifier``'s features; raises LearnedRouterError when unusable."""
        model = LearnedRouter.load(folder)
        return cls(model, RouteFeatures(classifier), router, min_quality, where=str(folder))

    def tools_for(self, intent: str | None) -> float:
        """Tools a request of ``intent`` needs, as the training data showed on average (unknown before planning)."""
        return self._tools_by_intent.get(intent or "", self._tools_default)

    def allowed_tiers(self, private: bool = False) -> list[str]:
        """Tiers the run may start on: declared, cleared for its data, within the budget's cost cap."""
        registry = self.router.registry
        allowed = [t for t in self.router.tier_order() if registry.config(t).cleared_for(private)]
        cap = self.router.policy.budget.max_cost
        if cap is not None:
            affordable = [t for t in allowed if self.model.costs.get(t, 0.0) <= cap]
            allowed = affordable or allowed
        return allowed

    def choose(self, text: str, intent: str | None, *, private: bool = False,
               tools: float | None = None) -> RouteChoice:
        """The tier this request should start on (see :meth:`LearnedRouter.choose`)."""
        allowed = self.allowed_tiers(private)
        x = self.features.vector(text, intent, self.tools_for(intent) if tools is None else tools)
        p = self.model.predict_array(x)
        tier, prob, reason = self.model.choose_from(p, self.min_quality, allowed)
        return RouteChoice(tier=tier, p=prob, reason=reason, allowed=allowed,
                           predictions={t: round(float(v), 4) for t, v in zip(self.model.tiers, p, strict=True)})

    def start_run(self, run_id: str, text: str, intent: str | None, *, private: bool = False) -> RouteChoice:
        """Choose, then make the tier router start run ``run_id``'s calls there."""
        choice = self.choose(text, intent, private=private)
        self.router.start_run_at(run_id, choice.tier, choice.reason)
        return choice
