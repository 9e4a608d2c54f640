"""The DBOS executor: runs and eval units as durable DBOS workflows that worker processes share.

One run is one workflow (``tierflow.run``) whose id is the run id (a later answer to its question is the workflow
``RUN_ID~N``). Inside it every routed tier call and every tool call is a workflow of its own (``tierflow.call``)
keyed by the call's identity: the run id, the LangGraph task that made it (its checkpoint namespace, the same when
a recovered run re-executes that task), the call's ordinal within the task and a digest of its input. DBOS's own
steps are numbered in call order, which parallel graph branches do not keep, so calls are keyed instead: a
recovered run gets each finished call's recorded result back without repeating it. A run's budget is what its
recorded model calls used, each once: a call records its charge with its result, so nothing is charged twice
however often the call is replayed. LangGraph checkpoints stay in the graph's checkpointer, and a
recovered run continues from its last checkpoint.

Tier capacity: a tier with ``max_concurrency`` or ``rate_limit`` gets a DBOS queue with those limits, and every
call to it is enqueued there, so the limits hold across all workers (a limited in-process tier also runs one call
at a time per worker). Workers write a heartbeat (table ``tierflow_workers``); a worker silent for ``dead_after_s`` is
declared dead by a live one, which hands its pending workflows back to their queues (DBOS's recovery of an
executor's workflows); a worker that finds itself declared dead exits instead of running on.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
import os
import pickle
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from langgraph.graph.state import CompiledStateGraph

from tierflow.graphs.events import EventSink
from tierflow.graphs.executor import ExecutorConfig, GraphBuilder, RunSpec, drive_durably
from tierflow.graphs.runner import RequestError, RunNotFoundError, RunResult
from tierflow.runtimes.cost import call_cost, tier_price
from tierflow.runtimes.errors import TierUnavailableError
from tierflow.runtimes.journal import journaled
from tierflow.runtimes.registry import TierRegistry

try:
    import sqlalchemy as sa
    from dbos import DBOS, DBOSClient, DBOSConfig, SetWorkflowID
    from dbos._error import DBOSWorkflowCancelledError
except ImportError as exc:  # an optional extra: say how to get it instead of a traceback
    raise RequestError(f"the DBOS executor needs the dbos extra (pip install 'tierflow[dbos]'): {exc}") from exc

T = TypeVar("T")
APP_NAME = "tierflow"
# Every process that shares a database must agree on it: bump it when a workflow's name or arguments change.
APP_VERSION = "tierflow-executor-1"
RUN_WORKFLOW = "tierflow.run"
CALL_WORKFLOW = "tierflow.call"
JOB_WORKFLOW = "tierflow.job"
RUNS_QUEUE = "tierflow-runs"
EVALS_QUEUE = "tierflow-evals"
_ORPHANED = "orphaned"
log = logging.getLogger("tierflow.executor")


def tier_queue(tier: str) -> str:
    """The DBOS queue of a tier that declares ``max_concurrency`` or ``rate_limit``."""
    return f"tierflow-tier-{tier}"


def _detached(fn: Callable[[], T]) -> T:
    """Run ``fn`` outside the calling workflow: DBOS sees a top-level caller, not a (positional) child step."""
    return contextvars.Context().run(fn)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _task_namespace() -> str:
    """The LangGraph task making the call (stable when a recovered run re-executes it), or '' outside a graph."""
    try:
        from langgraph.config import get_config

        return str(get_config().get("configurable", {}).get("checkpoint_ns", ""))
    except RuntimeError:
        return ""


def _portable(error: Exception, tier: str | None) -> Exception:
    """``error`` if it survives pickling (DBOS stores outcomes pickled), else a tier error saying what it was."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        text = f"{type(error).__name__}: {error}"
        return TierUnavailableError(tier, text) if tier else RuntimeError(text)


# ----- workflows (registered at import; every process imports this module before DBOS launches) ----------------


@DBOS.workflow(name=RUN_WORKFLOW)
def _run_workflow(spec: dict[str, Any]) -> dict[str, Any]:
    return _active().run_body(spec)


