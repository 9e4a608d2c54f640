"""Scale out: ``tierflow worker``, ``submit``, ``status``, ``runs``, ``cancel``, ``workers`` over the DBOS executor.

Also the executor choice of ``tierflow run`` and ``resume`` (:func:`execute`): ``[executor] kind = "dbos"`` runs
them as DBOS workflows in the calling process, recoverable by any worker that shares the database.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tierflow.console import err, exit_code, fail, offline_env
from tierflow.runtimes.errors import TierflowError

if TYPE_CHECKING:
    from langchain_core.callbacks import BaseCallbackHandler
    from langgraph.graph.state import CompiledStateGraph

    from tierflow.graphs.dbos_executor import DbosClient, DbosExecutor
    from tierflow.graphs.events import EventSink
    from tierflow.graphs.executor import GraphBuilder, RunSpec
    from tierflow.graphs.runner import RunResult
    from tierflow.runtimes.registry import TierRegistry
    from tierflow.runtimes.router import SharedCircuits
    from tierflow.settings import Settings

out = Console()
T = TypeVar("T")
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="settings TOML file (default: ./tierflow.toml)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
STATUSES = ("queued", "running", "waiting", "done", "partial", "failed", "cancelled")


# ----- wiring (used by `run`/`resume` too) ---------------------------------------------------------------------


def graph_builder(settings: Settings, registry: TierRegistry, config: Path | None = None,
                  circuits: Callable[[], SharedCircuits | None] = lambda: None) -> GraphBuilder:
    """Builds a run's graph from its spec, once per (graph, pattern, tier, confirm_plan); tiers load once.

    ``circuits`` gives the tier circuits the routers share with other workers (None: this process only).
    """
    from tierflow.app import build_deps, build_graph
    from tierflow.settings import load_settings, tier_overrides

    cache: dict[tuple[Any, ...], CompiledStateGraph] = {}
    lock = threading.Lock()

    def build(spec: RunSpec) -> CompiledStateGraph:
        key = (spec.graph, spec.pattern, spec.tier, spec.confirm_plan)
        with lock:
            if key not in cache:
                chosen = load_settings(config, **tier_overrides(spec.tier)) if spec.tier else settings
                deps = build_deps(chosen, registry=registry, classifier=_LazyIntents(chosen))
                deps.confirm_plan = spec.confirm_plan
                for agent in (deps.decomposer, deps.worker, deps.synthesizer):
                    state = getattr(agent.model, "shared_state", None)  # a TierRouter's, shared by its views
                    if state is not None:
                        state.shared_circuits = circuits()
                with _checkpointer_setup_lock(chosen.checkpointer):
                    cache[key] = build_graph(chosen, deps, spec.graph, spec.pattern)
            return cache[key]
    return build


class _LazyIntents:
    """The intent model, loaded on first use: a custom graph may never ask for it."""

    def __init__(self, settings: Settings) -> None:
        self.settings, self.model, self.lock = settings, None, threading.Lock()

    def classify(self, text: str) -> Any:
        with self.lock:  # runs of one worker share it: load it once
            if self.model is None:
                from tierflow.app import load_classifier

                self.model = load_classifier(self.settings)
        return self.model.classify(text)


@contextmanager
def _checkpointer_setup_lock(checkpointer: str) -> Iterator[None]:
    """Workers starting together create the PostgreSQL checkpoint tables one at a time (LangGraph's setup races)."""
    if not checkpointer.startswith(("postgres://", "postgresql://")):
        yield
        return
    import psycopg

    with psycopg.connect(checkpointer, autocommit=True) as conn:
        # try-lock in a loop: a session blocked in pg_advisory_lock would hold up the CREATE INDEX CONCURRENTLY
        # of LangGraph's setup in the session holding the lock, and neither would ever go on
        while not conn.execute("SELECT pg_try_advisory_lock(741852964)").fetchone()[0]:
            time.sleep(0.1)
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(741852964)")


def start_executor(settings: Settings, *, role: str, config: Path | None = None, worker_id: str | None = None,
                   concurrency: int | None = None, queues: Sequence[str] | None = None) -> DbosExecutor:
    """This process's DBOS executor, launched (call ``stop()`` when done)."""
    from tierflow.graphs.dbos_executor import DbosExecutor

    registry = settings.registry()
    executor: DbosExecutor | None = None
    build = graph_builder(settings, registry, config, circuits=lambda: executor.circuits if executor else None)
    executor = DbosExecutor(settings.executor, settings.home, build=build, registry=registry, worker_id=worker_id,
                            role=role, concurrency=concurrency or settings.executor.concurrency, queues=queues)
    return executor.start()


def execute(settings: Settings, spec: RunSpec, graph: CompiledStateGraph,
            callbacks: Sequence[BaseCallbackHandler] = (), on_event: EventSink | None = None,
            config: Path | None = None) -> RunResult:
    """Execute a prepared run (or resume) with the executor settings choose; the CLI's one path for both."""
    from tierflow.graphs.executor import InProcessExecutor

    if settings.executor.kind == "inprocess":
        return InProcessExecutor().execute(spec, graph, callbacks, on_event)
    executor = start_executor(settings, role="cli", config=config)
    try:
        if spec.request is not None:
            return executor.execute(spec, graph, callbacks, on_event)
        return _resume_durably(executor, spec, graph, callbacks, on_event)
    finally:
        executor.stop()


def _resume_durably(executor: DbosExecutor, spec: RunSpec, graph: CompiledStateGraph,
                    callbacks: Sequence[BaseCallbackHandler], on_event: EventSink | None) -> RunResult:
    """``tierflow resume`` of a DBOS run: wait for (or recover) one in progress, answer one waiting, or continue."""
    from dbos import DBOS

    from tierflow.graphs.dbos_executor import _detached, run_workflows
    from tierflow.graphs.runner import RunNotFoundError, RunResult

    found = _detached(lambda: run_workflows(DBOS, spec.run_id))
    latest = found[-1] if found else None
    if latest is not None and latest.status in ("PENDING", "ENQUEUED", "DELAYED"):
        if spec.answer is not None:
            raise RunNotFoundError(f"run {spec.run_id} is still running; answer it once it waits")
        return executor.adopt(latest.workflow_id, graph, callbacks, on_event)
    if latest is not None and latest.status == "SUCCESS":
        result = RunResult.model_validate(latest.output["result"])
        if result.status != "waiting":
            if spec.answer is not None:
                raise RunNotFoundError(f"run {spec.run_id} is not waiting for an answer")
            return result.model_copy(update={"already_finished": True})
        if spec.answer is None:
            raise RunNotFoundError(f"run {spec.run_id} is waiting for an answer: pass --answer")
    snapshot = graph.get_state({"configurable": {"thread_id": spec.run_id}})
    if latest is None and not snapshot.values and not snapshot.next:
        raise RunNotFoundError(f"no run {spec.run_id!r} in this checkpointer")
    return executor.execute(spec, graph, callbacks, on_event)  # a new workflow continues from the checkpoint


# ----- commands ---------------------------------------------------------------------------------------------


def _settings(config: Path | None) -> Settings:
    from tierflow.settings import load_settings

    return load_settings(config)


def _client(settings: Settings) -> DbosClient:
    from tierflow.graphs.dbos_executor import DbosClient

    return DbosClient(settings.executor, settings.home)


def worker(
    worker_id: Annotated[str | None, typer.Option("--worker-id", help="stable executor id of this worker "
                                                  "(default: worker-HOST-PID)")] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", min=1, help="runs this worker executes at "
                                                    "once (default: the executor.concurrency setting)")] = None,
    queues: Annotated[str | None, typer.Option("--queues", help="comma-separated: runs, evals, tiers "
                                               "(default: all)")] = None,
    config: ConfigOpt = None,
) -> None:
    """Start a worker: take queued runs, eval units and limited-tier calls from the shared database."""
    offline_env()
    from tierflow.graphs.dbos_executor import EVALS_QUEUE, RUNS_QUEUE, tier_queue

    try:
        settings = _settings(config)
        wanted = None
        if queues:
            names = [q.strip() for q in queues.split(",") if q.strip()]
            unknown = sorted(set(names) - {"runs", "evals", "tiers"})
            if unknown:
                raise typer.BadParameter(f"unknown queue(s) {unknown}: use runs, evals, tiers")
            registry = settings.registry()
            limited = [n for n in registry.names if registry.config(n).max_concurrency or registry.config(n).rate_limit]
            wanted = ([RUNS_QUEUE] if "runs" in names else []) + ([EVALS_QUEUE] if "evals" in names else []) \
                + ([tier_queue(t) for t in limited] if "tiers" in names else [])
        _register_eval_jobs(config)
        import tierflow.app  # noqa: F401  (heavy imports now, before taking work, not in the first run)

        executor = start_executor(settings, role="worker", config=config, worker_id=worker_id,
                                  concurrency=concurrency, queues=wanted)
    except TierflowError as exc:
        raise fail(str(exc), exit_code(exc)) from None
    signal.signal(signal.SIGTERM, lambda *_: executor._stop.set())
    err.print(f"worker {executor.executor_id} on {executor.url.split('@')[-1]}: queues {', '.join(executor.queues)}; "
              f"concurrency {executor.concurrency}", highlight=False, markup=False)
    try:
        executor.serve()
    except KeyboardInterrupt:
        executor.stop()


