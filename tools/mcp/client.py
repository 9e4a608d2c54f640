"""Pooled, long-lived MCP client sessions whose tools are LangChain tools usable with ``invoke`` and ``ainvoke``;
the facade over ``bridge``, ``pool``, ``session``, ``schemas`` and ``tools``, and home of every public name."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import sys
import threading
import weakref
from collections.abc import Mapping
from typing import Any, TextIO

from langchain_core.tools import BaseTool

from tierflow.tools.errors import ToolLayerError, UnknownToolError
from tierflow.tools.mcp.bridge import CLOSED_DURING_CALL, Bridge
from tierflow.tools.mcp.config import McpServerConfig
from tierflow.tools.mcp.errors import McpConnectionError, McpTimeoutError, McpToolError, describe, log
from tierflow.tools.mcp.pool import ServerPool
from tierflow.tools.mcp.schemas import ToolSchemas, check_structured_result, validate_arguments
from tierflow.tools.mcp.session import trace_meta
from tierflow.tools.mcp.tools import CUT_MARKER, McpTool, cut, result_text, schema_model
from tierflow.tools.policy import permits

__all__ = ["CUT_MARKER", "McpClient", "McpConnectionError", "McpTimeoutError", "McpTool", "McpToolError",
           "ToolSchemas", "check_structured_result", "cut", "result_text", "schema_model", "trace_meta",
           "validate_arguments"]

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
        self._bridge: Bridge | None = None  # the loop the sessions live on; None until started and once closed
        self._pools: dict[str, ServerPool] = {}
        self._tools: list[McpTool] = []

    # lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> McpClient:
        """Open every server's sessions and discover its tools; raises McpToolError naming a failing server."""
        if self._bridge is not None:
            return self
        self._bridge = Bridge.start("tierflow-mcp")
        _LIVE.add(self)
        try:
            self._bridge.submit(self._astart).result()
        except BaseException:
            self.close()
            raise
        return self

    async def astart(self) -> McpClient:
        """Open every server's sessions on the running loop (see :meth:`start`); end them with :meth:`aclose`."""
        if self._bridge is not None:
            return self
        self._bridge = Bridge.attach()
        try:
            await self._astart()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def aclose(self) -> None:
        """End every session of a client; from the loop that runs it, or any other (then it hops over)."""
        bridge = self._bridge
        if bridge is None:
            return
        if not bridge.owns_thread and asyncio.get_running_loop() is bridge.loop:
            self._bridge = None
            await self._aclose()
            return
        await asyncio.to_thread(self.close)

    async def __aenter__(self) -> McpClient:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _astart(self) -> None:
        self._pools = {name: ServerPool(name, cfg, self.errlog) for name, cfg in self.servers.items()}
        listed = await asyncio.gather(*(pool.start() for pool in self._pools.values()), return_exceptions=True)
        tools: list[McpTool] = []
        for (name, pool), result in zip(self._pools.items(), listed, strict=True):
            if isinstance(result, BaseException):
                raise result if isinstance(result, ToolLayerError) else McpToolError(
                    f"MCP server {name!r}: {describe(result)}")
            tools += [McpTool.from_mcp(self, name, pool.config, tool) for tool in result]
        names = [t.name for t in tools]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise McpToolError(f"MCP tool names clash: {', '.join(dupes)}; set 'prefix' on a server")
        self._tools = tools

    def close(self) -> None:
        """End every session (stdio processes exit) and stop the loop thread; safe to call twice."""
        bridge = self._bridge
        if bridge is None:
            return
        if not bridge.owns_thread:
            if bridge.thread is threading.current_thread():
                raise McpToolError("this MCP client runs on this thread's event loop: use 'await client.aclose()'")
            self._bridge = None
            if bridge.running():
                bridge.submit(self._aclose).result(timeout=30)
            else:
                log.warning("the event loop of this MCP client is gone; its sessions were not closed politely")
            return
        self._bridge = None
        _LIVE.discard(self)
        try:
            bridge.submit(self._aclose).result(timeout=30)
        except Exception as exc:  # closing must not raise over the caller's own error
            log.warning("closing MCP sessions: %s", describe(exc))
        finally:
            bridge.stop()

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
        """The discovered tool called ``name`` (with its server's prefix); raises UnknownToolError."""
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
        bridge = self._bridge
        call = (server, tool, dict(args or {}), timeout_s, trace_meta())
        if bridge is None:
            raise McpToolError("the MCP client is closed")
        if asyncio.get_running_loop() is bridge.loop:
            return await self._acall(*call)
        return await bridge.run(self._acall, *call)

    def call(self, server: str, tool: str, args: Mapping[str, Any] | None = None,
             timeout_s: float | None = None) -> str:
        """Blocking :meth:`acall` for threads; an interrupt of the waiting thread cancels the call."""
        pool = self._pool(server)
        bridge = self._bridge
        if bridge is None:
            raise McpToolError("the MCP client is closed")
        if not bridge.owns_thread and bridge.thread is threading.current_thread():
            raise McpToolError(f"a blocking call of {tool!r} on the thread whose event loop runs the MCP client "
                               "would deadlock; use 'await client.acall(...)' or 'await tool.ainvoke(...)'")
        fut = bridge.submit(self._acall, server, tool, dict(args or {}), timeout_s, trace_meta())
        try:
            return fut.result(timeout=(timeout_s or pool.config.timeout_s) + pool.config.connect_timeout_s + 5)
        except McpToolError:
            raise
        except concurrent.futures.CancelledError:  # not by this caller: the client was closed under the call
            raise McpConnectionError(CLOSED_DURING_CALL) from None
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
    def _pool(self, server: str) -> ServerPool:
        self._require_started()
        try:
            return self._pools[server]
        except KeyError:
            raise McpToolError(f"unknown MCP server {server!r}; declared: {', '.join(self._pools) or '(none)'}") \
                from None

    def _require_started(self) -> None:
        if self._bridge is None:
            raise McpToolError("the MCP client is not started (use start() or a with block)")