@DBOS.workflow(name=CALL_WORKFLOW)
def _call_workflow(key: str, kind: str, payload: Any) -> tuple[Any, ...]:
    return _active().call_body(key, kind, payload)


@DBOS.workflow(name=JOB_WORKFLOW)
def _job_workflow(kind: str, payload: dict[str, Any]) -> Any:
    handler = _JOB_HANDLERS.get(kind)
    if handler is None:
        raise RequestError(f"no handler for job kind {kind!r} in this worker")
    return handler(payload)


_JOB_HANDLERS: dict[str, Callable[[dict[str, Any]], Any]] = {}


def register_job(kind: str, handler: Callable[[dict[str, Any]], Any]) -> None:
    """Let workers execute jobs of ``kind`` (e.g. eval units): ``handler(payload)`` returns the stored result."""
    _JOB_HANDLERS[kind] = handler


# ----- the store: heartbeats, circuits -------------------------------------------------------------


def _engine_url(url: str) -> sa.URL:
    parsed = sa.make_url(url)
    return parsed.set(drivername="postgresql+psycopg") if parsed.drivername.startswith("postgres") else parsed


class Store:
    """tierflow's own tables in the DBOS system database: worker heartbeats and tier circuits."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(_engine_url(url), pool_pre_ping=False, pool_recycle=600)
        self.sqlite = self.engine.dialect.name == "sqlite"
        self.now = "((julianday('now') - 2440587.5) * 86400.0)" if self.sqlite \
            else "extract(epoch from clock_timestamp())"
        statements = [
            "CREATE TABLE IF NOT EXISTS tierflow_workers (executor_id TEXT PRIMARY KEY, host TEXT, pid INTEGER, "
            "role TEXT, state TEXT, started_at DOUBLE PRECISION, last_seen DOUBLE PRECISION)",
            "CREATE TABLE IF NOT EXISTS tierflow_circuits (tier TEXT PRIMARY KEY, failures INTEGER NOT NULL, "
            "opened_at DOUBLE PRECISION, last_error TEXT, updated_at DOUBLE PRECISION)",
        ]
        with self.engine.begin() as conn:
            if not self.sqlite:  # workers starting together must not race on CREATE TABLE
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(741852963)"))
            for statement in statements:
                conn.execute(sa.text(statement))

    def _run(self, sql: str, **params: Any) -> sa.CursorResult[Any]:
        with self.engine.begin() as conn:
            return conn.execute(sa.text(sql.replace("{now}", self.now)), params)

    def beat(self, executor_id: str, role: str) -> bool:
        """Record that ``executor_id`` is alive; False when another worker has declared it dead."""
        row = self._run("SELECT state FROM tierflow_workers WHERE executor_id = :id", id=executor_id).first()
        if row is not None and row[0] == "dead":
            return False
        self._run("INSERT INTO tierflow_workers VALUES (:id, :host, :pid, :role, 'alive', {now}, {now}) "
                  "ON CONFLICT (executor_id) DO UPDATE SET last_seen = {now}, state = 'alive', pid = :pid, "
                  "host = :host, role = :role", id=executor_id, host=socket.gethostname(), pid=os.getpid(), role=role)
        return True

    def revive(self, executor_id: str) -> None:
        """A process starting under an executor id takes it over, even one declared dead earlier."""
        self._run("DELETE FROM tierflow_workers WHERE executor_id = :id", id=executor_id)

    def stopped(self, executor_id: str) -> None:
        self._run("UPDATE tierflow_workers SET state = 'stopped' WHERE executor_id = :id", id=executor_id)

    def claim_dead(self, dead_after_s: float) -> list[str]:
        """Executors silent for ``dead_after_s``, each declared dead by exactly one caller (this one, if listed)."""
        stale = [r[0] for r in self._run("SELECT executor_id FROM tierflow_workers WHERE state = 'alive' AND "
                                         "last_seen < {now} - :age", age=dead_after_s)]
        return [executor for executor in stale
                if self._run("UPDATE tierflow_workers SET state = 'dead' WHERE executor_id = :id AND "
                             "state = 'alive' AND last_seen < {now} - :age", id=executor,
                             age=dead_after_s).rowcount == 1]

    def workers(self) -> list[dict[str, Any]]:
        """Every process that has worked on this database, with seconds since its last heartbeat."""
        rows = self._run("SELECT executor_id, host, pid, role, state, {now} - last_seen FROM tierflow_workers "
                         "ORDER BY executor_id")
        return [{"executor_id": r[0], "host": r[1], "pid": r[2], "role": r[3], "state": r[4],
                 "silent_s": round(float(r[5]), 1)} for r in rows]

    def circuit_failed(self, tier: str, threshold: int, error: str) -> None:
        """Count a failure of ``tier``; the ``threshold``-th in a row (or any while open) opens its circuit now."""
        self._run("INSERT INTO tierflow_circuits VALUES (:tier, 1, CASE WHEN :threshold <= 1 THEN {now} END, "
                  ":error, {now}) ON CONFLICT (tier) DO UPDATE SET failures = tierflow_circuits.failures + 1, "
                  "opened_at = CASE WHEN tierflow_circuits.failures + 1 >= :threshold OR "
                  "tierflow_circuits.opened_at IS NOT NULL THEN {now} END, last_error = :error, updated_at = {now}",
                  tier=tier, threshold=threshold, error=error[:500])

    def circuit_ok(self, tier: str) -> None:
        self._run("UPDATE tierflow_circuits SET failures = 0, opened_at = NULL, last_error = NULL, "
                  "updated_at = {now} WHERE tier = :tier", tier=tier)

    def close(self) -> None:
        self.engine.dispose()


class SharedCircuitTable:
    """The router's :class:`SharedCircuits` over ``tierflow_circuits``; reads are cached for ``refresh_s``."""

    def __init__(self, store: Store, refresh_s: float = 0.5) -> None:
        self.store = store
        self.refresh_s = refresh_s
        self._rows: dict[str, tuple[int, float | None]] = {}
        self._read_at = -1e9  # monotonic time of the last read
        self._db_now = 0.0  # the database's clock at that read
        self._lock = threading.Lock()

    def _fresh(self) -> None:
        with self._lock:
            if time.monotonic() - self._read_at < self.refresh_s:
                return
        rows = self.store._run("SELECT tier, failures, opened_at, {now} FROM tierflow_circuits").all()
        with self._lock:
            self._rows = {r[0]: (int(r[1]), r[2]) for r in rows}
            self._db_now = float(rows[0][3]) if rows else 0.0  # no rows: no circuit is open
            self._read_at = time.monotonic()

    def opened_for(self, tier: str) -> float | None:
        """Seconds since ``tier``'s circuit opened, by the database clock (None: closed)."""
        self._fresh()
        with self._lock:
            opened_at = self._rows.get(tier, (0, None))[1]
            return None if opened_at is None else self._db_now + (time.monotonic() - self._read_at) - opened_at

    def failed(self, tier: str, threshold: int, error: str) -> None:
        self.store.circuit_failed(tier, threshold, error)
        with self._lock:
            self._read_at = -1e9

    def succeeded(self, tier: str) -> None:
        self._fresh()
        with self._lock:
            failures, opened_at = self._rows.get(tier, (0, None))
        if failures or opened_at is not None:  # a healthy tier costs no write per call
            self.store.circuit_ok(tier)
            with self._lock:
                self._read_at = -1e9


