"""Errors of the MCP client and how failures are described and logged, shared by its session, pool and client."""

from __future__ import annotations

import logging

from tierflow.tools.errors import ToolLayerError

# One logger for the whole MCP client, under the name it has always had (the one users configure).
log = logging.getLogger("tierflow.tools.mcp.client")


class McpToolError(ToolLayerError):
    """An MCP tool call failed: the server reported an error, or the server could not be reached."""


class McpTimeoutError(McpToolError, TimeoutError):
    """An MCP server did not answer within the call's (or connection's) time limit."""


class McpConnectionError(McpToolError, ConnectionError):
    """The MCP server's process or connection went away; the next call reconnects."""


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, every member of an exception group joined with ``; ``."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
