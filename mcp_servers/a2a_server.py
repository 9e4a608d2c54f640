"""tierflow served over Agent2Agent (A2A): any A2A client can run a tierflow graph as a remote agent.

Built on the a2a-sdk's server classes (JSON-RPC binding, spec 1.0 method names and the 0.3 ones: ``message/send``,
``message/stream``, ``tasks/get``, ``tasks/cancel``). One A2A task is one tierflow run: the task id is the run id
(the checkpoint thread), so ``tierflow resume TASK_ID`` sees it too. Streaming maps node updates to ``working``
status updates and model tokens (text, not JSON) to chunks of the ``answer`` artifact, which the final answer then
replaces; a graph ``interrupt()`` (``--confirm-plan``) is ``input-required`` and the client's next message on the
task resumes the run. Tasks are kept in a SQLite file, so ``tasks/get`` answers after a restart. HTTP is guarded
like tierflow's MCP servers: loopback by default, a bearer token required elsewhere, Host/Origin checks, a bounded
request body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from a2a.helpers import new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.events import EventQueue
from a2a.server.owner_resolver import resolve_user_scope
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import TaskStore, TaskUpdater
from a2a.types import a2a_pb2 as pb
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.applications import Starlette

from tierflow.graphs.events import NodeEvent, RunEvent, TokenEvent
from tierflow.graphs.requests import MAX_REQUEST_CHARS, RequestError, RunNotFoundError
from tierflow.mcp_servers.serve import ASGIApp, BearerAuth, Scope, ServeError, is_loopback

if TYPE_CHECKING:
    from langchain_core.callbacks import BaseCallbackHandler
    from langgraph.graph.state import CompiledStateGraph

    from tierflow.graphs.runner import RunResult

TOKEN_ENV = "TIERFLOW_A2A_TOKEN"
DEFAULT_PORT = 8766
META_KEY = "tierflow"  # message/artifact metadata key for run facts (agents.a2a_client reads the same key)
ANSWER_ARTIFACT = "answer"
# Nodes whose model output is not answer text (the planner's JSON, peers' votes): not streamed into the answer.
NOT_ANSWER_NODES = frozenset({"plan", "vote"})
# JSON-RPC body limit: a request of MAX_REQUEST_CHARS characters, each up to 6 bytes JSON-escaped, plus envelope.
MAX_BODY_BYTES = MAX_REQUEST_CHARS * 6 + 64 * 1024
# A streamed task that had no event for this long gets a `working` update: SSE clients with short read timeouts
# (the a2a-sdk client's default is 5 s) stay connected while a model loads or thinks.
HEARTBEAT_S = 2.0
_TRACE_CONTEXT = TraceContextTextMapPropagator()


class RunCancelled(Exception):
    """Raised from the event sink inside a run whose task was cancelled: it stops the graph at its next event."""


# ----- runs ---------------------------------------------------------------------------------------


@dataclass
class GraphRuns:
    """How the server runs its graph: ``graph()`` returns it (waiting for a background build); ``callbacks()``
    adds tracing to each run and ``after_run()`` flushes it. Runs go through ``pool``, one at a time by default
    (in-process tiers are not shared); a cancelled run holds it until it stops at its next event.
    """

    graph: Callable[[], CompiledStateGraph]
    callbacks: Callable[[], Sequence[BaseCallbackHandler]] = lambda: ()
    after_run: Callable[[], None] | None = None
    user_id: str = "a2a"
    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="tierflow-a2a"))

    def start(self, request: str, run_id: str, on_event: Callable[[RunEvent], None], private: bool) -> RunResult:
        """A new run of ``request`` under thread ``run_id``."""
        from tierflow.graphs.runner import run_request

        try:
            return run_request(self.graph(), request, run_id=run_id, user_id=self.user_id,
                               callbacks=list(self.callbacks()), on_event=on_event, private=private)
        finally:
            if self.after_run is not None:
                self.after_run()

    def resume(self, run_id: str, answer: str | None, on_event: Callable[[RunEvent], None]) -> RunResult:
        """Continue run ``run_id`` with ``answer`` to its question, or (None) from its last checkpoint."""
        from tierflow.graphs.runner import resume_run

        try:
            return resume_run(self.graph(), run_id, answer=answer, callbacks=list(self.callbacks()),
                              on_event=on_event)
        finally:
            if self.after_run is not None:
                self.after_run()


# ----- the agent executor -------------------------------------------------------------------------


class TierflowExecutor(AgentExecutor):
    """Runs one tierflow run per A2A task; a task waiting for input is resumed by the next message on it."""

    def __init__(self, runs: GraphRuns) -> None:
        self.runs = runs
        self._cancelled: dict[str, threading.Event] = {}

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Start the task's run (or resume it) and publish its progress, tokens and outcome.

        A task waiting for input is resumed with the message's text; a task left ``working`` by a server that
        stopped mid-run is finished from its last checkpoint.
        """
        text = context.get_user_input().strip()
        task = context.current_task
        if task is None:
            task = pb.Task(id=str(context.task_id), context_id=str(context.context_id),
                           status=pb.TaskStatus(state=pb.TaskState.TASK_STATE_SUBMITTED),
                           history=[context.message] if context.message is not None else [])
            task.metadata.update({META_KEY: {"run_id": task.id}})
            await event_queue.enqueue_event(task)
            how = "start"
        else:
            how = "answer" if task.status.state == pb.TaskState.TASK_STATE_INPUT_REQUIRED else "continue"
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        if not text and how != "continue":
            await updater.reject(updater.new_agent_message([new_text_part("send the request as a text part")]))
            return
        private = bool(_message_facts(context).get("private"))
        run_id = task.id
        flag = threading.Event()
        self._cancelled[run_id] = flag
        await updater.start_work()
        try:
            if how == "start":
                result = await self._pump(lambda sink: self.runs.start(text, run_id, sink, private), updater, flag,
                                          _caller_trace(context.call_context))
            else:
                answer = text if how == "answer" else None
                result = await self._pump(lambda sink: self.runs.resume(run_id, answer, sink), updater, flag,
                                          _caller_trace(context.call_context))
        except (RequestError, RunNotFoundError) as exc:
            await updater.reject(updater.new_agent_message([new_text_part(str(exc))]))
            return
        except RunCancelled:
            return
        finally:
            if self._cancelled.get(run_id) is flag:
                del self._cancelled[run_id]
        if not flag.is_set():
            await self._publish_result(updater, result)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Stop the task's run at its next event and mark the task canceled."""
        flag = self._cancelled.pop(str(context.task_id), None)
        if flag is not None:
            flag.set()
        updater = TaskUpdater(event_queue, str(context.task_id), str(context.context_id or ""))
        await updater.cancel(updater.new_agent_message([new_text_part("cancelled by the client")]))

    async def _pump(self, work: Callable[[Callable[[RunEvent], None]], RunResult], updater: TaskUpdater,
                    flag: threading.Event, parent: otel_context.Context | None) -> RunResult:
        """Run ``work`` on the run thread and publish its events as they come, in order."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[str, Any, float]] = asyncio.Queue()

        def put(kind: str, value: Any, at: float = 0.0) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed while the run was still going
                loop.call_soon_threadsafe(events.put_nowait, (kind, value, at))

        def sink(event: RunEvent) -> None:
            if flag.is_set():
                raise RunCancelled("the task was cancelled")
            put("event", event, time.time())

        def run() -> None:
            token = otel_context.attach(parent) if parent is not None else None
            try:
                put("done", work(sink))
            except BaseException as exc:
                put("error", exc)
            finally:
                if token is not None:
                    otel_context.detach(token)

        loop.run_in_executor(self.runs.pool, run)
        streamed = False
        tokens = _AnswerTokens()
        while True:
            try:
                kind, value, at = await asyncio.wait_for(events.get(), HEARTBEAT_S)
            except TimeoutError:  # nothing for a while (a model loading or thinking): say the task is alive
                if not flag.is_set():
                    await updater.update_status(pb.TaskState.TASK_STATE_WORKING,
                                                metadata={META_KEY: {"type": "heartbeat"}})
                continue
            if kind == "done":
                return value
            if kind == "error":
                raise value
            if flag.is_set():
                continue
            if isinstance(value, NodeEvent):
                tokens.node_done(value)
                await updater.update_status(pb.TaskState.TASK_STATE_WORKING, updater.new_agent_message(
                    [new_text_part(f"step {value.graph + '/' if value.graph else ''}{value.node}")],
                    metadata={META_KEY: {"type": "node", "graph": value.graph, "node": value.node,
                                         "keys": value.keys, "at": at}}))
            elif isinstance(value, TokenEvent) and (text := tokens.answer_text(value)):
                await updater.add_artifact([new_text_part(text)], artifact_id=ANSWER_ARTIFACT,
                                           name=ANSWER_ARTIFACT if not streamed else None, append=streamed)
                streamed = True

    async def _publish_result(self, updater: TaskUpdater, result: RunResult) -> None:
        facts = {"run_id": result.run_id, "status": result.status, "errors": result.errors,
                 "tiers_used": sorted({c.tier for c in result.model_calls if not c.error}),
                 "model_calls": len(result.model_calls), "elapsed_s": result.elapsed_s,
                 "usage": {"input_tokens": sum(c.input_tokens for c in result.model_calls),
                           "output_tokens": sum(c.output_tokens for c in result.model_calls)}}
        if result.status == "waiting":
            question = str((result.interrupt or {}).get("question") or "the run waits for an answer")
            await updater.requires_input(updater.new_agent_message(
                [new_text_part(question)], metadata={META_KEY: {**facts, "interrupt": result.interrupt}}))
            return
        if result.status == "failed":
            reason = "; ".join(result.errors) or "the run produced no answer"
            await updater.failed(updater.new_agent_message([new_text_part(reason)], metadata={META_KEY: facts}))
            return
        await updater.add_artifact([new_text_part(result.answer)], artifact_id=ANSWER_ARTIFACT, name=ANSWER_ARTIFACT,
                                   metadata={META_KEY: facts}, append=False, last_chunk=True)
        await updater.complete()


class _AnswerTokens:
    """Which streamed tokens are answer text: not the planner's or voters' output, nor a node's JSON (a worker's
    schema-constrained tool decisions). A node's output counts as JSON when its first visible character opens an
    object or array; the decision holds until the node finishes (its update arrives)."""

    def __init__(self) -> None:
        self.kind: dict[tuple[str, str], str] = {}  # "json" or "text", per (graph, node)
        self.held: dict[tuple[str, str], str] = {}  # leading whitespace not yet decided on

    def answer_text(self, event: TokenEvent) -> str:
        """The text of ``event`` to add to the answer ("" for none)."""
        if event.node in NOT_ANSWER_NODES or not event.text:
            return ""
        key = (event.graph, event.node)
        if key not in self.kind:
            text = self.held.pop(key, "") + event.text
            if not text.strip():
                self.held[key] = text
                return ""
            self.kind[key] = "json" if text.lstrip()[0] in "{[" else "text"
            return text if self.kind[key] == "text" else ""
        return event.text if self.kind[key] == "text" else ""

    def node_done(self, event: NodeEvent) -> None:
        """The node finished a step: its next output is judged afresh."""
        self.kind.pop((event.graph, event.node), None)
        self.held.pop((event.graph, event.node), None)


def _message_facts(context: RequestContext) -> dict[str, Any]:
    """The ``tierflow`` metadata of the request or its message (``{"private": true}`` keeps the run private)."""
    found: dict[str, Any] = {}
    for source in (context.metadata, _struct(context.message.metadata) if context.message else {}):
        value = source.get(META_KEY)
        if isinstance(value, dict):
            found.update(value)
    return found


def _struct(value: Any) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(value) if value is not None else {}


def _caller_trace(call: ServerCallContext | None) -> otel_context.Context | None:
    """The caller's trace context from its ``traceparent`` header, or None."""
    headers = (call.state.get("headers") if call is not None else None) or {}
    carrier = {key: str(headers[key]) for key in ("traceparent", "tracestate") if key in headers}
    if "traceparent" not in carrier:
        return None
    extracted = _TRACE_CONTEXT.extract(carrier)
    return extracted if trace.get_current_span(extracted).get_span_context().is_valid else None


