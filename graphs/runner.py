"""Run a compiled graph on one request with a thread id, accounting and checkpoints."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks import BaseCallbackHandler
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command
from pydantic import BaseModel, Field

# Re-exported: the checks live in a module that imports nothing heavy, so the CLI rejects bad input at once.
from tierflow.graphs.events import EventSink, InterruptEvent, NodeEvent, TokenEvent
from tierflow.graphs.requests import MAX_REQUEST_CHARS, RequestError, RunNotFoundError, check_request  # noqa: F401
from tierflow.runtimes.accounting import ModelCall, ModelCallRecorder
from tierflow.runtimes.context import RunContext
from tierflow.runtimes.errors import RUN_ENDING_ERRORS

RunStatus = Literal["done", "failed", "partial", "waiting"]



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
    status: RunStatus = Field("done", description="done; failed (no usable answer); partial (some subtasks "
                                                  "failed); waiting (a question waits for `tierflow resume`)")
    errors: list[str] = Field(default_factory=list, description="why the run failed or is partial")
    interrupt: dict[str, Any] | None = Field(None, description="the question a paused run asks a human")
    already_finished: bool = Field(False, description="a resume found the run finished: nothing was run again")

    @property
    def ok(self) -> bool:
        """False when the run failed: the CLI exits 1."""
        return self.status != "failed"


def sqlite_checkpointer(path: Path) -> SqliteSaver:
    """LangGraph's SQLite saver on ``path`` (created with its folder), shareable across graph threads.

    A path that cannot exist or a file that is not a SQLite database raises RequestError now, naming the
    file, instead of failing mid-run inside LangGraph.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise RequestError(f"checkpoint database {path} cannot be created: {getattr(exc, 'strerror', None) or exc}"
                           ) from None
    try:
        conn.execute("PRAGMA schema_version").fetchone()  # reads the header: a corrupt file fails here
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise RequestError(f"checkpoint database {path} is unreadable (corrupt, or not SQLite): {exc}") from None
    return SqliteSaver(conn)


def make_checkpointer(spec: str, home: Path | None = None) -> BaseCheckpointSaver:
    """``sqlite`` (under ``home``), ``sqlite:///path``, or ``postgres://...`` (tables are created if missing)."""
    if spec == "sqlite":
        if home is None:
            raise RequestError("the sqlite checkpointer needs a home folder")
        return sqlite_checkpointer(home / "checkpoints.sqlite")
    if spec.startswith("sqlite:///"):
        return sqlite_checkpointer(Path(spec.removeprefix("sqlite:///")))
    if spec.startswith(("postgres://", "postgresql://")):
        return postgres_checkpointer(spec)
    raise RequestError(f"checkpointer {spec!r} is not sqlite, sqlite:///PATH or postgres://...")


def postgres_checkpointer(url: str, connect_timeout_s: int = 10) -> BaseCheckpointSaver:
    """LangGraph's PostgreSQL saver on one autocommit connection; unreachable servers raise RequestError."""
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row

    try:
        conn = psycopg.connect(url, autocommit=True, prepare_threshold=0, row_factory=dict_row,
                               connect_timeout=connect_timeout_s)
    except psycopg.Error as exc:
        raise RequestError(f"cannot reach the PostgreSQL checkpointer: {str(exc).strip()}") from exc
    saver = PostgresSaver(conn)
    saver.setup()
    return saver


def forget_checkpoints(checkpointer: BaseCheckpointSaver, user_id: str, run_id: str | None = None) -> int:
    """Delete every checkpointed run of ``user_id`` (or only ``run_id`` of theirs); returns how many.

    Runs are found by the ``user_id`` every run records in its checkpoint metadata. SQLite overwrites
    the deleted rows (``secure_delete``) and compacts the file, so the user's text is gone from disk too.
    """
    threads = {c.config["configurable"]["thread_id"] for c in checkpointer.list(None, filter={"user_id": user_id})}
    if run_id is not None:
        threads &= {run_id}
    conn = getattr(checkpointer, "conn", None)
    if isinstance(conn, sqlite3.Connection):
        conn.execute("PRAGMA secure_delete=ON")
    for thread in sorted(threads):
        checkpointer.delete_thread(thread)
    if isinstance(conn, sqlite3.Connection) and threads:
        conn.commit()
        conn.execute("VACUUM")
    return len(threads)


def run_request(graph: CompiledStateGraph, request: str, *, run_id: str | None = None, user_id: str = "local",
                callbacks: Sequence[BaseCallbackHandler] = (), recursion_limit: int = 100,
                on_event: EventSink | None = None, private: bool = False) -> RunResult:
    """Invoke ``graph`` on ``request`` under thread ``run_id`` (new when None) and collect the result.

    ``private`` keeps every model call of the run on tiers cleared for private data (and its resumes).

    A run that interrupts for a human comes back with ``status='waiting'``; continue it with resume_run. A run
    that produced nothing usable, or ended on a run-wide error (a budget with ``on_exceed = "raise"``), comes
    back ``failed`` with ``errors`` saying why; it never raises for those.
    ``on_event`` receives node updates, model tokens and questions (graphs.events) as they happen.
    """
    text = check_request(request)
    run_id = run_id or uuid.uuid4().hex
    return _drive(graph, {"request": text, "user_id": user_id, "private": private}, run_id, user_id, callbacks,
                  recursion_limit, on_event, private)


