"""Tasks: what runs on one item in one matrix cell, returning a JSON-able output for the scorers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from threading import Lock
from typing import TYPE_CHECKING, Any, Protocol

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langgraph.graph.state import CompiledStateGraph

from tierflow.agents.intent import IntentClassifier
from tierflow.evals.datasets import EvalItem

if TYPE_CHECKING:  # benchmarks import this module, and the suite reaches them through the registry
    from tierflow.evals.suite import Cell


class Task(Protocol):
    """Runs one item in one cell; raising is fine, the runner records the error against the item."""

    def __call__(self, item: EvalItem, cell: Cell) -> dict[str, Any]: ...


_CALLBACKS: ContextVar[tuple[BaseCallbackHandler, ...]] = ContextVar("tierflow_eval_callbacks", default=())


@contextmanager
def item_callbacks(callbacks: Sequence[BaseCallbackHandler]) -> Iterator[None]:
    """Callbacks (e.g. a Langfuse handler) that tasks attach to every model call or run of the current item."""
    token = _CALLBACKS.set(tuple(callbacks))
    try:
        yield
    finally:
        _CALLBACKS.reset(token)


def extra_callbacks() -> list[BaseCallbackHandler]:
    """The callbacks :func:`item_callbacks` set for the item running in this thread (none by default)."""
    return list(_CALLBACKS.get())


def usage_of(calls: Sequence[Any], costs: Mapping[str, tuple[float, float]]) -> dict[str, Any]:
    """``model_calls`` (dicts) and their ``cost`` from recorded :class:`tierflow.runtimes.accounting.ModelCall`s."""
    from tierflow.runtimes.cost import call_cost

    dumped = [c.model_dump() if hasattr(c, "model_dump") else dict(c) for c in calls]
    cost = sum((call_cost(costs.get(c["tier"]), c["input_tokens"], c["output_tokens"], c["latency_ms"] / 1000).total
                for c in dumped), 0.0)
    return {"model_calls": dumped, "cost": cost}


def invoke_structured(model: BaseChatModel, messages: LanguageModelInput, schema: dict[str, Any], *, name: str,
                      costs: Mapping[str, tuple[float, float]] | None = None,
                      max_tokens: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """One schema-constrained call with its token accounting: ``(reply, usage)``.

    ``usage`` holds ``model_calls`` and ``cost``, plus ``output_error`` when the reply was not usable JSON
    (the reply is then ``{}``: the model's failure is scored, not dropped). Other errors propagate.
    """
    from tierflow.runtimes.accounting import ModelCallRecorder
    from tierflow.runtimes.context import RunContext
    from tierflow.runtimes.errors import StructuredOutputError
    from tierflow.runtimes.structured import invoke_json

    recorder = ModelCallRecorder()
    tier = getattr(model, "tier", None)
    config = {"callbacks": [recorder, *extra_callbacks()], "run_name": f"eval.{name}",
              "metadata": RunContext(tier=tier).to_metadata() if tier else {}}
    bound: Any = model.bind(max_tokens=max_tokens) if max_tokens else model
    error: str | None = None
    try:
        reply = invoke_json(bound, messages, schema, config, name=name)  # type: ignore[arg-type]
    except StructuredOutputError as exc:
        reply, error = {}, f"{exc} (raw: {exc.raw[:200]!r})"
    usage = usage_of(recorder.calls, costs or {})
    if error:
        usage["output_error"] = error
    return reply, usage


class IntentTask:
    """The intent classifier on the item's text; the same model in every cell (intents use no tier)."""

    def __init__(self, classifier: IntentClassifier) -> None:
        self.classifier = classifier

    @classmethod
    def from_model(cls, model: Path | None) -> IntentTask:
        """A trained model folder, or the demo model shipped with tierflow."""
        from tierflow.agents.intents import load_default_classifier
        from tierflow.agents.intents.model import TrainedIntentClassifier

        return cls(TrainedIntentClassifier.load(model) if model else load_default_classifier())

    def __call__(self, item: EvalItem, cell: Cell) -> dict[str, Any]:
        t0 = time.perf_counter()
        result = self.classifier.classify(item.input)
        return {"label": result.label, "confidence": result.confidence, "out_of_scope": result.out_of_scope,
                "latency_ms": (time.perf_counter() - t0) * 1000}


GraphFactory = Callable[["Cell"], CompiledStateGraph]


class RunTask:
    """A whole orchestrator run per item, on the graph ``factory`` builds for the cell (built once per cell).

    ``costs`` maps a tier to its (input, output) price per 1k tokens, for the cost metric.
    """

    def __init__(self, factory: GraphFactory, costs: dict[str, tuple[float, float]] | None = None) -> None:
        self.factory, self.costs = factory, costs or {}
        self._graphs: dict[Cell, CompiledStateGraph] = {}
        self._lock = Lock()

    def graph(self, cell: Cell) -> CompiledStateGraph:
        with self._lock:
            if cell not in self._graphs:
                self._graphs[cell] = self.factory(cell)
            return self._graphs[cell]

    def __call__(self, item: EvalItem, cell: Cell) -> dict[str, Any]:
        from tierflow.graphs.runner import run_request

        graph = self.graph(cell)
        t0 = time.perf_counter()
        result = run_request(graph, item.input, run_id=f"eval-{uuid.uuid4().hex}", callbacks=extra_callbacks())
        usage = usage_of(result.model_calls, self.costs)
        tool_calls = [{"tool": t.get("tool"), "args": t.get("args"), "error": bool(t.get("error"))}
                      for r in result.results for t in r.get("tool_calls", [])]
        return {"answer": result.answer, "status": result.status, "pattern": result.pattern,
                "intent": (result.intent or {}).get("label"), "tool_calls": tool_calls, **usage,
                "latency_ms": (time.perf_counter() - t0) * 1000, "notes": result.notes,
                "errors": result.errors}
