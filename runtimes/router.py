"""The tier router: a chat model that picks a device tier for every call and says why.

It filters the declared tiers by data privacy, required capabilities, context length, circuit
health and the run's budgets; tries them in policy order; falls back when a tier fails or times out;
and escalates to a stronger tier when structured output does not match its schema (a tier without
schema-constrained decoding may still answer a JSON call: its output is validated like any other).
Each answer
carries its decision in ``response_metadata["route"]``.
"""

from __future__ import annotations

import importlib
import itertools
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from tierflow.runtimes.checks import CheckResult, Verifier, confidence_check, confidence_of, schema_check
from tierflow.runtimes.context import ROUTE_KEY, RunContext, set_route
from tierflow.runtimes.cost import call_cost, chat_prompt_tokens, tier_price
from tierflow.runtimes.errors import (
    MODEL_CALL_ERRORS,
    BudgetExceeded,
    CheckFailed,
    ContextLengthExceeded,
    NoTierAvailable,
    SchemaMismatch,
    TierConfigError,
)
from tierflow.runtimes.journal import current_journal
from tierflow.runtimes.privacy import DEFAULT_PRIVATE_PATTERNS
from tierflow.runtimes.registry import TierRegistry
from tierflow.runtimes.schema import schema_of

PRIVATE_FLAG = "private"


class BudgetPolicy(BaseModel):
    """Per-run limits, summed over every call of the run including parallel branches."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int | None = Field(None, ge=1)
    max_cost: float | None = Field(None, ge=0)
    max_wall_s: float | None = Field(None, gt=0)
    on_exceed: Literal["raise", "degrade"] = "raise"


class CascadeChecks(BaseModel):
    """Cheap checks of a reply before the cascade accepts it; a failed one escalates (None turns a check off).

    Confidence is the reply's token log-probabilities as the tier reports them (llama.cpp tiers do): the mean and
    the minimum over the answer tokens. Calibrate the thresholds with ``tierflow eval routing``.
    """

    model_config = ConfigDict(extra="forbid")

    json_schema: bool = Field(True, description="JSON replies must satisfy the call's schema")
    grounding: bool = Field(False, description="the synthesizer's answer may only claim numbers from the request, "
                                               "results and tools; off: such an answer is replaced by the results")
    min_mean_logprob: float | None = Field(None, le=0.0, description="lowest accepted mean token log-probability")
    min_token_logprob: float | None = Field(None, le=0.0, description="lowest accepted single-token "
                                                                       "log-probability")


class RoutingPolicy(BaseModel):
    """How the router chooses; declared in settings under ``[routing]``."""

    model_config = ConfigDict(extra="forbid")

    order: list[str] = Field(default_factory=list, description="preferred tiers, best first; empty = default tier, "
                                                                "then the rest by strength")
    private_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_PRIVATE_PATTERNS))
    budget: BudgetPolicy = Field(default_factory=BudgetPolicy)
    circuit_failures: int = Field(2, ge=1, description="consecutive failures that open a tier's circuit")
    circuit_cooldown_s: float = Field(30.0, gt=0)
    max_escalations: int = Field(2, ge=0)
    policy_fn: str | None = Field(None, description="'module:function' that reorders or narrows the candidates")
    cascade: list[str] = Field(default_factory=list, description="tiers cheapest first; when set it is the order "
                                                                 "and a reply that fails a check escalates along it")
    checks: CascadeChecks = Field(default_factory=lambda: CascadeChecks())
    learned: str | None = Field(None, description="folder of a learned router (tierflow route train): picks the "
                                                  "cheapest tier predicted to pass min_quality for each run")
    min_quality: float = Field(0.8, ge=0.0, le=1.0, description="predicted pass rate a learned router's tier "
                                                                "must reach")


class RouteDecision(BaseModel):
    """Why a call ran where it ran; copied into ``model_calls`` and trace metadata."""

    tier: str
    rule: str
    fallback_from: str | None = None
    attempt: int = 1
    reason: str = ""
    skipped: dict[str, str] = Field(default_factory=dict)
    # The verified cascade: the check whose failure escalated to this tier and the value it saw, the replies it
    # turned down on the way (each a model call with its tokens), and a check this reply failed with nowhere
    # stronger to go.
    check: str | None = None
    value: float | str | None = None
    rejected: list[dict[str, Any]] = Field(default_factory=list)
    unverified: dict[str, Any] | None = None


class CallInfo(BaseModel):
    """What a custom policy function sees about the call being routed."""

    private: bool
    needs_json: bool
    needs_tools: bool
    prompt_chars: int
    run_id: str | None
    agent: str | None


PolicyFn = Callable[[CallInfo, list[str]], Sequence[str]]


@dataclass
class _Circuit:
    """Per-tier breaker: opens after N consecutive failures, half-opens after the cool-down."""

    failures: int = 0
    opened_at: float | None = None
    last_error: BaseException | None = None  # what the latest failure raised, kept as the exception itself

    def state(self, cooldown_s: float, now: float) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if now - self.opened_at >= cooldown_s else "open"


@dataclass
class _Ledger:
    """Usage of one run so far."""

    tokens: int = 0
    cost: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def usage(self) -> dict[str, float]:
        return {"tokens": self.tokens, "cost": round(self.cost, 6), "wall_s": round(time.monotonic() - self.started, 3)}


# Ledgers kept at most; old runs' ledgers are dropped first.
_MAX_LEDGERS = 1024


class SharedCircuits(Protocol):
    """Tier circuits shared by processes, so one worker's discovery that a tier is down spares the others."""

    def opened_for(self, tier: str) -> float | None:
        """Seconds since ``tier``'s shared circuit opened, or None while it is closed."""
        ...

    def failed(self, tier: str, threshold: int, error: str) -> None:
        """Count a failure; the ``threshold``-th in a row (or any while open) opens the circuit now."""
        ...

    def succeeded(self, tier: str) -> None:
        """Close ``tier``'s circuit and reset its failures."""
        ...


