"""Pooled, long-lived MCP client sessions whose tools are LangChain tools usable with ``invoke`` and ``ainvoke``.

``start()`` gives the client its own asyncio event loop on a background thread: every session is entered and
exited by its own task on that loop (the SDK's transports require it), so synchronous callers (LangGraph's
thread pool) and coroutines on any other loop share the same sessions; calls from another loop hop over with
one wake-up per batch of calls. ``async with McpClient(...)`` (``astart()``) instead runs the sessions on the
caller's own loop, so its coroutines call without any hop. Stateful servers get one session for the client's
lifetime; servers declared stateless get a pool and each call goes to the least busy session. A server found
dead before a call is sent (a stdio process that exited while idle) is restarted for that call; calls in flight
when a server dies fail at once and are never repeated, since they may have run.

Per call the client validates arguments and structured results with jsonschema validators compiled once per
tool (the SDK's ``call_tool`` rebuilds and re-checks the output schema on every call).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import contextlib
import json
import logging
import os
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any, TextIO, TypeVar

import anyio
import httpx
import jsonschema
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from mcp import ClientSession, McpError, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CONNECTION_CLOSED
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import BaseModel, ConfigDict, PrivateAttr, create_model
from referencing import Registry
from referencing.exceptions import Unresolvable
from tierflow.tools.errors import ToolInputError, ToolLayerError, UnknownToolError
from tierflow.tools.mcp.config import McpServerConfig
from tierflow.tools.policy import check_allowed, permits

log = logging.getLogger(__name__)
T = TypeVar("T")
CUT_MARKER = "[cut: {n} more characters]"
# Errors that mean the transport under a session is gone; the session is dropped and reopened on next use.
_TRANSPORT_ERRORS = (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, httpx.TransportError,
                     BrokenPipeError, ConnectionError, EOFError)
# How long answers a stdio server wrote before its process exited may still take to arrive.
_EXIT_DRAIN_S = 0.5
_CLOSED = "the MCP client closed the session"
_MAYBE_RAN = "the call may or may not have run, so it is not retried; the server is restarted for the next call"
# W3C trace context only (never baggage): trace attributes such as user ids stay inside the process.
_TRACE_CONTEXT = TraceContextTextMapPropagator()
_TRACE_KEYS = ("traceparent", "tracestate")


class McpToolError(ToolLayerError):
    """An MCP tool call failed: the server reported an error, or the server could not be reached."""


class McpTimeoutError(McpToolError, TimeoutError):
    """An MCP server did not answer within the call's (or connection's) time limit."""


class McpConnectionError(McpToolError, ConnectionError):
    """The MCP server's process or connection went away; the next call reconnects."""


def cut(text: str, limit: int) -> str:
    """``text`` shortened to ``limit`` characters plus a marker saying how much was cut."""
    if len(text) <= limit:
        return text
    return text[:limit] + " " + CUT_MARKER.format(n=len(text) - limit)


def trace_meta() -> dict[str, str] | None:
    """The current span's W3C ``traceparent`` (and ``tracestate``) for a call's ``_meta``; None outside a span.

    Captured on the caller's thread: calls run on the client's own loop thread, where the caller's span is not
    current. The MCP convention carries it in ``params._meta``; over HTTP it also becomes the request's headers.
    """
    carrier: dict[str, str] = {}
    _TRACE_CONTEXT.inject(carrier)
    return carrier or None


async def _trace_headers(request: httpx.Request) -> None:
    """httpx request hook: send the trace context a ``tools/call`` carries in ``params._meta`` as W3C headers."""
    if request.method != "POST":
        return
    try:
        body = request.content
    except httpx.RequestNotRead:  # a streamed body is never a JSON-RPC message of ours
        return
    if b'"traceparent"' not in body:
        return
    try:
        meta = json.loads(body)["params"]["_meta"]
    except (ValueError, KeyError, TypeError):
        return
    for key in _TRACE_KEYS:
        if isinstance(meta.get(key), str):
            request.headers[key] = meta[key]


def result_text(result: types.CallToolResult) -> str:
    """The text an agent sees for a tool result: text parts, structured content, placeholders for binaries."""
    parts: list[str] = []
    for item in result.content:
        if isinstance(item, types.TextContent):
            parts.append(item.text)
        elif isinstance(item, types.EmbeddedResource):
            res = item.resource
            parts.append(res.text if isinstance(res, types.TextResourceContents) else f"[binary resource {res.uri}]")
        elif isinstance(item, types.ResourceLink):
            parts.append(f"[resource {item.uri}]")
        else:
            parts.append(f"[{item.type} {getattr(item, 'mimeType', '')}]".replace(" ]", "]"))
    if not parts and result.structuredContent is not None:
        parts.append(json.dumps(result.structuredContent, ensure_ascii=False))
    return "\n".join(parts)