# ----- the journal: one per execution of a run workflow -----------------------------------------------------


class DbosJournal:
    """Keys, runs or replays, and charges the calls of one run (see the module docstring)."""

    def __init__(self, executor: DbosExecutor, run_id: str, workflow_id: str) -> None:
        self.executor = executor
        self.run_id = run_id
        self.workflow_id = workflow_id
        self._ordinals: defaultdict[tuple[str, str], int] = defaultdict(int)
        self._usage: dict[str, tuple[int, float]] = {}
        self._charged: defaultdict[str, set[str]] = defaultdict(set)
        self._lock = threading.Lock()
        self._checked_at = 0.0  # when the run's cancellation was last looked at

    def _key(self, kind: str, digest: str) -> str:
        namespace = _task_namespace()
        with self._lock:
            ordinal = self._ordinals[(kind, namespace)]
            self._ordinals[(kind, namespace)] += 1
        return f"{self.run_id}:{kind}:{_digest(namespace)[:10]}:{ordinal}:{digest}"

    def model_call(self, tier: str, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any],
                   call: Callable[[], ChatResult]) -> tuple[ChatResult, str]:
        """A tier call as a keyed call workflow, on the tier's queue when the tier has capacity limits."""
        digest = _digest([tier, [[m.type, m.content, m.additional_kwargs] for m in messages], stop, kwargs])
        key = self._key("model", digest)
        queue = tier_queue(tier) if tier in self.executor.limited_tiers else None
        return self.executor.call(self, key, "model", (tier, messages, stop, kwargs), call, queue), key

    def tool_call(self, name: str, args: dict[str, Any], call: Callable[[], T]) -> T:
        """A tool call as a keyed call workflow: a recovered run gets its recorded result back."""
        key = self._key("tool", _digest([name, args]))
        return self.executor.call(self, key, "tool", (name, args), call, None)

    def charge(self, run_id: str, key: str, tokens: int, cost: float) -> None:
        """Count call ``key`` once: a call recorded before this execution is in the seed, a new one is added."""
        self.usage(run_id)
        with self._lock:
            if key not in self._charged[run_id]:
                self._charged[run_id].add(key)
                seen_tokens, seen_cost = self._usage[run_id]
                self._usage[run_id] = (seen_tokens + tokens, seen_cost + cost)

    def usage(self, run_id: str) -> tuple[int, float]:
        """What ``run_id``'s recorded model calls used, read from the database once per execution."""
        with self._lock:
            known = self._usage.get(run_id)
        if known is None:
            charges = _detached(lambda: recorded_charges(DBOS, run_id))
            with self._lock:
                if run_id not in self._usage:
                    self._charged[run_id] = set(charges)
                    self._usage[run_id] = (sum(t for t, _ in charges.values()), sum(c for _, c in charges.values()))
                known = self._usage[run_id]
        return known

    def cancelled(self) -> bool:
        """Whether the run's workflow was cancelled; asked at most every half second."""
        now = time.monotonic()
        with self._lock:
            if now - self._checked_at < 0.5:
                return False
            self._checked_at = now
        status = _detached(lambda: DBOS.get_workflow_status(self.workflow_id))
        return status is not None and status.status == "CANCELLED"