@dataclass
class RouterState:
    """What a router shares with its :meth:`TierRouter.for_agent` views: tier circuits, run ledgers, and the
    privacy patterns and policy function compiled once from the policy; ``lock`` guards circuits and ledgers."""

    patterns: list[re.Pattern[str]]
    policy_fn: PolicyFn | None
    lock: threading.Lock = field(default_factory=threading.Lock)
    circuits: dict[str, _Circuit] = field(default_factory=dict)
    ledgers: OrderedDict[str, _Ledger] = field(default_factory=OrderedDict)
    # Where a learned router starts each run: run id -> (tier, reason); bounded like the ledgers.
    starts: OrderedDict[str, tuple[str, str]] = field(default_factory=OrderedDict)
    # Circuits every worker sees (the DBOS executor keeps them in its database); None: this process only.
    shared_circuits: SharedCircuits | None = None

    @classmethod
    def from_policy(cls, policy: RoutingPolicy) -> RouterState:
        """Fresh state for ``policy``; a bad pattern or policy function fails here, at construction."""
        return cls(patterns=[re.compile(p) for p in policy.private_patterns],
                   policy_fn=_load_policy_fn(policy.policy_fn))


class TierRouter(BaseChatModel):
    """A LangChain chat model whose every call is dispatched to one of the registry's tiers.

    Pass ``tier=NAME`` per call (``router.bind(tier="cloud")``) to name a tier; privacy still wins.
    Routers made by :meth:`for_agent` share circuits and run ledgers with their parent.
    """

    registry: Any = Field(exclude=True)
    policy: RoutingPolicy = Field(default_factory=RoutingPolicy)
    preferred: str | None = None
    agent: str | None = None
    tier: str = "router"
    clock: Callable[[], float] = Field(default=time.monotonic, exclude=True,
                                       description="time source of circuit cool-downs")
    _state: RouterState | None = PrivateAttr(default=None)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._setup()

    def _setup(self) -> None:
        # Checked after pydantic's validation so configuration errors keep their own types.
        if not isinstance(self.registry, TierRegistry):
            raise TypeError("TierRouter.registry must be a tierflow.runtimes.registry.TierRegistry")
        self.registry.validate(self.policy.order, who="routing.order")  # unknown names fail now, not mid-run
        self.registry.validate(self.policy.cascade, who="routing.cascade")
        if self.preferred:
            self.registry.validate([self.preferred])
        if self._state is None:
            self._state = RouterState.from_policy(self.policy)

    @property
    def shared_state(self) -> RouterState:
        """The state this router shares with its per-agent views."""
        assert self._state is not None  # set in __init__; for_agent copies it
        return self._state

    @property
    def _llm_type(self) -> str:
        return "tierflow-router"

    def for_agent(self, agent: str, preferred: str | None = None) -> TierRouter:
        """A view of this router for one agent kind, preferring ``preferred``; state is shared."""
        if preferred is not None:
            self.registry.validate([preferred])
        clone = self.model_copy(update={"agent": agent, "preferred": preferred})
        clone._state = self._state
        return clone

    # ----- the decision -------------------------------------------------------------------------

    def is_private(self, messages: Sequence[BaseMessage], run_private: bool = False) -> bool:
        """True when the run, a message flag or a policy pattern marks the data private."""
        if run_private:
            return True
        for message in messages:
            if message.additional_kwargs.get(PRIVATE_FLAG) or message.response_metadata.get(PRIVATE_FLAG):
                return True
            text = message.text if isinstance(message.content, list) else str(message.content)
            if any(p.search(text) for p in self.shared_state.patterns):
                return True
        return False

    def candidates(self, info: CallInfo, prompt_tokens: Callable[[str], int], max_tokens: int | None,
                   forced: str | None = None) -> tuple[list[tuple[str, str]], dict[str, str]]:
        """Tiers that may serve the call, in the order to try them, each with the rule that put it there."""
        order = self.tier_order(forced)
        allowed: list[tuple[str, str]] = []
        skipped: dict[str, str] = {}
        now = self.clock()
        for position, name in enumerate(order):
            config = self.registry.config(name)
            if not config.cleared_for(info.private):
                skipped[name] = "not cleared for private data"
                continue
            if info.needs_tools and not config.tool_calling:
                skipped[name] = "no native tool calling"
                continue
            circuit = self._circuit(name)
            if circuit.state(self.policy.circuit_cooldown_s, now) == "open":
                skipped[name] = "circuit open after failures"
                continue
            shared = self.shared_state.shared_circuits
            opened_for = shared.opened_for(name) if shared is not None else None
            if opened_for is not None and opened_for < self.policy.circuit_cooldown_s:
                skipped[name] = "circuit open after failures (seen by another worker)"
                continue
            reserve = max_tokens or config.max_tokens
            tokens = prompt_tokens(name)
            if tokens + reserve > config.n_ctx:
                skipped[name] = f"prompt of {tokens} tokens does not fit n_ctx {config.n_ctx}"
                continue
            rule = "forced" if forced == name else "preference" if position == 0 else "fallback"
            if not allowed and skipped.get(order[0]) == "not cleared for private data":
                rule = "privacy"
            allowed.append((name, rule))
        fn = self.shared_state.policy_fn
        if fn is not None and allowed:
            chosen = list(fn(info, [name for name, _ in allowed]))
            by_name = dict(allowed)
            unknown = [c for c in chosen if c not in by_name]
            if unknown:
                raise TierConfigError(f"routing policy_fn returned tiers it may not use: {unknown}")
            allowed = [(name, "policy_fn") for name in chosen]
        return allowed, skipped

    def tier_order(self, forced: str | None = None) -> list[str]:
        """Every tier in the order this router tries them before filtering (see TierRegistry.tier_order)."""
        return self.registry.tier_order(self.policy.cascade or self.policy.order, (self.preferred, forced))

    # ----- generation ---------------------------------------------------------------------------

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        verify: Verifier | None = kwargs.pop("verify", None)
        plan = self._plan(messages, run_manager, kwargs)
        schema = schema_of(kwargs.get("response_format"))
        attempt, escalations = 0, 0
        fallback_from: str | None = None
        failures: dict[str, BaseException] = {}
        rejected: list[dict[str, Any]] = []  # replies the cascade's checks turned down, each a model call
        last_check: CheckResult | None = None
        queue = list(plan.candidates)
        while queue:
            name, rule = queue.pop(0)
            attempt += 1
            started = time.perf_counter()
            try:
                result, key = self._call_tier(name, messages, stop, plan.call_kwargs)
            except ContextLengthExceeded as exc:
                failures[name] = exc
                continue
            except MODEL_CALL_ERRORS as exc:
                self._record_failure(name, exc)
                failures[name] = exc
                fallback_from, rule = name, "fallback"
                queue = [(n, "fallback") for n, _ in queue]
                continue
            wall_s = time.perf_counter() - started
            self._record_success(name)
            message = result.generations[0].message
            self._charge(plan.run_id, name, message, key, wall_s)
            problem = self._verify(message, schema, verify)
            stronger = [(n, "escalate") for n, _ in queue
                        if self.registry.config(n).strength > self.registry.config(name).strength] \
                if problem is not None and escalations < self.policy.max_escalations else []
            if stronger:
                escalations += 1
                failures[name] = (SchemaMismatch(name, str(problem.value), message.text) if problem.check == "schema"
                                  else CheckFailed(name, problem.check, problem.value, problem.threshold,
                                                   problem.detail))
                rejected.append(_rejected_call(name, message, wall_s, problem))
                fallback_from, last_check = name, problem
                queue = stronger
                continue
            decision = RouteDecision(tier=name, rule=rule if not plan.degraded else "budget_degrade",
                                     fallback_from=fallback_from, attempt=attempt,
                                     reason=_reason_text(failures), skipped=plan.skipped,
                                     check=last_check.check if last_check else None,
                                     value=last_check.value if last_check else None,
                                     rejected=rejected, unverified=problem.record() if problem else None)
            _annotate(message, decision)
            return result
        raise _no_tier(plan.skipped, failures)

    def _verify(self, message: BaseMessage, schema: dict[str, Any] | None,
                verify: Verifier | None) -> CheckResult | None:
        """The first of the cascade's checks the reply fails: schema, confidence, then the caller's own."""
        checks = self.policy.checks
        if schema is not None and checks.json_schema:
            problem = schema_check(message, schema)
            if problem is not None:
                return problem
        problem = confidence_check(message, checks.min_mean_logprob, checks.min_token_logprob)
        if problem is not None:
            return problem
        return verify(message) if verify is not None else None

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        # Streaming falls back only before the first token: once text reached the caller it stays. The cascade's
        # checks need the whole reply, so a streamed reply is not escalated (its route says so when it fails one).
        if current_journal() is not None:  # a journaled call is recorded whole: its reply comes as one chunk
            message = self._generate(messages, stop=stop, run_manager=run_manager, **kwargs).generations[0].message
            yield ChatGenerationChunk(message=AIMessageChunk(content=message.content,
                                                             usage_metadata=getattr(message, "usage_metadata", None),
                                                             response_metadata=dict(message.response_metadata)))
            return
        kwargs.pop("verify", None)
        plan = self._plan(messages, run_manager, kwargs)
        failures: dict[str, BaseException] = {}
        fallback_from: str | None = None
        for attempt, (name, rule) in enumerate(plan.candidates, start=1):
            started = time.perf_counter()
            model = self.registry.chat_model(name)
            stream = model._stream(messages, stop=stop, run_manager=run_manager, **plan.call_kwargs)
            try:
                first = next(stream, None)
            except MODEL_CALL_ERRORS as exc:
                self._record_failure(name, exc)
                failures[name] = exc
                fallback_from = name
                continue
            self._record_success(name)
            decision = RouteDecision(tier=name, rule="fallback" if fallback_from else rule,
                                     fallback_from=fallback_from, attempt=attempt,
                                     reason=_reason_text(failures), skipped=plan.skipped)
            usage_seen: dict[str, int] = {}
            for chunk in itertools.chain([first] if first is not None else [], stream):  # as they come
                usage = getattr(chunk.message, "usage_metadata", None)
                if usage:
                    usage_seen = dict(usage)
                yield chunk
            # Only the route here: the tier's own chunks name the tier, and chunk merging concatenates strings.
            closing = AIMessageChunk(content="", response_metadata={ROUTE_KEY: decision.model_dump()})
            self._charge(plan.run_id, name, AIMessage(content="", usage_metadata=usage_seen or None), None,
                         time.perf_counter() - started)
            yield ChatGenerationChunk(message=closing)
            return
        raise _no_tier(plan.skipped, failures)

    # ----- helpers ------------------------------------------------------------------------------

    def _plan(self, messages: list[BaseMessage], run_manager: CallbackManagerForLLMRun | None,
              kwargs: dict[str, Any]) -> _CallPlan:
        kwargs = dict(kwargs)
        forced = kwargs.pop("tier", None)
        if forced is not None:
            self.registry.validate([forced])
        context = RunContext.from_metadata(getattr(run_manager, "metadata", None))
        run_id = context.run_id
        info = CallInfo(private=self.is_private(messages, context.private),
                        needs_json="response_format" in kwargs, needs_tools="tools" in kwargs,
                        prompt_chars=sum(len(str(m.content)) for m in messages), run_id=run_id, agent=self.agent)
        degraded = self._check_budget(run_id)
        text = "\n".join(str(m.content) for m in messages)
        candidates, skipped = self.candidates(
            info, lambda name: chat_prompt_tokens(self.registry.count_tokens(name, text), len(messages)),
            kwargs.get("max_tokens"), forced)
        start = self.run_start(run_id) if forced is None else None
        if start is not None:
            candidates = self._start_at(candidates, skipped, *start)
        if degraded:
            cheapest = min((self._price(n) for n, _ in candidates), default=0.0)
            for name, _ in candidates:
                if self._price(name) > cheapest:
                    skipped[name] = "budget exhausted: degraded to the cheapest tier"
            candidates = [(n, "budget_degrade") for n, _ in candidates if self._price(n) <= cheapest]
        if not candidates:
            raise NoTierAvailable(skipped)
        return _CallPlan(candidates=candidates, skipped=skipped, call_kwargs=kwargs, run_id=run_id, degraded=degraded)

    def _start_at(self, candidates: list[tuple[str, str]], skipped: dict[str, str], tier: str,
                  reason: str) -> list[tuple[str, str]]:
        """The candidates from a learned router's start tier on: weaker ones are skipped with its reason."""
        floor = self.registry.config(tier).strength
        kept = [(n, r) for n, r in candidates if self.registry.config(n).strength >= floor]
        if not kept:  # the start tier and all stronger ones are ruled out (privacy, circuits): keep the rest
            return candidates
        for name, _ in candidates:
            if self.registry.config(name).strength < floor:
                skipped[name] = reason
        return [(n, "learned" if i == 0 else r) for i, (n, r) in enumerate(kept)]

    def _call_tier(self, name: str, messages: list[BaseMessage], stop: list[str] | None,
                   kwargs: dict[str, Any]) -> tuple[ChatResult, str | None]:
        """One call to tier ``name``, through the run's call journal when an executor installed one."""
        journal = current_journal()
        if journal is None:
            return self.registry.chat_model(name)._generate(messages, stop=stop, **kwargs), None
        return journal.model_call(name, messages, stop, kwargs,
                                  lambda: self.registry.chat_model(name)._generate(messages, stop=stop, **kwargs))

    def _price(self, name: str) -> float:
        return sum(tier_price(self.registry.config(name)))

    def _circuit(self, name: str) -> _Circuit:
        with self.shared_state.lock:
            return self.shared_state.circuits.setdefault(name, _Circuit())

    def circuit_state(self, name: str) -> str:
        """``closed``, ``open`` or ``half_open`` for tier ``name``."""
        return self._circuit(name).state(self.policy.circuit_cooldown_s, self.clock())

    def _record_failure(self, name: str, error: BaseException) -> None:
        circuit = self._circuit(name)
        with self.shared_state.lock:
            circuit.failures += 1
            circuit.last_error = error
            if circuit.failures >= self.policy.circuit_failures or circuit.opened_at is not None:
                circuit.opened_at = self.clock()
        if self.shared_state.shared_circuits is not None:
            self.shared_state.shared_circuits.failed(name, self.policy.circuit_failures,
                                                     f"{type(error).__name__}: {error}")

    def _record_success(self, name: str) -> None:
        circuit = self._circuit(name)
        with self.shared_state.lock:
            circuit.failures = 0
            circuit.opened_at = None
            circuit.last_error = None
        if self.shared_state.shared_circuits is not None:
            self.shared_state.shared_circuits.succeeded(name)

    def ledger(self, run_id: str | None) -> dict[str, float]:
        """Usage of run ``run_id`` so far (tokens, cost, wall seconds)."""
        return self._ledger(run_id).usage()

    def start_run_at(self, run_id: str, tier: str, reason: str) -> None:
        """Start run ``run_id``'s calls at ``tier`` (a learned router's pick): weaker tiers are skipped, saying
        ``reason``; privacy, budgets and circuits still apply and the cascade may still escalate."""
        self.registry.validate([tier])
        with self.shared_state.lock:
            starts = self.shared_state.starts
            starts[run_id] = (tier, reason)
            starts.move_to_end(run_id)
            while len(starts) > _MAX_LEDGERS:
                starts.popitem(last=False)

    def run_start(self, run_id: str | None) -> tuple[str, str] | None:
        """The tier run ``run_id`` starts at and why (see :meth:`start_run_at`), or None."""
        with self.shared_state.lock:
            return self.shared_state.starts.get(run_id) if run_id else None

    # ----- the same rules for calls that do not go through a tier (remote A2A agents) --------------

    def check_budget(self, run_id: str | None) -> bool:
        """False within the run's budget; True when over it and the policy degrades; raises BudgetExceeded else."""
        return self._check_budget(run_id)

    def charge(self, run_id: str | None, tokens: int = 0, cost: float = 0.0) -> None:
        """Add a call's tokens and cost to run ``run_id``'s ledger (parallel branches add up)."""
        ledger = self._ledger(run_id)
        with self.shared_state.lock:
            ledger.tokens += int(tokens)
            ledger.cost += float(cost)

    def record_outcome(self, name: str, error: BaseException | None = None) -> None:
        """Count a call's success or failure on ``name``'s circuit breaker (see ``circuit_state``)."""
        if error is None:
            self._record_success(name)
        else:
            self._record_failure(name, error)

    def _ledger(self, run_id: str | None) -> _Ledger:
        key = run_id or "(no run)"
        with self.shared_state.lock:
            ledgers = self.shared_state.ledgers
            if key not in ledgers:
                ledgers[key] = _Ledger()
                while len(ledgers) > _MAX_LEDGERS:
                    ledgers.popitem(last=False)
            return ledgers[key]

    def _check_budget(self, run_id: str | None) -> bool:
        """False when within budget; True when over it and the policy degrades; raises when it says so."""
        budget = self.policy.budget
        ledger = self._ledger(run_id)
        with self.shared_state.lock:
            usage = ledger.usage()
        journal = current_journal()
        if journal is not None and run_id is not None:  # charged durably: every process's calls of the run count
            tokens, cost = journal.usage(run_id)
            usage.update(tokens=tokens, cost=round(cost, 6))
        crossed = next((limit for limit, used, cap in (("tokens", usage["tokens"], budget.max_tokens),
                                                       ("cost", usage["cost"], budget.max_cost),
                                                       ("wall_s", usage["wall_s"], budget.max_wall_s))
                        if cap is not None and used >= cap), None)
        if crossed is None:
            return False
        if budget.on_exceed == "raise":
            raise BudgetExceeded(crossed, usage, budget.model_dump(exclude={"on_exceed"}))
        return True

    def _charge(self, run_id: str | None, name: str, message: BaseMessage, key: str | None = None,
                wall_s: float = 0.0) -> None:
        usage = getattr(message, "usage_metadata", None) or {}
        tokens_in, tokens_out = int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
        cost = call_cost(tier_price(self.registry.config(name)), tokens_in, tokens_out, wall_s).total
        journal = current_journal()
        if journal is not None and key is not None and run_id is not None:
            journal.charge(run_id, key, tokens_in + tokens_out, cost)  # once per call key, replays included
            return
        ledger = self._ledger(run_id)
        with self.shared_state.lock:
            ledger.tokens += tokens_in + tokens_out
            ledger.cost += cost