def _register_eval_jobs(config: Path | None) -> None:
    """Workers execute eval units too (``tierflow eval --executor dbos``)."""
    from tierflow.eval_cli import register_eval_jobs

    register_eval_jobs(config)


def submit(
    request: Annotated[str | None, typer.Argument(help="what you want done; - reads it from standard input")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="read the request from this file")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="run id (default: new); submitting an id again "
                                               "returns the first submission")] = None,
    user: Annotated[str, typer.Option("--user", help="user id the run belongs to")] = "local",
    private: Annotated[bool, typer.Option("--private", help="keep every model call on private-cleared tiers")] = False,
    graph: Annotated[str | None, typer.Option("--graph", help="your graph: package.module:function")] = None,
    tier: Annotated[str | None, typer.Option("--tier", help="tier for every agent of this run")] = None,
    pattern: Annotated[str | None, typer.Option("--pattern", help="force a collaboration pattern")] = None,
    confirm_plan: Annotated[bool, typer.Option("--confirm-plan", help="ask a human before running the plan "
                                               "(answer with: tierflow resume RUN_ID --answer ...)")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="block until the run ends and print its answer")] = False,
    timeout: Annotated[float | None, typer.Option("--timeout", help="with --wait: give up after this many "
                                                  "seconds (the run goes on)")] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Queue REQUEST for the workers and print its run id (``--wait``: block and print the answer)."""
    offline_env()
    from tierflow.graphs.executor import RunSpec
    from tierflow.graphs.requests import check_request
    from tierflow.graphs.runner import RunResult

    try:
        text = check_request(_HOOKS["read_request"](request, file))
        settings = _settings(config)
        if tier:
            settings.registry().validate([tier], who="--tier")
        spec = RunSpec(request=text, user_id=user, private=private, graph=graph, pattern=pattern, tier=tier,
                       confirm_plan=confirm_plan, **({"run_id": run_id} if run_id else {}))
        client = _client(settings)
        try:
            workflow_id = client.submit(spec)
            if not wait:
                print(json.dumps({"run_id": spec.run_id, "status": "queued"}) if as_json else spec.run_id)
                return
            if not as_json:
                err.print(f"queued {spec.run_id}; waiting…", highlight=False, markup=False)
            output = client.result(workflow_id, timeout_s=timeout)
        finally:
            client.close()
    except TimeoutError as exc:
        raise fail(f"{exc}; the run goes on: tierflow status {spec.run_id}", 1) from None
    except TierflowError as exc:
        raise fail(str(exc), exit_code(exc)) from None
    _HOOKS["print_result"](RunResult.model_validate(output["result"]), as_json)


def _with_client(config: Path | None, call: Callable[[Any], T]) -> T:
    """``call`` on a client of the configured executor database, closed after; errors exit with their code."""
    try:
        client = _client(_settings(config))
        try:
            return call(client)
        finally:
            client.close()
    except TierflowError as exc:
        raise fail(str(exc), exit_code(exc)) from None


def status(
    run_id: Annotated[str, typer.Argument(help="the run id")],
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Where RUN_ID stands: queued, running, waiting (for a human), done, partial, failed, cancelled; which worker."""
    row = _with_client(config, lambda client: client.status(run_id))
    if as_json:
        print(json.dumps(row, default=str))
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="dim")
    table.add_column()
    for key in ("run_id", "status", "worker", "request", "workflow_id", "workflows", "usage", "answer", "error"):
        if row.get(key) not in (None, ""):
            table.add_row(key, Text(str(row[key])))
    if row.get("interrupt"):
        table.add_row("question", Text(str(row["interrupt"].get("question"))))
    out.print(table)


