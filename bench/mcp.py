"""MCP tool calls per second, raw SDK ClientSession vs tierflow's pooled client, stdio and HTTP; prints one JSON object.

Both clients call the same tool on the same kind of server in the same run: stdio → tests/mcp_raw_server.py
``echo``, HTTP → the calculator server's ``calculate``. tierflow's client declares the server stateless and
pools ``--pool`` sessions. Targets: ≥ 1.0× raw sequential, ≥ 1.8× raw with 8 in flight.
Run: ``.venv/bin/python bench/mcp.py [--calls 300] [--pool 4]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

# This file is called mcp.py: keep its own folder off the path so `import mcp` finds the SDK.
REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

from tools.mcp.client import McpClient  # noqa: E402
from tools.mcp.config import McpServerConfig  # noqa: E402

TOKEN = "bench-token"


async def rate(call: Callable[[int], Awaitable[object]], calls: int, in_flight: int) -> float:
    """Calls per second for ``calls`` calls with at most ``in_flight`` outstanding."""
    gate = asyncio.Semaphore(in_flight)

    async def one(i: int) -> None:
        async with gate:
            await call(i)

    for i in range(10):  # warm up
        await call(i)
    started = time.perf_counter()
    if in_flight == 1:
        for i in range(calls):
            await call(i)
    else:
        await asyncio.gather(*(one(i) for i in range(calls)))
    return calls / (time.perf_counter() - started)


async def raw_sdk(transport: str, url: str, tool: str, args: Callable[[int], dict], calls: int) -> dict[str, float]:
    async def measure(session: ClientSession) -> dict[str, float]:
        await session.initialize()

        async def call(i: int) -> object:
            return await session.call_tool(tool, args(i))

        return {"sequential": await rate(call, calls, 1), "in_flight_8": await rate(call, calls * 2, 8)}

    if transport == "stdio":
        params = StdioServerParameters(command=sys.executable, args=["-m", "tests.mcp_raw_server"], cwd=str(REPO))
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            return await measure(session)
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as http, \
            streamable_http_client(url, http_client=http) as (read, write, _), ClientSession(read, write) as session:
        return await measure(session)


async def tierflow(config: McpServerConfig, tool: str, args: Callable[[int], dict], calls: int) -> dict[str, float]:
    client = McpClient({"s": config}).start()
    try:
        async def call(i: int) -> object:
            return await client.acall("s", tool, args(i))

        return {"sequential": await rate(call, calls, 1), "in_flight_8": await rate(call, calls * 2, 8)}
    finally:
        client.close()


def start_http_server() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "mcp_servers.calculator", "--http", "--port", str(port),
                             "--token", TOKEN], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/mcp"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the calculator HTTP server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--pool", type=int, default=4)
    opts = parser.parse_args()
    os.chdir(REPO)
    out: dict[str, object] = {"calls": opts.calls, "pool_size": opts.pool, "cpus": os.cpu_count()}

    def echo(i: int) -> dict:
        return {"text": f"hello {i}"}

    def calc(i: int) -> dict:
        return {"expression": f"{i}*{i}+1"}

    stdio_cfg = McpServerConfig(command=sys.executable, args=["-m", "tests.mcp_raw_server"], cwd=str(REPO),
                                stateless=True, pool_size=opts.pool, max_concurrency=16)
    out["stdio"] = {"raw_sdk": asyncio.run(raw_sdk("stdio", "", "echo", echo, opts.calls)),
                    "tierflow": asyncio.run(tierflow(stdio_cfg, "echo", echo, opts.calls))}
    proc, url = start_http_server()
    try:
        http_cfg = McpServerConfig(transport="http", url=url, token=TOKEN, stateless=True, pool_size=opts.pool,
                                   max_concurrency=16)
        out["http"] = {"raw_sdk": asyncio.run(raw_sdk("http", url, "calculate", calc, opts.calls)),
                       "tierflow": asyncio.run(tierflow(http_cfg, "calculate", calc, opts.calls))}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    for transport in ("stdio", "http"):
        block = out[transport]
        for mode in ("sequential", "in_flight_8"):
            block[mode + "_ratio"] = round(block["tierflow"][mode] / block["raw_sdk"][mode], 2)  # type: ignore[index]
        for who in ("raw_sdk", "tierflow"):
            block[who] = {k: round(v, 1) for k, v in block[who].items()}  # type: ignore[index]
    out["targets"] = {"sequential_ratio": 1.0, "in_flight_8_ratio": 1.8}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