class _CallPlan(BaseModel):
    candidates: list[tuple[str, str]]
    skipped: dict[str, str]
    call_kwargs: dict[str, Any]
    run_id: str | None
    degraded: bool


def _annotate(message: BaseMessage, decision: RouteDecision) -> None:
    set_route(message, decision.model_dump())


def _reason(error: BaseException) -> str:
    """How one tier's failure reads in a route's ``reason`` and in NoTierAvailable."""
    if isinstance(error, SchemaMismatch):
        return f"output failed its schema: {error.reason}"
    if isinstance(error, CheckFailed):
        bound = f" < {error.threshold:g}" if error.threshold is not None else ""
        return f"output failed check {error.check}: {error.value}{bound}"
    if isinstance(error, ContextLengthExceeded):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _reason_text(failures: dict[str, BaseException]) -> str:
    return "; ".join(f"{name}: {_reason(error)}" for name, error in failures.items())


def _no_tier(skipped: dict[str, str], failures: dict[str, BaseException]) -> NoTierAvailable:
    """The error when no candidate answered: why each was skipped or failed, with the failures' exceptions."""
    reasons = {**skipped, **{name: _reason(error) for name, error in failures.items()}}
    return NoTierAvailable(reasons, tried=list(failures), errors=failures)


def _rejected_call(name: str, message: BaseMessage, wall_s: float, problem: CheckResult) -> dict[str, Any]:
    """A reply the cascade turned down, as ``model_calls`` records it: the tier, its tokens and the failed check."""
    usage = getattr(message, "usage_metadata", None) or {}
    confidence = confidence_of(message) or {}
    return {"tier": name, "model": str(message.response_metadata.get("model_name") or name),
            "latency_ms": round(wall_s * 1000, 3), "input_tokens": int(usage.get("input_tokens", 0)),
            "output_tokens": int(usage.get("output_tokens", 0)), **problem.record(),
            "logprob_mean": confidence.get("logprob_mean"), "logprob_min": confidence.get("logprob_min")}


def _load_policy_fn(spec: str | None) -> PolicyFn | None:
    if not spec:
        return None
    module_name, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise TierConfigError(f"routing policy_fn {spec!r} cannot be loaded: {exc}") from exc
    if not callable(fn):
        raise TierConfigError(f"routing policy_fn {spec!r} is not callable")
    return fn
