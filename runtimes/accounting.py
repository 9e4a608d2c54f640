"""Per-call accounting: which tier and model served a call, how long it took, how many tokens."""

from __future__ import annotations

import threading
import time
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult
from pydantic import BaseModel, Field

from tierflow.runtimes.context import RunContext


class ModelCall(BaseModel):
    """One chat-model call as ``tierflow run --json`` reports it."""

    tier: str
    model: str
    latency_ms: float
    input_tokens: int
    output_tokens: int
    error: str | None = None
    kind: str = Field("model", description='"model" (a tier) or "a2a" (a remote A2A agent)')
    # How the router chose the tier (absent when a tier was called directly).
    rule: str | None = None
    fallback_from: str | None = None
    attempt: int | None = None
    # The verified cascade: the check that failed (escalating this call, or turning this reply down) and the value
    # it saw; the reply's token log-probabilities when its tier reports them.
    check: str | None = None
    value: float | str | None = None
    logprob_mean: float | None = None
    logprob_min: float | None = None
    unverified: str | None = None  # a check this reply failed with no stronger tier to go to (it was kept)


class ModelCallRecorder(BaseCallbackHandler):
    """Collects a :class:`ModelCall` for every chat-model call of a run, including failed ones.

    A LangChain callback rather than code in each node, so calls made deep inside tool loops and
    subgraphs are counted without threading a list through them. Thread-safe: parallel branches
    report into the same recorder.
    """

    def __init__(self) -> None:
        self.calls: list[ModelCall] = []
        self._started: dict[UUID, tuple[float, str, str, str]] = {}
        self._lock = threading.Lock()

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[BaseMessage]], *,
                            run_id: UUID, metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        params = kwargs.get("invocation_params") or {}
        tier = str(RunContext.from_metadata(metadata).tier or params.get("tier") or "?")
        model = str(params.get("model_name") or params.get("model") or params.get("model_path") or "?")
        kind = str(params.get("kind") or "model")  # a remote A2A agent's model says "a2a"
        with self._lock:
            self._started[run_id] = (time.perf_counter(), tier, model, kind)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            started = self._started.pop(run_id, None)
        if started is None:
            return
        t0, tier, model, kind = started
        input_tokens = output_tokens = 0
        route: dict[str, Any] = {}
        confidence: dict[str, Any] = {}
        for generations in response.generations:
            for generation in generations:
                message = getattr(generation, "message", None)
                usage = getattr(message, "usage_metadata", None) or {}
                input_tokens += int(usage.get("input_tokens", 0))
                output_tokens += int(usage.get("output_tokens", 0))
                meta = getattr(message, "response_metadata", None) or {}
                route = meta.get("route") or route
                confidence = meta.get("confidence") or confidence
                kind = str(meta.get("kind") or route.get("kind") or kind)
                tier = str(route.get("tier") or meta.get("tier") or tier)
                model = str(meta.get("model_name") or model)
        latency_ms = (time.perf_counter() - t0) * 1000
        rejected = list(route.get("rejected") or [])
        for turned_down in rejected:  # replies the cascade's checks turned down: model calls that cost tokens too
            self._append(ModelCall(**{k: turned_down.get(k) for k in ("tier", "model", "latency_ms", "input_tokens",
                                                                       "output_tokens", "check", "value",
                                                                       "logprob_mean", "logprob_min")},
                                   kind=kind, rule="rejected"))
        self._append(ModelCall(tier=tier, model=model,
                               latency_ms=max(0.0, latency_ms - sum(r.get("latency_ms", 0.0) for r in rejected)),
                               input_tokens=input_tokens, output_tokens=output_tokens, kind=kind,
                               rule=route.get("rule"), fallback_from=route.get("fallback_from"),
                               attempt=route.get("attempt"), check=route.get("check"), value=route.get("value"),
                               logprob_mean=confidence.get("logprob_mean"),
                               logprob_min=confidence.get("logprob_min"),
                               unverified=(route.get("unverified") or {}).get("check")))

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            started = self._started.pop(run_id, None)
        if started is None:
            return
        t0, tier, model, kind = started
        rule: str | None = None
        tried = getattr(error, "tried", None)
        if tried is not None:  # the router's NoTierAvailable: name the tiers it tried (or say none could be)
            tier, rule = ",".join(tried) or "none", str(getattr(error, "rule", "") or None)
        elif getattr(error, "limit", None) and getattr(error, "usage", None) is not None:  # BudgetExceeded
            tier, rule = "none", "budget"
        elif getattr(error, "tier", None):  # a tier's own typed error (timeout, context, bad output)
            tier = str(error.tier)  # type: ignore[attr-defined]
        self._append(ModelCall(tier=tier, model=model, latency_ms=(time.perf_counter() - t0) * 1000,
                               input_tokens=0, output_tokens=0, error=f"{type(error).__name__}: {error}",
                               kind=kind, rule=rule))

    def _append(self, call: ModelCall) -> None:
        with self._lock:
            self.calls.append(call)