class _Session:
    """One MCP session, entered and exited by its own task on the client's loop.

    Besides what the SDK does, it watches its server: a stdio server's process exiting, or the transport's task
    ending, marks the session broken at once and fails the calls in flight on it (see :meth:`mark_dead`).
    """

    def __init__(self, name: str, config: McpServerConfig, errlog: TextIO) -> None:
        self.name = name
        self.config = config
        self.errlog = errlog
        self.session: ClientSession | None = None
        self.busy = 0
        self.broken = False
        self.process: Any | None = None  # a stdio server's process (anyio Process), when the transport gave it away
        self.death: str | None = None  # why the session died, for the errors of the calls it fails
        self.calls: set[asyncio.Task[Any]] = set()  # tasks waiting in send_request on this session
        self.failed: set[asyncio.Task[Any]] = set()  # of those, the ones _fail_calls cancelled
        self._streams: tuple[Any, Any] | None = None  # the transport's (read, write) streams
        self._failing: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        """The stdio server's process id while it runs; None for HTTP or once it has exited."""
        proc = self.process
        return proc.pid if proc is not None and proc.returncode is None else None

    async def open(self) -> types.InitializeResult:
        ready: asyncio.Future[types.InitializeResult] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(ready), name=f"mcp-session-{self.name}")
        try:
            async with asyncio.timeout(self.config.connect_timeout_s):
                return await asyncio.shield(ready)
        except TimeoutError:
            ready.cancel()
            await self.close()
            raise McpTimeoutError(f"MCP server {self.name!r} did not complete the handshake within "
                                  f"{self.config.connect_timeout_s:g} s") from None
        except asyncio.CancelledError:  # the caller gave up (its deadline): the pool closes this in the background
            ready.cancel()
            raise
        except BaseException:
            ready.cancel()
            await self.close()
            raise

    def gone(self) -> str | None:
        """Why nothing can be sent on this session now (process exited, transport closed), or None if it is up.

        Checked before each call, so a call never goes to a server that died while idle; the watcher in
        :meth:`_watch` notices a death too, but only once the loop has run its callbacks.
        """
        if self.broken or self.session is None or self._streams is None:
            return self.death or "its session is closed"
        read, write = self._streams
        # anyio's public stream statistics: the SDK closes these ends when the server's output ends (EOF) or
        # the transport's writer stops; a send would then raise ClosedResourceError or BrokenResourceError.
        if read.statistics().open_send_streams == 0:
            return "its output ended"
        wst = write.statistics()
        if wst.open_send_streams == 0 or wst.open_receive_streams == 0:
            return "its transport closed"
        proc = self.process
        if proc is not None:
            if proc.returncode is not None:
                return f"its process exited with code {proc.returncode}"
            if _exited(proc.pid):
                return "its process exited"
        return None

    async def _run(self, ready: asyncio.Future[types.InitializeResult]) -> None:
        reason = "its transport closed"
        try:
            async with AsyncExitStack() as stack:
                read, write = await self._transport(stack)
                self._streams = (read, write)
                session = await stack.enter_async_context(ClientSession(read, write))
                init = await session.initialize()
                self.session = session
                ready.set_result(init)
                try:
                    reason = await self._watch()
                finally:  # process exited, transport task failed (we are cancelled here), or closing
                    self.mark_dead(reason)
        except BaseException as exc:  # the task ends here; callers see it through `ready` or a failed call
            if not ready.done():
                ready.set_exception(McpConnectionError(f"cannot open MCP server {self.name!r}: {_describe(exc)}"))
            elif not self._closing.is_set():
                log.warning("MCP session %s ended: %s", self.name, _describe(exc))
            if isinstance(exc, asyncio.CancelledError) and not self._closing.is_set():
                raise
        finally:
            self.mark_dead(reason)
            self.session = None

    async def _watch(self) -> str:
        """Wait until the session is closed or its server process exits; returns why the session ends.

        The SDK notices a dead stdio server only when its output ends; a process whose output stays open (a
        child process of the server holding it) would leave calls waiting for their whole timeout.
        """
        closing = asyncio.ensure_future(self._closing.wait())
        waits: set[asyncio.Future[Any]] = {closing}
        if self.process is not None:
            waits.add(asyncio.ensure_future(self.process.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if closing.done():
            return _CLOSED
        assert self.process is not None
        reason = f"its process exited with code {self.process.returncode}"
        self.broken = True  # no new calls here; answers the server wrote before it exited may still arrive
        self.death = self.death or reason
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _EXIT_DRAIN_S
        while self._streams is not None and self._streams[0].statistics().open_send_streams \
                and loop.time() < deadline:
            await asyncio.sleep(0.02)
        return reason

    def mark_dead(self, reason: str) -> None:
        """Mark the session broken and fail its calls in flight at once.

        When the transport's task group fails (e.g. a write into a dead server's stdin), the SDK cancels its
        receive loop before that loop can fail the pending requests, which would then wait for their timeout.
        """
        self.broken = True
        if self.death is None:
            self.death = reason
        if self.calls and self._failing is None:
            self._failing = asyncio.get_running_loop().create_task(self._fail_calls())

    async def _fail_calls(self) -> None:
        for _ in range(3):  # first let calls whose answers were already delivered take them
            await asyncio.sleep(0)
        for task in list(self.calls):
            if task not in self.failed and not task.done():
                self.failed.add(task)
                task.cancel()  # the call turns this into McpConnectionError (see _ServerPool.call)

    async def _transport(self, stack: AsyncExitStack) -> tuple[Any, Any]:
        cfg = self.config
        if cfg.transport == "stdio":
            params = StdioServerParameters(command=cfg.command or "", args=cfg.args, env=cfg.env, cwd=cfg.cwd)
            transport = stdio_client(params, errlog=self.errlog)
            streams = await stack.enter_async_context(transport)
            self.process = _stdio_process(transport)
            return streams
        headers = dict(cfg.headers)
        if cfg.token:
            headers["Authorization"] = f"Bearer {cfg.token}"
        http = await stack.enter_async_context(httpx.AsyncClient(
            headers=headers, follow_redirects=True, timeout=httpx.Timeout(cfg.timeout_s, read=cfg.timeout_s + 5),
            event_hooks={"request": [_trace_headers]}))
        read, write, _ = await stack.enter_async_context(streamable_http_client(cfg.url or "", http_client=http))
        return read, write

    async def close(self) -> None:
        self._closing.set()
        task = self._task
        if task is None or task.done():
            return
        if self.session is None:  # still connecting (or stuck in the handshake): nothing to close politely
            task.cancel()
        try:
            async with asyncio.timeout(10):
                await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        except BaseException:  # an error while closing was already logged by _run
            pass


def _stdio_process(transport: Any) -> Any | None:
    """The process the SDK's ``stdio_client`` started, or None if it cannot be found.

    The SDK does not expose it; it is a local of the suspended ``stdio_client`` generator, read here without
    changing anything. Should a later SDK rename it, the session still notices a death through its streams
    (:meth:`_Session.gone`), only later for a server whose output stays open, and ``pids()`` is empty.
    """
    frame = getattr(getattr(transport, "gen", None), "ag_frame", None)
    proc = frame.f_locals.get("process") if frame is not None else None
    return proc if isinstance(getattr(proc, "pid", None), int) and hasattr(proc, "wait") else None


def _exited(pid: int) -> bool:
    """Whether our child ``pid`` has exited, asked of the kernel without reaping it (asyncio's watcher reaps it)."""
    if not hasattr(os, "waitid"):
        return False
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # already reaped: it exited
        return True
    except OSError:
        return False


class _ServerPool:
    """The sessions of one server, its concurrency limit, and reconnection after failures."""

    def __init__(self, name: str, config: McpServerConfig, errlog: TextIO) -> None:
        self.name = name
        self.config = config
        self.errlog = errlog
        size = config.sessions()
        self.slots: list[_Session | None] = [None] * size
        self.locks = [asyncio.Lock() for _ in range(size)]
        self.limit = asyncio.Semaphore(config.max_concurrency)
        self.tools: dict[str, types.Tool] = {}
        self.schemas: dict[str, ToolSchemas] = {}
        self._closers: set[asyncio.Task[None]] = set()  # dead or abandoned sessions closing in the background

    async def start(self) -> list[types.Tool]:
        await asyncio.gather(*(self._session(i) for i in range(len(self.slots))))
        session = await self._session(0)
        assert session.session is not None
        listed: list[types.Tool] = []
        cursor: str | None = None
        while True:
            page = await session.session.list_tools(params=types.PaginatedRequestParams(cursor=cursor)
                                                    if cursor else None)
            listed.extend(page.tools)
            cursor = page.nextCursor
            if not cursor:
                break
        wanted = set(self.config.tools) if self.config.tools is not None else None
        if wanted is not None and (missing := wanted - {t.name for t in listed}):
            raise McpToolError(f"MCP server {self.name!r} has no tool(s) {', '.join(sorted(missing))}; "
                               f"it offers {', '.join(t.name for t in listed)}")
        self.tools = {t.name: t for t in listed if wanted is None or t.name in wanted}
        self.schemas = {name: ToolSchemas(spec) for name, spec in self.tools.items()}
        return list(self.tools.values())

    def pids(self) -> list[int]:
        """Process ids of this server's running stdio sessions."""
        return [pid for slot in self.slots if slot is not None and (pid := slot.pid) is not None]

    async def _session(self, index: int) -> _Session:
        current = self.slots[index]
        if current is not None and not current.broken and current.session is not None:
            return current
        async with self.locks[index]:
            current = self.slots[index]
            if current is not None and not current.broken and current.session is not None:
                return current
            self.slots[index] = None
            if current is not None:  # a dead session: its teardown (up to seconds) is no part of this call
                self._close_later(current)
            fresh = _Session(self.name, self.config, self.errlog)
            try:
                await fresh.open()
            except asyncio.CancelledError:  # the call's deadline passed during the handshake
                self._close_later(fresh)
                raise
            self.slots[index] = fresh
            return fresh

    def _close_later(self, session: _Session) -> None:
        task = asyncio.get_running_loop().create_task(session.close())
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    def _pick(self) -> int:
        best, load = 0, None
        for i, slot in enumerate(self.slots):
            busy = slot.busy if slot is not None and not slot.broken else -1  # a closed slot reconnects first
            if load is None or busy < load:
                best, load = i, busy
        return best

    async def call(self, tool: str, args: dict[str, Any], timeout_s: float,
                   meta: dict[str, Any] | None = None) -> types.CallToolResult:
        """Send ``tools/call`` on the least busy session, within the server's concurrency limit and ``timeout_s``.

        A session found dead before anything was sent (its process exited, its transport closed) is replaced
        and the call goes to the new one: at most one reconnect per call, all within ``timeout_s``. A call that
        was sent is never repeated (it may have had effects); if its server dies it fails at once.

        It goes through ``send_request`` rather than ``ClientSession.call_tool``: the latter lists the tools
        again on every fresh session and rebuilds the output-schema validator per call; the caller checks
        structured results against the validator compiled once in :class:`ToolSchemas`.
        """
        request = types.ClientRequest(types.CallToolRequest(params=types.CallToolRequestParams(
            name=tool, arguments=args, _meta=types.RequestParams.Meta(**meta) if meta else None)))
        async with self.limit, asyncio.timeout(timeout_s) as deadline:
            reconnected = False
            while True:
                index = self._pick()
                before = self.slots[index]
                holder = await self._session(index)
                reconnected = reconnected or holder is not before
                why = holder.gone()
                if why is None:
                    try:
                        return await self._send(holder, tool, request, timeout_s, deadline)
                    except _NotSent as exc:
                        why = exc.why
                holder.mark_dead(why)  # nothing was sent on it: the call may go to a fresh session
                if reconnected:
                    raise McpConnectionError(f"MCP server {self.name!r} could not take {tool!r}: {why}, also after "
                                             "a restart; nothing was sent")
                log.info("MCP server %s: %s; reconnecting before sending %s", self.name, why, tool)

    async def _send(self, holder: _Session, tool: str, request: types.ClientRequest, timeout_s: float,
                    deadline: asyncio.Timeout) -> types.CallToolResult:
        """One attempt on ``holder``; raises _NotSent when the request never left, McpToolError otherwise."""
        session = holder.session
        assert session is not None
        task = asyncio.current_task()
        assert task is not None
        request_id = getattr(session, "_request_id", None)
        holder.busy += 1
        holder.calls.add(task)
        try:
            return await session.send_request(request, types.CallToolResult,
                                              request_read_timeout_seconds=timedelta(seconds=timeout_s))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:
            # Only the SDK's write into the transport raises these (its replies come through a stream it owns):
            # the message was not handed over, so nothing reached the server.
            raise _NotSent(_describe(exc)) from None
        except McpError as exc:
            if exc.error.code == CONNECTION_CLOSED:
                holder.mark_dead("its connection closed")
                raise McpConnectionError(f"MCP server {self.name!r} closed the connection during {tool!r} (its "
                                         f"process or transport died); {_MAYBE_RAN}") from None
            if exc.error.code == httpx.codes.REQUEST_TIMEOUT:
                raise McpTimeoutError(f"MCP tool {tool!r} on {self.name!r} did not answer within "
                                      f"{timeout_s:g} s") from None
            raise McpToolError(f"MCP server {self.name!r} refused {tool!r}: {exc.error.message}") from None
        except _TRANSPORT_ERRORS as exc:
            holder.mark_dead(_describe(exc))
            raise McpConnectionError(f"MCP server {self.name!r} failed during {tool!r} ({_describe(exc)}); "
                                     f"{_MAYBE_RAN}") from None
        except asyncio.CancelledError:
            if task in holder.failed:  # cancelled by _Session._fail_calls: its server died under the call
                holder.failed.discard(task)
                if task.uncancel() == 0:  # and by nobody else (a deadline, the caller): report the death
                    if holder.death == _CLOSED:
                        raise McpConnectionError(f"the MCP client was closed during {tool!r} on {self.name!r}; "
                                                 "it may or may not have run") from None
                    raise McpConnectionError(f"MCP server {self.name!r} died during {tool!r} ({holder.death}); "
                                             f"{_MAYBE_RAN}") from None
            elif isinstance(request_id, int) and holder.session is not None:
                reason = "timed out" if deadline.expired() else "cancelled by the caller"
                asyncio.get_running_loop().create_task(_send_cancel(holder.session, request_id, reason))
            raise
        finally:
            holder.busy -= 1
            holder.calls.discard(task)
            if task in holder.failed:  # cancelled too late to land in the call: withdraw that request
                holder.failed.discard(task)
                task.uncancel()

    async def close(self) -> None:
        await asyncio.gather(*(slot.close() for slot in self.slots if slot is not None), *list(self._closers))
        self.slots = [None] * len(self.slots)


class _NotSent(Exception):
    """A call found its session dead before its request was handed to the transport (so it may be retried)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


async def _send_cancel(session: ClientSession, request_id: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await session.send_notification(types.ClientNotification(types.CancelledNotification(
            params=types.CancelledNotificationParams(requestId=request_id, reason=reason))))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


_LIVE: weakref.WeakSet[McpClient] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for client in list(_LIVE):
        with contextlib.suppress(Exception):
            client.close()


class McpClient:
    """MCP servers by name → pooled sessions, their tools as LangChain tools; a context manager.

    ``start()`` connects to every server and lists its tools on the client's own loop thread; ``close()`` (or
    leaving the ``with`` block, or interpreter exit) ends every session and stops stdio server processes.
    ``async with`` (``astart()``/``aclose()``) runs the sessions on the caller's loop instead: no thread, and no
    hop for coroutines on that loop; threads may still call it while that loop runs.
    """

    def __init__(self, servers: Mapping[str, McpServerConfig], errlog: TextIO | None = None) -> None:
        self.servers = {name: McpServerConfig.model_validate(cfg) for name, cfg in servers.items()}
        self.errlog = errlog or sys.stderr
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._inbox: _Inbox | None = None
        self._owns_loop = False
        self._pools: dict[str, _ServerPool] = {}
        self._tools: list[McpTool] = []

    # lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> McpClient:
        """Open every server's sessions and discover its tools; raises McpToolError naming a failing server."""
        if self._loop is not None:
            return self
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(started.set)
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="tierflow-mcp", daemon=True)
        self._thread.start()
        started.wait()
        self._loop, self._inbox, self._owns_loop = loop, _Inbox(loop), True
        _LIVE.add(self)
        try:
            self._submit(self._astart()).result()
        except BaseException:
            self.close()
            raise
        return self

    async def astart(self) -> McpClient:
        """Open every server's sessions on the running loop (see :meth:`start`); end them with :meth:`aclose`."""
        if self._loop is not None:
            return self
        loop = asyncio.get_running_loop()
        self._loop, self._inbox, self._owns_loop, self._thread = loop, _Inbox(loop), False, threading.current_thread()
        try:
            await self._astart()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def aclose(self) -> None:
        """End every session of a client; from the loop that runs it, or any other (then it hops over)."""
        loop = self._loop
        if loop is None:
            return
        if not self._owns_loop and asyncio.get_running_loop() is loop:
            self._loop = None
            await self._aclose()
            return
        await asyncio.to_thread(self.close)

    async def __aenter__(self) -> McpClient:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _astart(self) -> None:
        self._pools = {name: _ServerPool(name, cfg, self.errlog) for name, cfg in self.servers.items()}
        listed = await asyncio.gather(*(pool.start() for pool in self._pools.values()), return_exceptions=True)
        tools: list[McpTool] = []
        for (name, pool), result in zip(self._pools.items(), listed, strict=True):
            if isinstance(result, BaseException):
                raise result if isinstance(result, ToolLayerError) else McpToolError(
                    f"MCP server {name!r}: {_describe(result)}")
            tools += [McpTool.from_mcp(self, name, pool.config, tool) for tool in result]
        names = [t.name for t in tools]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise McpToolError(f"MCP tool names clash: {', '.join(dupes)}; set 'prefix' on a server")
        self._tools = tools

    def close(self) -> None:
        """End every session (stdio processes exit) and stop the loop thread; safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is None:
            return
        if not self._owns_loop:
            if thread is threading.current_thread():
                raise McpToolError("this MCP client runs on this thread's event loop: use 'await client.aclose()'")
            self._loop = None
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(self._aclose(), loop).result(timeout=30)
            else:
                log.warning("the event loop of this MCP client is gone; its sessions were not closed politely")
            return
        self._loop = None
        _LIVE.discard(self)
        try:
            fut = asyncio.run_coroutine_threadsafe(self._aclose(), loop)
            fut.result(timeout=30)
        except Exception as exc:  # closing must not raise over the caller's own error
            log.warning("closing MCP sessions: %s", _describe(exc))
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=10)
            if not loop.is_running():
                loop.close()

    async def _aclose(self) -> None:
        await asyncio.gather(*(pool.close() for pool in self._pools.values()), return_exceptions=True)

    def __enter__(self) -> McpClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # tools -------------------------------------------------------------------------------------------
    def tools(self, role: str | None = None) -> list[BaseTool]:
        """The discovered tools (only those ``role`` may use, when given)."""
        self._require_started()
        return [t for t in self._tools if role is None or permits(t.allow_roles, role)]

    def tool(self, name: str) -> McpTool:
        for t in self._tools:
            if t.name == name:
                return t
        raise UnknownToolError(name, [t.name for t in self._tools])

    def pids(self, server: str) -> list[int]:
        """Process ids of ``server``'s running stdio sessions (none over HTTP); read-only, for diagnostics and tests."""
        return self._pool(server).pids()

    async def acall(self, server: str, tool: str, args: Mapping[str, Any] | None = None,
                    timeout_s: float | None = None) -> str:
        """Call ``tool`` on ``server`` from any event loop; returns the (capped) text an agent should see."""
        self._pool(server)  # not started / unknown server: say so here, before hopping
        return await self._await_on_loop(self._acall(server, tool, dict(args or {}), timeout_s, trace_meta()))

    def call(self, server: str, tool: str, args: Mapping[str, Any] | None = None,
             timeout_s: float | None = None) -> str:
        """Blocking :meth:`acall` for threads; an interrupt of the waiting thread cancels the call."""
        pool = self._pool(server)
        if not self._owns_loop and self._thread is threading.current_thread():
            raise McpToolError(f"a blocking call of {tool!r} on the thread whose event loop runs the MCP client "
                               "would deadlock; use 'await client.acall(...)' or 'await tool.ainvoke(...)'")
        fut = self._submit(self._acall(server, tool, dict(args or {}), timeout_s, trace_meta()))
        try:
            return fut.result(timeout=(timeout_s or pool.config.timeout_s) + pool.config.connect_timeout_s + 5)
        except McpToolError:
            raise
        except concurrent.futures.TimeoutError:  # (the builtin TimeoutError) the loop itself did not answer
            fut.cancel()
            raise McpTimeoutError(f"MCP tool {tool!r} on {server!r} did not finish in time") from None
        except BaseException:
            fut.cancel()
            raise

    async def _acall(self, server: str, tool: str, args: dict[str, Any], timeout_s: float | None,
                     meta: dict[str, Any] | None = None) -> str:
        pool = self._pool(server)
        spec = pool.tools.get(tool)
        if spec is None:
            raise UnknownToolError(tool, sorted(pool.tools))
        schemas = pool.schemas[tool]
        validate_arguments(spec, args, pool.config.max_argument_chars, schemas)
        limit = timeout_s or pool.config.timeout_s
        try:
            result = await pool.call(tool, args, limit, meta)
        except TimeoutError as exc:
            if isinstance(exc, McpToolError):
                raise
            raise McpTimeoutError(f"MCP tool {tool!r} on {server!r} did not answer within {limit:g} s") from None
        check_structured_result(schemas, result)
        text = result_text(result)
        if result.isError:
            raise McpToolError(f"{tool} failed: {cut(text, pool.config.max_result_chars) or 'no details'}")
        return cut(text, pool.config.max_result_chars)

    # plumbing ----------------------------------------------------------------------------------------
    def _pool(self, server: str) -> _ServerPool:
        self._require_started()
        try:
            return self._pools[server]
        except KeyError:
            raise McpToolError(f"unknown MCP server {server!r}; declared: {', '.join(self._pools) or '(none)'}") \
                from None

    def _require_started(self) -> None:
        if self._loop is None:
            raise McpToolError("the MCP client is not started (use start() or a with block)")

    def _submit(self, coro: Awaitable[T]) -> concurrent.futures.Future[T]:
        if self._loop is None:
            if asyncio.iscoroutine(coro):
                coro.close()
            raise McpToolError("the MCP client is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]

    async def _await_on_loop(self, coro: Awaitable[T]) -> T:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            return await coro
        inbox = self._inbox
        if running is None or inbox is None or self._loop is None:
            return await asyncio.wrap_future(self._submit(coro))  # (no loop here, or closed: _submit says so)
        hop = _Hop(coro, running.create_future(), _inbox_of(running))
        try:
            inbox.put(hop.start)
        except RuntimeError:  # the client's loop was closed in the meantime
            coro.close()  # type: ignore[attr-defined]
            raise McpToolError("the MCP client is closed") from None
        try:
            return await hop.waiter
        except asyncio.CancelledError:  # cancelling the caller cancels the call on the client's loop
            with contextlib.suppress(RuntimeError):
                inbox.put(hop.cancel)
            raise


class ToolSchemas:
    """A tool's input and output JSON schemas, each checked and compiled into a validator once.

    Building a jsonschema validator (and checking the schema against its metaschema) costs far more than
    validating a small object, so the pool compiles them when it lists the tools. An empty registry keeps
    ``$ref`` inside the schema: a server's schema can never make the client fetch a URL.
    """

    __slots__ = ("error", "input", "name", "output")

    def __init__(self, spec: types.Tool) -> None:
        self.name = spec.name
        self.input: jsonschema.protocols.Validator | None = None
        self.output: jsonschema.protocols.Validator | None = None
        self.error: str | None = None
        try:
            self.input = _compile(spec.inputSchema or {"type": "object"})
            self.output = _compile(spec.outputSchema) if spec.outputSchema is not None else None
        except jsonschema.SchemaError as exc:
            self.error = f"MCP tool {spec.name!r} declares an invalid JSON schema: {exc.message}"


def _compile(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    return cls(schema, registry=Registry())


class _Inbox:
    """Callbacks handed to one event loop from other threads, with one wake-up per batch instead of one each.

    ``call_soon_threadsafe`` writes to the loop's self-pipe (and makes the threads trade the GIL) for every
    callback; with several calls in flight their starts and results arrive in bursts and share one wake-up.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.items: collections.deque[Callable[[], object]] = collections.deque()
        self.armed = False
        self.lock = threading.Lock()

    def put(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` soon on the loop; raises RuntimeError if that loop is closed."""
        self.items.append(callback)
        with self.lock:
            if self.armed:
                return
            self.armed = True
        try:
            self.loop.call_soon_threadsafe(self._drain)
        except RuntimeError:
            with self.lock:
                self.armed = False
            raise

    def _drain(self) -> None:
        with self.lock:
            self.armed = False  # anything put from here on arms a new wake-up; nothing is left behind
        items = self.items
        while items:
            callback = items.popleft()
            try:
                callback()
            except Exception:  # one failing callback must not strand the others
                log.exception("MCP client callback failed")


_INBOXES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Inbox] = weakref.WeakKeyDictionary()
_INBOXES_LOCK = threading.Lock()


def _inbox_of(loop: asyncio.AbstractEventLoop) -> _Inbox:
    inbox = _INBOXES.get(loop)
    if inbox is None:
        with _INBOXES_LOCK:
            inbox = _INBOXES.get(loop)
            if inbox is None:
                inbox = _INBOXES[loop] = _Inbox(loop)
    return inbox


class _Hop:
    """One coroutine run on the client's loop for a caller on another loop; the result goes back through its inbox."""

    __slots__ = ("back", "cancelled", "coro", "task", "waiter")

    def __init__(self, coro: Awaitable[Any], waiter: asyncio.Future[Any], back: _Inbox) -> None:
        self.coro = coro
        self.waiter = waiter
        self.back = back
        self.task: asyncio.Task[Any] | None = None
        self.cancelled = False

    def start(self) -> None:  # on the client's loop
        if self.cancelled:
            self.coro.close()  # type: ignore[attr-defined]
            return
        self.task = asyncio.get_running_loop().create_task(self.coro)  # type: ignore[arg-type]
        self.task.add_done_callback(self._finished)

    def cancel(self) -> None:  # on the client's loop
        self.cancelled = True
        if self.task is not None:
            self.task.cancel()

    def _finished(self, task: asyncio.Task[Any]) -> None:  # on the client's loop
        try:
            self.back.put(lambda: self._deliver(task))
        except RuntimeError:  # the caller's loop is closed: nobody waits any more
            if not task.cancelled():
                task.exception()

    def _deliver(self, task: asyncio.Task[Any]) -> None:  # on the caller's loop
        exc = None if task.cancelled() else task.exception()  # (retrieved even when nobody waits any more)
        if self.waiter.done():  # the caller was cancelled
            return
        if task.cancelled():  # not by this caller: the client was closed under the call
            self.waiter.set_exception(McpConnectionError("the MCP client was closed during the call"))
        elif exc is not None:
            self.waiter.set_exception(exc)
        else:
            self.waiter.set_result(task.result())


def validate_arguments(spec: types.Tool, args: Any, max_chars: int, schemas: ToolSchemas | None = None) -> None:
    """Refuse arguments that are too large or do not match the tool's input schema, before sending them.

    ``schemas`` is the tool's compiled :class:`ToolSchemas` (compiled here when not given).
    """
    if not isinstance(args, dict):
        raise ToolInputError(f"arguments for {spec.name!r} must be an object, got {type(args).__name__}")
    try:
        size = len(json.dumps(args, ensure_ascii=False))
    except (TypeError, ValueError) as exc:
        raise ToolInputError(f"arguments for {spec.name!r} are not JSON: {exc}") from None
    if size > max_chars:
        raise ToolInputError(f"arguments for {spec.name!r} are {size} characters; the limit is {max_chars}")
    schemas = schemas or ToolSchemas(spec)
    if schemas.error is not None or schemas.input is None:  # refused before sending, as a bad call would be
        raise McpToolError(schemas.error or f"MCP tool {spec.name!r} has no usable input schema")
    try:
        if next(schemas.input.iter_errors(args), None) is None:
            return
        errors = sorted(schemas.input.iter_errors(args), key=lambda e: list(e.absolute_path))
    except Unresolvable as exc:
        raise McpToolError(f"the input schema of MCP tool {spec.name!r} refers to {exc.ref!r}, which is not "
                           "in the schema (the client never fetches schemas)") from None
    shown = "; ".join(f"{'/'.join(str(p) for p in e.absolute_path) or '(arguments)'}: {e.message}"
                      for e in errors[:3])
    raise ToolInputError(f"arguments for {spec.name!r} do not match its input schema: {shown}")


def check_structured_result(schemas: ToolSchemas, result: types.CallToolResult) -> None:
    """Refuse a successful result whose structured content does not match the tool's declared output schema."""
    if result.isError:
        return
    if schemas.error is not None:
        raise McpToolError(schemas.error)
    if schemas.output is None:
        return
    if result.structuredContent is None:
        raise McpToolError(f"MCP tool {schemas.name!r} declares an output schema but returned no structured content")
    try:
        error = next(schemas.output.iter_errors(result.structuredContent), None)
    except Unresolvable as exc:
        raise McpToolError(f"the output schema of MCP tool {schemas.name!r} refers to {exc.ref!r}, which is not "
                           "in the schema (the client never fetches schemas)") from None
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(result)"
        raise McpToolError(f"MCP tool {schemas.name!r} returned structured content that does not match its "
                           f"output schema: {where}: {error.message}")


def schema_model(name: str, schema: dict[str, Any]) -> type[BaseModel]:
    """A pydantic class whose JSON schema is exactly ``schema`` (what tierflow's prompts and planners read)."""
    model = create_model(f"{name}_args", __config__=ConfigDict(extra="allow"))
    frozen = json.loads(json.dumps(schema))

    def model_json_schema(cls: type[BaseModel], *args: Any, **kwargs: Any) -> dict[str, Any]:
        return json.loads(json.dumps(frozen))

    model.model_json_schema = classmethod(model_json_schema)  # type: ignore[method-assign,assignment]
    return model


class McpTool(BaseTool):
    """A tool of an MCP server, called through the client's pooled sessions."""

    server: str
    remote_name: str
    allow_roles: list[str] | None = None
    _client: McpClient = PrivateAttr()
    _schema_model: type[BaseModel] = PrivateAttr()

    @classmethod
    def from_mcp(cls, client: McpClient, server: str, config: McpServerConfig, tool: types.Tool) -> McpTool:
        schema = dict(tool.inputSchema or {"type": "object", "properties": {}})
        schema.setdefault("properties", {})
        made = cls(name=config.prefix + tool.name, description=(tool.description or tool.title or tool.name).strip(),
                   args_schema=schema, server=server, remote_name=tool.name, allow_roles=config.allow_roles)
        made._client = client
        made._schema_model = schema_model(made.name, schema)
        return made

    @property
    def tool_call_schema(self) -> type[BaseModel]:  # type: ignore[override]
        return self._schema_model

    def _run(self, config: RunnableConfig, **kwargs: Any) -> str:
        check_allowed(self.name, self.allow_roles, config)
        return self._client.call(self.server, self.remote_name, kwargs)

    async def _arun(self, config: RunnableConfig, **kwargs: Any) -> str:
        check_allowed(self.name, self.allow_roles, config)
        return await self._client.acall(self.server, self.remote_name, kwargs)
