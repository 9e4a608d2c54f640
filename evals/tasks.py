"""Tasks: what runs on one item in one matrix cell, returning a JSON-able output for the scorers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from threading import Lock
from typing import Any, Protocol

from langgraph.graph.state import CompiledStateGraph

from agents.intent import IntentClassifier
from evals.datasets import EvalItem
from evals.suite import Cell


class Task(Protocol):
    """Runs one item in one cell; raising is fine, the runner records the error against the item."""

    def __call__(self, item: EvalItem, cell: Cell) -> dict[str, Any]: ...


class IntentTask:
    """The intent classifier on the item's text; the same model in every cell (intents use no tier)."""

    def __init__(self, classifier: IntentClassifier) -> None:
        self.classifier = classifier

    @classmethod
    def from_model(cls, model: Path | None) -> IntentTask:
        """A trained model folder, or the demo model shipped with tierflow."""
        from agents.intents import load_default_classifier
        from agents.intents.model import TrainedIntentClassifier

        return cls(TrainedIntentClassifier.load(model) if model else load_default_classifier())

    def __call__(self, item: EvalItem, cell: Cell) -> dict[str, Any]:
        t0 = time.perf_counter()
        result = self.classifier.classify(item.input)
        return {"label": result.label, "confidence": result.confidence, "out_of_scope": result.out_of_scope,
                "latency_ms": (time.perf_counter() - t0) * 1000}


GraphFactory = Callable[[Cell], CompiledStateGraph]


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
        from graphs.runner import run_request

        graph = self.graph(cell)
        t0 = time.perf_counter()
        result = run_request(graph, item.input, run_id=f"eval-{uuid.uuid4().hex}")
        calls = [c.model_dump() for c in result.model_calls]
        cost = 0.0
        for c in calls:
            price_in, price_out = self.costs.get(c["tier"], (0.0, 0.0))
            cost += c["input_tokens"] / 1000 * price_in + c["output_tokens"] / 1000 * price_out
        tool_calls = [{"tool": t.get("tool"), "args": t.get("args"), "error": bool(t.get("error"))}
                      for r in result.results for t in r.get("tool_calls", [])]
        return {"answer": result.answer, "status": result.status, "pattern": result.pattern,
                "intent": (result.intent or {}).get("label"), "tool_calls": tool_calls, "model_calls": calls,
                "cost": cost, "latency_ms": (time.perf_counter() - t0) * 1000, "notes": result.notes}