def recorded_charges(client: Any, run_id: str) -> dict[str, tuple[int, float]]:
    """Tokens and cost of each recorded model call of ``run_id``, by call key (DBOSClient, or DBOS in a worker)."""
    found = client.list_workflows(workflow_id_prefix=f"{run_id}:model:", name=CALL_WORKFLOW, status="SUCCESS",
                                  load_input=False, load_output=True)
    return {w.workflow_id: tuple(w.output[2]) for w in found
            if isinstance(w.output, tuple) and len(w.output) == 3}


# ----- the executor ----------------------------------------------------------------------------------------


@dataclass
class _Local:
    """What a run started in this process has that a recovering worker does not: the caller's hooks."""

    graph: CompiledStateGraph
    callbacks: Sequence[BaseCallbackHandler] = ()
    on_event: EventSink | None = None


_ACTIVE: DbosExecutor | None = None


def _active() -> DbosExecutor:
    if _ACTIVE is None:
        raise RequestError("the DBOS executor is not started in this process")
    return _ACTIVE


class DbosExecutor:
    """This process's part in the DBOS executor: DBOS launched, queues registered, heartbeats, the journal."""

    def __init__(self, config: ExecutorConfig, home: Path, *, build: GraphBuilder, registry: TierRegistry,
                 worker_id: str | None = None, role: str = "cli", concurrency: int = 1,
                 queues: Iterable[str] | None = None) -> None:
        self.config = config
        self.url = config.url(home)
        self.build = build
        self.registry = registry
        self.role = role
        self.concurrency = concurrency
        self.executor_id = worker_id or f"{role}-{socket.gethostname()}-{os.getpid()}"
        self.limited_tiers = {name for name in registry.names
                              if registry.config(name).max_concurrency or registry.config(name).rate_limit}
        wanted = [RUNS_QUEUE, EVALS_QUEUE] if role == "worker" else []
        wanted += [tier_queue(t) for t in sorted(self.limited_tiers)]
        self.queues = list(queues) if queues is not None else wanted
        self._closures: dict[str, Callable[[], Any]] = {}
        self._local: dict[str, _Local] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.store: Store
        self.circuits: SharedCircuitTable | None = None
        self.started = False

    # -- lifecycle

    def start(self) -> DbosExecutor:
        """Launch DBOS in this process (one executor per process), register queues, start heartbeats."""
        global _ACTIVE
        if _ACTIVE is not None:
            raise RequestError("a DBOS executor is already running in this process")
        _quiet_dbos()
        if self.url.startswith("sqlite:///"):
            Path(self.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        DBOS.migrate(self.url)  # creates the database and DBOS's tables before tierflow's own go in
        self.store = Store(self.url)
        self.circuits = SharedCircuitTable(self.store)
        self.store.revive(self.executor_id)
        self.store.beat(self.executor_id, self.role)  # before launch: a worker that dies at once is still found
        DBOS(config=DBOSConfig(name=APP_NAME, system_database_url=self.url, executor_id=self.executor_id,
                               application_version=APP_VERSION, log_level="WARNING",
                               sys_db_pool_size=max(10, 4 * self.concurrency),
                               # no ping per checkout (a round trip per transaction, ~40% of a call's cost here):
                               # a connection the server dropped fails once, is discarded, and DBOS retries
                               db_engine_kwargs={"pool_pre_ping": False, "pool_recycle": 600}))
        DBOS.listen_queues(self.queues)
        _ACTIVE = self
        try:
            DBOS.launch()
            self._register_queues()
        except BaseException:
            _ACTIVE = None
            DBOS.destroy()
            raise
        self.started = True
        self._spawn(self._heartbeat, "tierflow-heartbeat")
        return self

    def _register_queues(self) -> None:
        poll = self.config.poll_s
        DBOS.register_queue(RUNS_QUEUE, worker_concurrency=self.concurrency, polling_interval_sec=poll,
                            on_conflict="always_update")
        DBOS.register_queue(EVALS_QUEUE, worker_concurrency=self.concurrency, polling_interval_sec=poll,
                            on_conflict="always_update")
        for tier in sorted(self.limited_tiers):
            config = self.registry.config(tier)
            limiter = {"limit": config.rate_limit.calls, "period": config.rate_limit.period_s} \
                if config.rate_limit else None
            DBOS.register_queue(tier_queue(tier), global_concurrency=config.max_concurrency, limiter=limiter,
                                worker_concurrency=1 if config.kind != "openai" else None,
                                polling_interval_sec=poll, on_conflict="always_update")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, daemon=True, name=name)
        thread.start()
        self._threads.append(thread)

    def _heartbeat(self) -> None:
        """Say this process is alive; workers also declare silent ones dead and hand back their workflows."""
        while not self._stop.wait(self.config.heartbeat_s):
            try:
                if not self.store.beat(self.executor_id, self.role):
                    log.error("worker %s was declared dead by another worker (its runs were recovered); exiting",
                              self.executor_id)
                    os._exit(3)  # fencing: never run on beside the worker that took the runs over
                if self.role == "worker":
                    for dead in self.store.claim_dead(self.config.dead_after_s):
                        handles = DBOS._recover_pending_workflows([dead])
                        log.warning("worker %s is silent: %d pending workflows handed back to their queues",
                                    dead, len(handles))
            except Exception as exc:  # the database may be briefly unreachable; the next beat retries
                log.warning("heartbeat failed: %s", exc)

    def stop(self) -> None:
        """Stop heartbeats and DBOS; the executor id is marked stopped unless it still owns pending workflows."""
        global _ACTIVE
        self._stop.set()
        if self.started:
            with contextlib.suppress(Exception):
                pending = DBOS.list_workflows(executor_id=self.executor_id, status="PENDING", load_input=False,
                                              load_output=False)
                if not pending:
                    self.store.stopped(self.executor_id)
            DBOS.destroy(workflow_completion_timeout_sec=0)
            self.store.close()
        _ACTIVE = None
        self.started = False

    def serve(self) -> None:
        """Block until stopped (Ctrl-C or SIGTERM): DBOS's queue threads do the work."""
        try:
            while not self._stop.wait(0.5):
                pass
        finally:
            self.stop()

    # -- runs

    def execute(self, spec: RunSpec, graph: CompiledStateGraph, callbacks: Sequence[BaseCallbackHandler] = (),
                on_event: EventSink | None = None) -> RunResult:
        """Execute ``spec`` here as a run workflow (a new one for an answer); recovered by a worker if we die."""
        workflow_id = spec.run_id if spec.request is not None else self.next_workflow_id(spec.run_id)
        self._local[workflow_id] = _Local(graph, callbacks, on_event)
        try:
            def start() -> dict[str, Any]:
                with SetWorkflowID(workflow_id):
                    return _run_workflow(spec.model_dump())
            output = _detached(start)
        finally:
            self._local.pop(workflow_id, None)
        return RunResult.model_validate(output["result"])

    def next_workflow_id(self, run_id: str) -> str:
        """The id of the next workflow of ``run_id`` (its answers and continuations: ``RUN_ID~N``)."""
        return f"{run_id}~{len(_detached(lambda: run_workflows(DBOS, run_id)))}"

    def adopt(self, workflow_id: str, graph: CompiledStateGraph, callbacks: Sequence[BaseCallbackHandler] = (),
              on_event: EventSink | None = None, timeout_s: float | None = None) -> RunResult:
        """Wait for run workflow ``workflow_id``; if its process is dead, recover it (this process may take it)."""
        status = DBOS.get_workflow_status(workflow_id)
        if status is None:
            raise RunNotFoundError(f"no run workflow {workflow_id!r}")
        self._local[workflow_id] = _Local(graph, callbacks, on_event)
        try:
            if status.status == "PENDING" and status.executor_id and not self.is_alive(status.executor_id):
                DBOS._recover_pending_workflows([status.executor_id])
            handle = DBOS.retrieve_workflow(workflow_id)
            output = _wait(lambda: handle.get_result(polling_interval_sec=self.config.poll_s), timeout_s)
        finally:
            self._local.pop(workflow_id, None)
        return RunResult.model_validate(output["result"])

    def is_alive(self, executor_id: str) -> bool:
        """Whether ``executor_id`` beat recently (a process on this host is also checked by its pid)."""
        for worker in self.store.workers():
            if worker["executor_id"] == executor_id:
                if worker["state"] != "alive" or worker["silent_s"] > self.config.dead_after_s:
                    return False
                if worker["host"] == socket.gethostname():
                    return _pid_alive(int(worker["pid"]))
                return True
        return False

    def run_body(self, spec_data: dict[str, Any]) -> dict[str, Any]:
        """The run workflow: rebuild (or take) the graph, install the journal, drive the run durably."""
        workflow_id = str(DBOS.workflow_id)
        spec = RunSpec.model_validate(spec_data)
        local = self._local.get(workflow_id)
        graph = local.graph if local else self.build(spec)
        journal = DbosJournal(self, spec.run_id, workflow_id)
        with journaled(journal):
            result = drive_durably(graph, spec, local.callbacks if local else (), local.on_event if local else None)
        tokens, cost = journal.usage(spec.run_id)
        return {"result": result.model_dump(mode="json"), "worker": self.executor_id,
                "usage": {"tokens": tokens, "cost": round(cost, 6)}}

    # -- calls

    def call(self, journal: DbosJournal, key: str, kind: str, payload: Any, fn: Callable[[], T],
             queue: str | None) -> T:
        """Run ``fn`` as the call workflow ``key`` (or return its recorded outcome); stops a cancelled run."""
        if journal.cancelled():
            raise DBOSWorkflowCancelledError(f"run workflow {journal.workflow_id} was cancelled")
        for attempt in range(4):
            call_key = key if attempt == 0 else f"{key}~{attempt}"
            self._closures[call_key] = fn
            try:
                tag, value, *_ = _detached(lambda k=call_key: self._invoke(k, kind, payload, queue))
            finally:
                self._closures.pop(call_key, None)
            if tag == _ORPHANED:  # a dead worker's call, recovered where its code was not: make it anew
                continue
            if tag == "error":
                raise value
            return value
        raise RuntimeError(f"call {key} could not be executed")

    def _invoke(self, key: str, kind: str, payload: Any, queue: str | None) -> tuple[Any, ...]:
        with SetWorkflowID(key):
            if queue is None:
                return _call_workflow(key, kind, payload)
            handle = _queue(queue).enqueue(_call_workflow, key, kind, payload)
        return handle.get_result(polling_interval_sec=max(0.01, min(self.config.poll_s / 2, 0.05)))

    def call_body(self, key: str, kind: str, payload: Any) -> tuple[Any, ...]:
        """The call workflow: the caller's own code when it is in this process, else rebuilt from the payload.

        A model call's outcome carries its charge (tokens, cost): what the run's budget counts, once per key.
        """
        fn = self._closures.get(key)
        tier = payload[0] if kind == "model" else None
        if fn is None and kind == "model":
            _, messages, stop, kwargs = payload

            def fn() -> ChatResult:
                return self.registry.chat_model(tier)._generate(messages, stop=stop, **kwargs)
        if fn is None:
            return _ORPHANED, None
        try:
            value = fn()
        except Exception as exc:
            return "error", _portable(exc, tier)
        if kind != "model":
            return "ok", value
        usage = getattr(value.generations[0].message, "usage_metadata", None) or {}
        tokens_in, tokens_out = int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
        cost = call_cost(tier_price(self.registry.config(tier)), tokens_in, tokens_out).total
        return "ok", value, (tokens_in + tokens_out, cost)


