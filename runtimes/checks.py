"""The verified cascade's cheap checks of a reply: schema, confidence and caller-given checks such as grounding.

A check returns a :class:`CheckResult` naming what failed and the value it saw, so the router can escalate and
``model_calls`` can say why. The router runs them after every tier's reply; a caller adds its own per call with
``router.bind(verify=fn)`` (the synthesizer passes a grounding check: numbers must come from the request and tool
results).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema
from langchain_core.messages import BaseMessage

CONFIDENCE_KEY = "confidence"  # response_metadata key where a tier puts {"logprob_mean", "logprob_min", "tokens"}


@dataclass(frozen=True)
class CheckResult:
    """A failed check: its name, the value it saw, the threshold it was held to, and a short detail."""

    check: str
    value: float | str
    threshold: float | None = None
    detail: str = ""

    def record(self) -> dict[str, Any]:
        """The check as ``model_calls`` and route decisions carry it."""
        return {"check": self.check, "value": self.value, "threshold": self.threshold, "detail": self.detail}


Verifier = Callable[[BaseMessage], "CheckResult | None"]
"""A caller's check of a reply: None when it passes."""


def confidence_of(message: BaseMessage) -> dict[str, float] | None:
    """The reply's token log-probability summary, when its tier reports one."""
    value = (getattr(message, "response_metadata", None) or {}).get(CONFIDENCE_KEY)
    return dict(value) if isinstance(value, dict) and "logprob_mean" in value else None


def schema_check(message: BaseMessage, schema: dict[str, Any]) -> CheckResult | None:
    """Fails when the reply is not JSON or does not satisfy ``schema``."""
    try:
        value = json.loads(message.text)
    except json.JSONDecodeError as exc:
        return CheckResult("schema", f"not JSON ({exc.msg})")
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        return CheckResult("schema", exc.message[:200])
    return None


def confidence_check(message: BaseMessage, min_mean: float | None, min_token: float | None) -> CheckResult | None:
    """Fails when the reply's mean or minimum token log-probability is under its threshold (None: not checked;
    a tier that reports no log-probabilities passes)."""
    confidence = confidence_of(message)
    if confidence is None:
        return None
    if min_mean is not None and confidence["logprob_mean"] < min_mean:
        return CheckResult("logprob_mean", confidence["logprob_mean"], min_mean)
    if min_token is not None and confidence["logprob_min"] < min_token:
        return CheckResult("logprob_min", confidence["logprob_min"], min_token)
    return None
