"""Run a compiled graph on one request with a thread id, accounting and checkpoints."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, Field

from runtimes.accounting import ModelCall, ModelCallRecorder

MAX_REQUEST_CHARS = 20_000


class RequestError(ValueError):
    """A request that cannot be run at all (empty, too long, not text)."""


class RunResult(BaseModel):
    """What one run produced; ``tierflow run --json`` prints exactly this."""

    answer: str
    intent: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
    pattern: str | None = None
    model_calls: list[ModelCall] = Field(default_factory=list)
    run_id: str
    elapsed_s: float
    results: list[dict[str, Any]] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


def check_request(request: str, max_chars: int = MAX_REQUEST_CHARS) -> str:
    """The request stripped; empty or oversized requests raise RequestError before any work starts."""
    if not isinstance(request, str):
        raise RequestError(f"request must be text, got {type(request).__name__}")
    text = request.strip()
    if not text:
        raise RequestError("request is empty")
    if len(text) > max_chars:
        raise RequestError(f"request has {len(text)} characters; the limit is {max_chars}")
    return text


def sqlite_checkpointer(path: Path) -> SqliteSaver:
    """LangGraph's SQLite saver on ``path`` (created with its folder), shareable across graph threads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteSaver(sqlite3.connect(str(path), check_same_thread=False))


def run_request(graph: CompiledStateGraph, request: str, *, run_id: str | None = None, user_id: str = "local",
                callbacks: Sequence[BaseCallbackHandler] = (), recursion_limit: int = 100) -> RunResult:
    """Invoke ``graph`` on ``request`` under thread ``run_id`` (new when None) and collect the result."""
    text = check_request(request)
    run_id = run_id or uuid.uuid4().hex
    recorder = ModelCallRecorder()
    config = {"configurable": {"thread_id": run_id}, "callbacks": [recorder, *callbacks],
              "recursion_limit": recursion_limit, "run_name": "tierflow.run",
              "metadata": {"tierflow_run_id": run_id, "user_id": user_id}}
    started = time.perf_counter()
    state = graph.invoke({"request": text, "user_id": user_id}, config)
    elapsed = time.perf_counter() - started
    return RunResult(
        answer=str(state.get("answer", "")),
        intent=state.get("intent"),
        plan=state.get("plan"),
        pattern=state.get("pattern"),
        model_calls=recorder.calls,
        run_id=run_id,
        elapsed_s=round(elapsed, 3),
        results=state.get("results", []),
        notes=state.get("notes", []),
    )