def _queue(name: str) -> Any:
    queue = DBOS.retrieve_queue(name)
    if queue is None:
        raise RequestError(f"DBOS queue {name!r} is not registered")
    return queue


def _wait(fn: Callable[[], T], timeout_s: float | None) -> T:
    if timeout_s is None:
        return fn()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(f"no result after {timeout_s:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _quiet_dbos() -> None:
    logging.getLogger("dbos").setLevel(logging.WARNING)


# ----- client side: submit, status, list, cancel (no DBOS launch needed) -----------------------------------


class DbosClient:
    """Queue runs and look at them from any process that can reach the database (``tierflow submit`` & co)."""

    def __init__(self, config: ExecutorConfig, home: Path) -> None:
        _quiet_dbos()
        self.config = config
        self.url = config.url(home)
        if self.url.startswith("sqlite:///"):
            Path(self.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        DBOS.migrate(self.url)  # creates the system tables when no worker has yet
        self.client = DBOSClient(system_database_url=self.url, application_name=APP_NAME)
        self.store = Store(self.url)

    def close(self) -> None:
        self.client.destroy()
        self.store.close()

    def submit(self, spec: RunSpec, queue: str = RUNS_QUEUE) -> str:
        """Enqueue ``spec``; returns the workflow id (the run id for a new run). Submitting it again is a no-op."""
        workflow_id = spec.run_id if spec.request is not None else f"{spec.run_id}~{len(self.workflows(spec.run_id))}"
        self.client.enqueue({"queue_name": queue, "workflow_name": RUN_WORKFLOW, "workflow_id": workflow_id,
                             "app_version": APP_VERSION}, spec.model_dump())
        return workflow_id

    def enqueue_job(self, kind: str, payload: dict[str, Any], workflow_id: str, queue: str = EVALS_QUEUE) -> None:
        """Enqueue a job (an eval unit); an id already enqueued keeps its first submission and result."""
        self.client.enqueue({"queue_name": queue, "workflow_name": JOB_WORKFLOW, "workflow_id": workflow_id,
                             "app_version": APP_VERSION}, kind, payload)

    def result(self, workflow_id: str, timeout_s: float | None = None) -> dict[str, Any]:
        """Wait for workflow ``workflow_id`` and return its output."""
        handle = self.client.retrieve_workflow(workflow_id)
        return _wait(lambda: handle.get_result(polling_interval_sec=self.config.poll_s), timeout_s)

    def workflows(self, run_id: str) -> list[Any]:
        """The run workflows of ``run_id``, oldest first."""
        return run_workflows(self.client, run_id)

    def status(self, run_id: str) -> dict[str, Any]:
        """Where ``run_id`` stands: queued, running, waiting, done, partial, failed or cancelled; which worker."""
        found = self.workflows(run_id)
        if not found:
            raise RunNotFoundError(f"no run {run_id!r} in {self._where()}")
        return describe(found[-1], attempts=len(found)) | {"usage": self.usage(run_id)}

    def usage(self, run_id: str) -> dict[str, Any]:
        """What the run's recorded model calls used: its budget as charged, each call once."""
        charges = recorded_charges(self.client, run_id)
        return {"tokens": sum(t for t, _ in charges.values()), "cost": round(sum(c for _, c in charges.values()), 6),
                "charged_calls": len(charges)}

    def runs(self, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The latest ``limit`` runs (their newest workflow each), optionally only those in ``status``."""
        found = self.client.list_workflows(name=RUN_WORKFLOW, sort_desc=True, limit=limit * 4, load_output=True)
        latest: dict[str, dict[str, Any]] = {}
        for workflow in found:
            described = describe(workflow)
            latest.setdefault(described["run_id"], described)
        rows = [r for r in latest.values() if status is None or r["status"] == status]
        return rows[:limit]

    def cancel(self, run_id: str) -> str:
        """Cancel the run's newest workflow (queued or running); returns its workflow id."""
        found = self.workflows(run_id)
        if not found:
            raise RunNotFoundError(f"no run {run_id!r} in {self._where()}")
        latest = found[-1]
        if latest.status not in ("ENQUEUED", "DELAYED", "PENDING"):
            raise RequestError(f"run {run_id} has ended ({describe(latest)['status']}): nothing to cancel")
        self.client.cancel_workflow(latest.workflow_id)
        return latest.workflow_id

    def workers(self) -> list[dict[str, Any]]:
        return self.store.workers()

    def _where(self) -> str:
        return sa.make_url(self.url).render_as_string(hide_password=True)


def run_workflows(client: Any, run_id: str) -> list[Any]:
    """Run workflows of ``run_id`` (the run itself and its continuations ``RUN_ID~N``), oldest first.

    ``client`` is a DBOSClient or, inside a launched process, the DBOS class itself.
    """
    found = client.list_workflows(workflow_id_prefix=run_id, name=RUN_WORKFLOW, load_output=True)
    mine = [w for w in found if w.workflow_id == run_id or w.workflow_id.startswith(f"{run_id}~")]
    return sorted(mine, key=lambda w: (w.created_at or 0, w.workflow_id))


_STATES = {"ENQUEUED": "queued", "DELAYED": "queued", "PENDING": "running", "ERROR": "failed",
           "CANCELLED": "cancelled", "MAX_RECOVERY_ATTEMPTS_EXCEEDED": "failed"}


def describe(workflow: Any, attempts: int = 1) -> dict[str, Any]:
    """One run workflow as ``tierflow status`` and ``runs`` show it."""
    spec = (workflow.input or {}).get("args", [{}])[0] if workflow.input else {}
    output = workflow.output if isinstance(workflow.output, dict) else {}
    result = output.get("result") or {}
    status = result.get("status", "done") if workflow.status == "SUCCESS" else _STATES.get(workflow.status, "?")
    row: dict[str, Any] = {
        "run_id": spec.get("run_id") or workflow.workflow_id.split("~")[0], "workflow_id": workflow.workflow_id,
        "status": status, "worker": output.get("worker") or workflow.executor_id,
        "request": (spec.get("request") or "")[:80], "created_at": workflow.created_at,
        "updated_at": workflow.updated_at, "workflows": attempts,
    }
    if workflow.status == "SUCCESS":
        row.update(answer=result.get("answer", ""), errors=result.get("errors", []),
                   interrupt=result.get("interrupt"))
    if workflow.error is not None:
        row["error"] = f"{type(workflow.error).__name__}: {workflow.error}"
    return row
