"""The sessions of one MCP server: pooling, its concurrency limit, reconnecting before a send (never after), and
the mapping of SDK and transport failures to :class:`McpToolError` and its subclasses."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any, TextIO

import anyio
import httpx
from mcp import ClientSession, McpError, types
from mcp.types import CONNECTION_CLOSED

from tierflow.tools.mcp.config import McpServerConfig
from tierflow.tools.mcp.errors import McpConnectionError, McpTimeoutError, McpToolError, describe, log
from tierflow.tools.mcp.schemas import ToolSchemas
from tierflow.tools.mcp.session import CLOSED, Session

# Errors that mean the transport under a session is gone; the session is dropped and reopened on next use.
_TRANSPORT_ERRORS = (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, httpx.TransportError,
                     BrokenPipeError, ConnectionError, EOFError)
_MAYBE_RAN = "the call may or may not have run, so it is not retried; the server is restarted for the next call"


class ServerPool:
    """The sessions of one server, its concurrency limit, and reconnection after failures."""

    def __init__(self, name: str, config: McpServerConfig, errlog: TextIO) -> None:
        self.name = name
        self.config = config
        self.errlog = errlog
        size = config.sessions()
        self.slots: list[Session | None] = [None] * size
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

    async def _session(self, index: int) -> Session:
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
            fresh = Session(self.name, self.config, self.errlog)
            try:
                await fresh.open()
            except asyncio.CancelledError:  # the call's deadline passed during the handshake
                self._close_later(fresh)
                raise
            self.slots[index] = fresh
            return fresh

    def _close_later(self, session: Session) -> None:
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

    async def _send(self, holder: Session, tool: str, request: types.ClientRequest, timeout_s: float,
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
            raise _NotSent(describe(exc)) from None
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
            holder.mark_dead(describe(exc))
            raise McpConnectionError(f"MCP server {self.name!r} failed during {tool!r} ({describe(exc)}); "
                                     f"{_MAYBE_RAN}") from None
        except asyncio.CancelledError:
            if task in holder.failed:  # cancelled by Session._fail_calls: its server died under the call
                holder.failed.discard(task)
                if task.uncancel() == 0:  # and by nobody else (a deadline, the caller): report the death
                    if holder.death == CLOSED:
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
