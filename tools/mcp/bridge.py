"""The event loop an McpClient's sessions live on, and the way in to it from other threads (a concurrent future)
and from coroutines on other loops (awaited without blocking them); cancelling the caller cancels the call."""

# Why not anyio's BlockingPortal (start_task_soon / call_async), which does the same: measured side by side
# (issue #14, 2 cores), a portal hop costs 2-3x the CPU of this one (87-118 µs vs 30-50 µs per call), and with
# 8 MCP calls in flight bench/mcp.py's threaded client lost 2-27% of its calls/s (median ~18%) and used 8-35%
# more client CPU per call. The difference is _Inbox's batching: starts and results that arrive together share
# one wake-up of the receiving loop, where the portal pays a cancel scope, a task-group task and a
# call_soon_threadsafe each way per call.

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tierflow.tools.mcp.errors import McpConnectionError, McpToolError, log

T = TypeVar("T")
CLOSED_DURING_CALL = "the MCP client was closed during the call"


class Bridge:
    """One event loop, on a thread of its own (:meth:`start`) or the caller's (:meth:`attach`), and calls into it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, thread: threading.Thread, owns_thread: bool) -> None:
        self.loop = loop
        self.thread = thread  # the thread that runs ``loop``
        self.owns_thread = owns_thread
        self.inbox = _Inbox(loop)

    @classmethod
    def start(cls, name: str) -> Bridge:
        """A new event loop on a daemon thread called ``name``; end it with :meth:`stop`."""
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(started.set)
            loop.run_forever()

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        started.wait()
        return cls(loop, thread, True)

    @classmethod
    def attach(cls) -> Bridge:
        """The running loop (call this on it), reachable from other threads and loops while it runs."""
        return cls(asyncio.get_running_loop(), threading.current_thread(), False)

    def running(self) -> bool:
        """Whether the loop still runs, so calls can reach it."""
        return self.loop.is_running() and not self.loop.is_closed()

    def submit(self, fn: Callable[..., Awaitable[T]], *args: Any) -> concurrent.futures.Future[T]:
        """Start ``fn(*args)`` on the loop from another thread; cancelling the future cancels the call."""
        coro = fn(*args)
        try:
            return asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        except RuntimeError:  # the loop is closed
            coro.close()  # type: ignore[attr-defined]
            raise McpToolError("the MCP client is closed") from None

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Await ``fn(*args)`` run on the bridge's loop, from a coroutine on another loop."""
        coro = fn(*args)
        hop = _Hop(coro, asyncio.get_running_loop().create_future(), _inbox_of(asyncio.get_running_loop()))
        try:
            self.inbox.put(hop.start)
        except RuntimeError:  # the bridge's loop was closed in the meantime
            coro.close()  # type: ignore[attr-defined]
            raise McpToolError("the MCP client is closed") from None
        try:
            return await hop.waiter
        except asyncio.CancelledError:  # cancelling the caller cancels the call on the bridge's loop
            with contextlib.suppress(RuntimeError):
                self.inbox.put(hop.cancel)
            raise

    def stop(self) -> None:
        """Stop and close a loop of the bridge's own (a caller's loop is left alone); from another thread."""
        if not self.owns_thread:
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self.thread is not threading.current_thread():
            self.thread.join(timeout=10)
        if not self.loop.is_running():
            self.loop.close()


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
    """One coroutine run on the bridge's loop for a caller on another loop; the result goes back through its inbox."""

    __slots__ = ("back", "cancelled", "coro", "task", "waiter")

    def __init__(self, coro: Awaitable[Any], waiter: asyncio.Future[Any], back: _Inbox) -> None:
        self.coro = coro
        self.waiter = waiter
        self.back = back
        self.task: asyncio.Task[Any] | None = None
        self.cancelled = False

    def start(self) -> None:  # on the bridge's loop
        if self.cancelled:
            self.coro.close()  # type: ignore[attr-defined]
            return
        self.task = asyncio.get_running_loop().create_task(self.coro)  # type: ignore[arg-type]
        self.task.add_done_callback(self._finished)

    def cancel(self) -> None:  # on the bridge's loop
        self.cancelled = True
        if self.task is not None:
            self.task.cancel()

    def _finished(self, task: asyncio.Task[Any]) -> None:  # on the bridge's loop
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
            self.waiter.set_exception(McpConnectionError(CLOSED_DURING_CALL))
        elif exc is not None:
            self.waiter.set_exception(exc)
        else:
            self.waiter.set_result(task.result())
