"""The intent classifier contract the orchestrator depends on.

Implementations live elsewhere (``tierflow.agents.intents`` trains one on sentence embeddings); the
orchestrator only needs something with ``classify(text) -> IntentResult``, so tests and users can
inject their own.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pydantic import BaseModel, Field

OUT_OF_SCOPE = "oos"


class IntentResult(BaseModel):
    """One classification: the best label, how sure, whether it is out of scope, runners-up."""

    label: str
    confidence: float = Field(ge=0.0, le=1.0)
    out_of_scope: bool = False
    alternatives: list[tuple[str, float]] = Field(default_factory=list)


@runtime_checkable
class IntentClassifier(Protocol):
    """Anything that maps a request to an :class:`IntentResult`."""

    def classify(self, text: str) -> IntentResult: ...