def runs(
    status_filter: Annotated[str | None, typer.Option("--status", help="only runs in this state: "
                                                      + ", ".join(STATUSES))] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="at most this many, newest first")] = 50,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """List runs of the shared database, newest first, with state and worker."""
    if status_filter is not None and status_filter not in STATUSES:
        raise fail(f"--status must be one of {', '.join(STATUSES)}")
    rows = _with_client(config, lambda client: client.runs(status_filter, limit))
    if as_json:
        print(json.dumps(rows, default=str))
        return
    table = Table()
    for column in ("run id", "status", "worker", "request"):
        table.add_column(column)
    for row in rows:
        table.add_row(Text(row["run_id"]), row["status"], Text(str(row["worker"] or "")), Text(row["request"]))
    out.print(table)


def cancel(
    run_id: Annotated[str, typer.Argument(help="the run id")],
    config: ConfigOpt = None,
) -> None:
    """Cancel RUN_ID: a queued run never starts, a running one stops before its next model or tool call."""
    workflow_id = _with_client(config, lambda client: client.cancel(run_id))
    print(f"cancelled {workflow_id}")


def workers(as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Processes that work on the shared database: state (alive, dead, stopped) and seconds since a heartbeat."""
    rows = _with_client(config, lambda client: client.workers())
    if as_json:
        print(json.dumps(rows))
        return
    table = Table()
    for column in ("executor id", "role", "state", "host", "pid", "silent s"):
        table.add_column(column)
    for r in rows:
        table.add_row(Text(r["executor_id"]), r["role"], r["state"], Text(str(r["host"])), str(r["pid"]),
                      str(r["silent_s"]))
    out.print(table)


# What the main CLI lends these commands (handed over by register, so this module never imports it back).
_HOOKS: dict[str, Callable[..., Any]] = {}


def register(app: typer.Typer, *, read_request: Callable[..., str], print_result: Callable[..., None]) -> None:
    """Add the scale-out commands to the ``tierflow`` app, with the CLI's request reader and result printer."""
    _HOOKS.update(read_request=read_request, print_result=print_result)
    for command in (worker, submit, status, runs, cancel, workers):
        app.command(command.__name__)(command)
