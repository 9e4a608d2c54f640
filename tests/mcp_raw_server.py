"""An MCP server written with the SDK's low-level ``Server`` (no FastMCP), with tools that misbehave on purpose.

Used by tests/test_mcp_client.py and bench/mcp.py: ``python -m tests.mcp_raw_server`` serves stdio.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import anyio
import mcp.types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

server: Server = Server("raw-test-server")
state = {"counter": 0, "inflight": 0, "peak": 0}


def _schema(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


TOOLS = [
    types.Tool(name="echo", description="Return the text.", inputSchema=_schema(
        {"text": {"type": "string", "maxLength": 10000}}, ["text"])),
    types.Tool(name="add", description="Add two integers.", inputSchema=_schema(
        {"a": {"type": "integer"}, "b": {"type": "integer"}}, ["a", "b"])),
    types.Tool(name="pid", description="The server's process id.", inputSchema=_schema({}, [])),
    types.Tool(name="counter", description="Count calls in this session.", inputSchema=_schema({}, [])),
    types.Tool(name="sleep", description="Sleep, then answer.", inputSchema=_schema(
        {"seconds": {"type": "number", "minimum": 0}}, ["seconds"])),
    types.Tool(name="die", description="Exit the process in the middle of the call.", inputSchema=_schema({}, [])),
    types.Tool(name="hold_output", description="Start a child process that keeps this server's stdout open for "
               "the given seconds (as a helper process of a real server might); return the child's pid.",
               inputSchema=_schema({"seconds": {"type": "number", "minimum": 0}}, ["seconds"])),
    types.Tool(name="big", description="Return n characters.", inputSchema=_schema(
        {"n": {"type": "integer", "minimum": 0}}, ["n"])),
    types.Tool(name="fail", description="Always fails.", inputSchema=_schema({}, [])),
    types.Tool(name="peak", description="Hold the call ms milliseconds; return the most calls seen at once.",
               inputSchema=_schema({"ms": {"type": "integer", "minimum": 0}}, ["ms"])),
]


@server.list_tools()
async def list_tools() -> list[types.Tool]:
    return TOOLS


@server.call_tool(validate_input=False)
async def call_tool(name: str, arguments: dict[str, Any]) -> list[types.TextContent]:
    if name == "echo":
        text = str(arguments["text"])
    elif name == "add":
        text = str(int(arguments["a"]) + int(arguments["b"]))
    elif name == "pid":
        text = str(os.getpid())
    elif name == "counter":
        state["counter"] += 1
        text = str(state["counter"])
    elif name == "sleep":
        await anyio.sleep(float(arguments["seconds"]))
        text = "slept"
    elif name == "die":
        os._exit(3)
    elif name == "hold_output":  # the child inherits fd 1, so the client sees no end of output when we exit
        child = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({float(arguments['seconds'])})"],
                                 stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        text = str(child.pid)
    elif name == "big":
        text = "x" * int(arguments["n"])
    elif name == "fail":
        raise ValueError("the fail tool always fails")
    elif name == "peak":
        state["inflight"] += 1
        state["peak"] = max(state["peak"], state["inflight"])
        try:
            await anyio.sleep(int(arguments["ms"]) / 1000)
        finally:
            state["inflight"] -= 1
        text = str(state["peak"])
    else:
        raise ValueError(f"unknown tool {name}")
    return [types.TextContent(type="text", text=text)]


async def main() -> None:
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