def resume_run(graph: CompiledStateGraph, run_id: str, *, answer: str | None = None,
               callbacks: Sequence[BaseCallbackHandler] = (), recursion_limit: int = 100,
               on_event: EventSink | None = None) -> RunResult:
    """Continue run ``run_id`` from its last checkpoint: answer its question, or finish a run that crashed.

    Subtasks that finished before the crash are not run again; their results come from the checkpoint.
    """
    config = {"configurable": {"thread_id": run_id}}
    snapshot = graph.get_state(config)
    if not snapshot.values and not snapshot.next:
        raise RunNotFoundError(f"no run {run_id!r} in this checkpointer")
    waiting = bool(snapshot.interrupts) or any(t.interrupts for t in snapshot.tasks)
    if waiting and answer is None:
        raise RunNotFoundError(f"run {run_id} is waiting for an answer: pass --answer")
    if not waiting and answer is not None:
        raise RunNotFoundError(f"run {run_id} is not waiting for an answer")
    user_id = str(snapshot.values.get("user_id", "local"))
    finished = not waiting and not snapshot.next  # nothing left to run: the result is the one the run ended with
    command = Command(resume=answer) if waiting else None
    return _drive(graph, command, run_id, user_id, callbacks, recursion_limit, on_event,
                  bool(snapshot.values.get("private")), finished)


def _drive(graph: CompiledStateGraph, graph_input: Any, run_id: str, user_id: str,
           callbacks: Sequence[BaseCallbackHandler], recursion_limit: int, on_event: EventSink | None,
           private: bool = False, already_finished: bool = False) -> RunResult:
    """The one execution path of a run and of its resumes: invoke or stream, then build the RunResult."""
    recorder = ModelCallRecorder()
    config = {"configurable": {"thread_id": run_id}, "callbacks": [recorder, *callbacks],
              "recursion_limit": recursion_limit, "run_name": "tierflow.run",
              "metadata": RunContext(run_id=run_id, user_id=user_id, private=private).to_metadata()}
    # "sync": a step's checkpoint is on disk before the next step starts, so a crash loses at most one step.
    durability = "sync" if graph.checkpointer is not None else None
    started = time.perf_counter()
    fatal: str | None = None
    state: dict[str, Any] = {}
    try:
        if on_event is None:
            state = graph.invoke(graph_input, config, durability=durability)
        else:
            state = _streamed(graph, graph_input, config, on_event, durability)
    except RUN_ENDING_ERRORS as exc:  # the run stops here; what it finished stays checkpointed
        fatal = f"{type(exc).__name__}: {exc}"
    elapsed = time.perf_counter() - started
    interrupts = state.get("__interrupt__") or []
    if graph.checkpointer is not None:  # the thread's whole state (a resumed run returns only what it added)
        state = {**graph.get_state({"configurable": {"thread_id": run_id}}).values, **state}
    answer = str(state.get("answer", "")) if fatal is None else ""
    errors = [*state.get("errors", []), *([fatal] if fatal else [])]
    status = _status(state, bool(interrupts), fatal is not None, answer)
    if status == "failed":
        errors += [f"model call on tier {c.tier} (rule {c.rule or 'direct'}) failed: {c.error}"
                   for c in recorder.calls if c.error]
        if not errors:
            errors.append("the graph produced no answer")
    return RunResult(
        answer=answer,
        intent=state.get("intent"),
        plan=state.get("plan"),
        pattern=state.get("pattern"),
        model_calls=recorder.calls,
        run_id=run_id,
        elapsed_s=round(elapsed, 3),
        results=state.get("results", []),
        notes=state.get("notes", []),
        status=status,
        errors=list(dict.fromkeys(errors)),
        interrupt={"id": interrupts[0].id, **_as_dict(interrupts[0].value)} if interrupts else None,
        already_finished=already_finished,
    )


def _status(state: dict[str, Any], waiting: bool, fatal: bool, answer: str) -> RunStatus:
    """The run's outcome: the graph's own ``status`` when it sets one, else done iff it answered."""
    if waiting:
        return "waiting"
    if fatal:
        return "failed"
    declared = state.get("status")
    if declared in ("done", "failed", "partial"):
        return declared
    return "done" if answer.strip() else "failed"


def _as_dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {"question": str(value)}


def _streamed(graph: CompiledStateGraph, graph_input: Any, config: dict[str, Any], on_event: EventSink,
              durability: Any) -> dict[str, Any]:
    """Run with ``stream`` (updates of every node, nested teams included, and model tokens), return the state."""
    state: dict[str, Any] = {}
    for namespace, mode, data in graph.stream(graph_input, config, stream_mode=["updates", "messages", "values"],
                                              subgraphs=True, durability=durability):
        path = "/".join(part.split(":")[0] for part in namespace)
        if mode == "values" and not namespace:
            state = dict(data)
        elif mode == "updates":
            for node, update in (data or {}).items():
                if node == "__interrupt__":
                    for item in update:
                        on_event(InterruptEvent(graph=path, value=_as_dict(item.value)))
                    state["__interrupt__"] = update
                else:
                    on_event(NodeEvent(graph=path, node=node, keys=sorted(update) if isinstance(update, dict) else []))
        elif mode == "messages":
            chunk, meta = data
            text = getattr(chunk, "text", "") or ""
            if text:
                on_event(TokenEvent(graph=path, node=meta.get("langgraph_node", ""), text=text))
    return state