# ----- tasks on disk ------------------------------------------------------------------------------


class SqliteTaskStore(TaskStore):
    """A2A tasks in one SQLite file (each a serialized protobuf), scoped by owner like the SDK's stores."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._conn = sqlite3.connect(str(path), check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            # Every streamed event rewrites its task: WAL without a sync per commit keeps that off the hot path.
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("CREATE TABLE IF NOT EXISTS a2a_tasks (owner TEXT NOT NULL, id TEXT NOT NULL, "
                               "context_id TEXT, state INTEGER, updated_ns INTEGER, body BLOB NOT NULL, "
                               "PRIMARY KEY (owner, id))")
            self._conn.commit()

    async def save(self, task: pb.Task, context: ServerCallContext) -> None:
        """Insert or replace ``task``."""
        updated = task.status.timestamp.ToNanoseconds() if task.status.HasField("timestamp") else time.time_ns()
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO a2a_tasks VALUES (?, ?, ?, ?, ?, ?)",
                               (resolve_user_scope(context), task.id, task.context_id, int(task.status.state),
                                updated, task.SerializeToString()))
            self._conn.commit()

    async def get(self, task_id: str, context: ServerCallContext) -> pb.Task | None:
        """The task, or None."""
        with self._lock:
            row = self._conn.execute("SELECT body FROM a2a_tasks WHERE owner = ? AND id = ?",
                                     (resolve_user_scope(context), task_id)).fetchone()
        return pb.Task.FromString(row[0]) if row else None

    async def list(self, params: pb.ListTasksRequest, context: ServerCallContext) -> pb.ListTasksResponse:
        """The owner's tasks, newest first, filtered by context and state; ``page_token`` is an offset."""
        where, args = ["owner = ?"], [resolve_user_scope(context)]
        if params.context_id:
            where.append("context_id = ?")
            args.append(params.context_id)
        if params.status:
            where.append("state = ?")
            args.append(int(params.status))
        if params.HasField("status_timestamp_after"):
            where.append("updated_ns >= ?")
            args.append(params.status_timestamp_after.ToNanoseconds())
        size = min(params.page_size or 50, 100)
        offset = int(params.page_token) if params.page_token.isdigit() else 0
        clause = " AND ".join(where)
        with self._lock:
            total = self._conn.execute(f"SELECT count(*) FROM a2a_tasks WHERE {clause}", args).fetchone()[0]
            rows = self._conn.execute(f"SELECT body FROM a2a_tasks WHERE {clause} ORDER BY updated_ns DESC, id DESC "
                                      "LIMIT ? OFFSET ?", [*args, size, offset]).fetchall()
        following = str(offset + size) if offset + size < total else ""
        return pb.ListTasksResponse(tasks=[pb.Task.FromString(r[0]) for r in rows], total_size=total,
                                    page_size=size, next_page_token=following)

    async def delete(self, task_id: str, context: ServerCallContext) -> None:
        """Forget the task (not its run's checkpoints)."""
        with self._lock:
            self._conn.execute("DELETE FROM a2a_tasks WHERE owner = ? AND id = ?",
                               (resolve_user_scope(context), task_id))
            self._conn.commit()


