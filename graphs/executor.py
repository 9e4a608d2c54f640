"""The executor seam: a run is executed in this process (default) or as a durable DBOS workflow.

``[executor] kind = "inprocess"`` runs the graph here, as ``tierflow run`` always did. ``kind = "dbos"`` makes one
run one DBOS workflow keyed by its run id, its model and tool calls journaled (``graphs/dbos_executor.py``), so
worker processes on many machines can share the work and a killed worker's runs are finished by another.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from langchain_core.callbacks import BaseCallbackHandler
from langgraph.graph.state import CompiledStateGraph

from tierflow.graphs.events import EventSink
from tierflow.graphs.executor_config import ExecutorConfig, ExecutorKind, RunSpec
from tierflow.graphs.runner import RunNotFoundError, RunResult, resume_run, run_request

__all__ = ["ExecutorConfig", "ExecutorKind", "GraphBuilder", "InProcessExecutor", "RunSpec", "drive_durably",
           "waiting_result"]

# Builds (or returns a cached) compiled graph for a spec; the CLI layer provides it (it knows the settings).
GraphBuilder = Callable[[RunSpec], CompiledStateGraph]


class Executor(Protocol):
    """Executes one prepared run (new, resumed or answered) and returns its result."""

    def execute(self, spec: RunSpec, graph: CompiledStateGraph, callbacks: Sequence[BaseCallbackHandler] = (),
                on_event: EventSink | None = None) -> RunResult:
        """Run ``spec`` on ``graph``; ``callbacks`` and ``on_event`` see the calls made in this process."""
        ...


class InProcessExecutor:
    """Runs in this process, checkpointed by the graph's checkpointer: nothing to install."""

    def execute(self, spec: RunSpec, graph: CompiledStateGraph, callbacks: Sequence[BaseCallbackHandler] = (),
                on_event: EventSink | None = None) -> RunResult:
        """Start ``spec.request``, or resume ``spec.run_id`` (with ``spec.answer``) when there is no request."""
        if spec.request is not None:
            return run_request(graph, spec.request, run_id=spec.run_id, user_id=spec.user_id, callbacks=callbacks,
                               on_event=on_event, private=spec.private)
        return resume_run(graph, spec.run_id, answer=spec.answer, callbacks=callbacks, on_event=on_event)


def drive_durably(graph: CompiledStateGraph, spec: RunSpec, callbacks: Sequence[BaseCallbackHandler] = (),
                  on_event: EventSink | None = None) -> RunResult:
    """Execute ``spec`` so that executing it again (a recovered workflow) continues instead of starting over.

    A run whose thread has a checkpoint continues from it; an answer already consumed before a crash is not
    given twice; a run found waiting (it paused just before its worker died) reports its question again.
    """
    config: dict[str, Any] = {"configurable": {"thread_id": spec.run_id}}
    snapshot = graph.get_state(config) if graph.checkpointer is not None else None
    started = bool(snapshot and (snapshot.values or snapshot.next))
    if spec.request is not None and not started:
        return run_request(graph, spec.request, run_id=spec.run_id, user_id=spec.user_id, callbacks=callbacks,
                           on_event=on_event, private=spec.private)
    waiting = bool(snapshot and (snapshot.interrupts or any(t.interrupts for t in snapshot.tasks)))
    if waiting and spec.answer is None:
        return waiting_result(graph, spec.run_id)
    answer = spec.answer if waiting else None
    return resume_run(graph, spec.run_id, answer=answer, callbacks=callbacks, on_event=on_event)


def waiting_result(graph: CompiledStateGraph, run_id: str) -> RunResult:
    """The result of a run paused on a question, read from its checkpoint (nothing runs)."""
    snapshot = graph.get_state({"configurable": {"thread_id": run_id}})
    interrupts = list(snapshot.interrupts) or [i for t in snapshot.tasks for i in t.interrupts]
    if not interrupts:
        raise RunNotFoundError(f"run {run_id} is not waiting for an answer")
    value = interrupts[0].value
    question = dict(value) if isinstance(value, dict) else {"question": str(value)}
    values = snapshot.values
    return RunResult(answer="", intent=values.get("intent"), plan=values.get("plan"), pattern=values.get("pattern"),
                     run_id=run_id, elapsed_s=0.0, results=values.get("results", []), notes=values.get("notes", []),
                     status="waiting", interrupt={"id": interrupts[0].id, **question})
