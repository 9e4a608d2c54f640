"""One MCP session on its transport (stdio process or streamable HTTP), watched so that a dead server's calls fail
at once instead of waiting for their timeout; and the W3C trace context those calls carry."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from contextlib import AsyncExitStack
from typing import Any, TextIO

import httpx
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tierflow.tools.mcp.config import McpServerConfig
from tierflow.tools.mcp.errors import McpConnectionError, McpTimeoutError, describe, log

# How long answers a stdio server wrote before its process exited may still take to arrive.
_EXIT_DRAIN_S = 0.5
CLOSED = "the MCP client closed the session"
# W3C trace context only (never baggage): trace attributes such as user ids stay inside the process.
_TRACE_CONTEXT = TraceContextTextMapPropagator()
_TRACE_KEYS = ("traceparent", "tracestate")


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


class Session:
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
                ready.set_exception(McpConnectionError(f"cannot open MCP server {self.name!r}: {describe(exc)}"))
            elif not self._closing.is_set():
                log.warning("MCP session %s ended: %s", self.name, describe(exc))
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
            return CLOSED
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
                task.cancel()  # the call turns this into McpConnectionError (see pool.ServerPool.call)

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
    (:meth:`Session.gone`), only later for a server whose output stays open, and ``pids()`` is empty.
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