# ----- the agent card -----------------------------------------------------------------------------


def agent_card(url: str, *, name: str = "tierflow", description: str, version: str, intents: Sequence[str] = (),
               token: bool = False) -> pb.AgentCard:
    """The card: one skill per intent label (the graph's description when there are none), both JSON-RPC specs."""
    labels = [label for label in intents if label != "oos"]
    skills = [pb.AgentSkill(id=label, name=label, tags=[label, "tierflow"],
                            description=f"Requests classified as {label!r}. {description}") for label in labels]
    if not skills:
        skills = [pb.AgentSkill(id="run", name="run", description=description, tags=["tierflow"])]
    card = pb.AgentCard(
        name=name, description=description, version=version,
        supported_interfaces=[pb.AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0"),
                              pb.AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="0.3")],
        capabilities=pb.AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=["text/plain"], default_output_modes=["text/plain"], skills=skills)
    if token:
        card.security_schemes["bearer"].CopyFrom(pb.SecurityScheme(
            http_auth_security_scheme=pb.HTTPAuthSecurityScheme(scheme="bearer")))
        card.security_requirements.add().schemes["bearer"].SetInParent()
    return card


# ----- HTTP: the app and its guards ---------------------------------------------------------------


async def _reply(send: Callable[[Any], Awaitable[None]], status: int, error: str, detail: str) -> None:
    body = json.dumps({"error": error, "detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class BoundedBody:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 before the app reads any of it."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.limit:
            await _reply(send, 413, "too_large", f"the request body is limited to {self.limit} bytes")
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                await _reply(send, 413, "too_large", f"the request body is limited to {self.limit} bytes")
                return
            if not message.get("more_body"):
                break
        await self.app(scope, _replay([{"type": "http.request", "body": b"".join(chunks), "more_body": False}],
                                      receive), send)


def _replay(first: list[dict[str, Any]], receive: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
    """A ``receive`` that hands out ``first`` and then the real one (so disconnects still reach the app)."""
    pending = list(first)

    async def replayed() -> Any:
        return pending.pop(0) if pending else await receive()

    return replayed


class HostOriginGuard:
    """ASGI middleware for loopback servers: only the server's own host:port in ``Host`` and, when a browser sends
    ``Origin``, only the server's own origins (plus ``allowed_origins``): a web page on another port cannot drive it.
    """

    def __init__(self, app: ASGIApp, port: int, allowed_origins: Sequence[str] = ()) -> None:
        names = ("127.0.0.1", "localhost", "[::1]")
        self.app = app
        self.hosts = {f"{name}:{port}".encode() for name in names}
        self.origins = {f"http://{name}:{port}".encode() for name in names} | {o.encode() for o in allowed_origins}

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            if headers.get(b"host", b"") not in self.hosts:
                await _reply(send, 421, "invalid_host", "this server answers only on its own loopback host:port")
                return
            origin = headers.get(b"origin")
            if origin is not None and origin not in self.origins:
                await _reply(send, 403, "invalid_origin", "requests from this Origin are not allowed")
                return
        await self.app(scope, receive, send)


class PublicCard:
    """ASGI dispatch: ``GET`` of the agent card goes to ``public`` (A2A discovery); everything else to ``guarded``."""

    def __init__(self, guarded: ASGIApp, public: ASGIApp) -> None:
        self.guarded = guarded
        self.public = public

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        card = scope["type"] == "http" and scope.get("method") in ("GET", "HEAD") \
            and scope.get("path") == AGENT_CARD_WELL_KNOWN_PATH
        await (self.public if card else self.guarded)(scope, receive, send)


def check_bind(host: str, token: str | None) -> None:
    """Raise ServeError for a bind address off loopback without a token (checked before anything starts)."""
    if not is_loopback(host) and not token:
        raise ServeError(f"refusing to serve A2A on {host} without a bearer token: pass --token or set {TOKEN_ENV}")


def a2a_app(runs: GraphRuns, card: pb.AgentCard, tasks: TaskStore, *, host: str = "127.0.0.1",
            port: int | None = None, token: str | None = None, allowed_origins: Sequence[str] = (),
            max_body_bytes: int = MAX_BODY_BYTES, warm: Callable[[], None] | None = None) -> ASGIApp:
    """The ASGI app: agent card at /.well-known/agent-card.json (readable without a token), JSON-RPC at /.

    Off loopback a token is required (ServeError otherwise) and every other request must carry it. ``warm()``,
    when given, runs as the server starts and must return at once (start building the graph in the background).
    """
    check_bind(host, token)
    handler = DefaultRequestHandler(agent_executor=TierflowExecutor(runs), task_store=tasks, agent_card=card)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if warm is not None:
            warm()
        yield
        await handler.aclose()

    app: ASGIApp = Starlette(routes=[*create_agent_card_routes(card),
                                     *create_jsonrpc_routes(handler, rpc_url="/", enable_v0_3_compat=True)],
                             lifespan=lifespan)
    guarded = BearerAuth(app, token) if token else app
    served: ASGIApp = PublicCard(guarded, app)
    if is_loopback(host) and port is not None:
        served = HostOriginGuard(served, port, allowed_origins)
    return BoundedBody(served, max_body_bytes)


def serve_a2a(app: ASGIApp, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Serve ``app`` with uvicorn until stopped."""
    if not 0 < port < 65536:
        raise ServeError(f"port {port} is out of range")
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="on")
