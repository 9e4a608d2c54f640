"""MCP tool calls per second, raw SDK ClientSession vs tierflow's pooled client, stdio and HTTP; prints one JSON object.

All clients call the same tool of the same server program in the same run, interleaved round by round (the
order rotates), each measurement after a warm-up; figures are medians over the rounds. stdio → the low-level
SDK server of tests/mcp_raw_server.py, tool ``echo`` (raw SDK: one session = one server process; tierflow:
the server declared stateless, ``--pool`` sessions = processes). HTTP → one calculator server process
(``calculate``) serving every session. tierflow's client runs two ways: ``tierflow`` is ``start()``ed on its
own loop thread (how the app and LangGraph's threads use it; async callers hop to that loop), and
``tierflow_same_loop`` is ``async with``-ed on the caller's loop.
``startup`` spawns ``tierflow mcp serve tierflow`` over stdio ``--startups`` times and gives the seconds from
spawn until ``initialize`` and ``tools/list`` are answered (medians; target ≤ 2 s on an idle 2-core machine).

Besides calls/s each entry gives the CPU time per call of the client (this process) and of the server
process(es), from /proc; ``cpu_ceiling_per_s`` = cores / (client + server CPU per call) is the most calls/s
that pair could reach with every core busy on it, so the 1.8× target can be checked against physics;
``cores_used`` is how many cores the pair actually kept busy (well under ``cpus`` when others share them).
Targets: tierflow ≥ 1.0× raw sequential, ≥ 1.8× raw with 8 in flight.
Run: ``.venv/bin/python bench/mcp.py [--calls 300] [--rounds 5] [--pool N] [--transports stdio,http,startup]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

# This file is called mcp.py: keep its own folder off the path so `import mcp` finds the SDK.
REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

from tierflow.tools.mcp.client import McpClient  # noqa: E402
from tierflow.tools.mcp.config import McpServerConfig  # noqa: E402

TOKEN = "bench-token"
TICK = os.sysconf("SC_CLK_TCK")
CLIENTS = ("raw_sdk", "tierflow", "tierflow_same_loop")
MODES = {"sequential": 1, "in_flight_8": 8}
Call = Callable[[int], Awaitable[object]]


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of one process so far (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def child_pids() -> list[int]:
    """This process's children: the stdio servers of every open client (idle ones add ~0 CPU)."""
    me, found = str(os.getpid()), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[1] == me:
                        found.append(int(entry))
            except OSError:
                continue
    return found


async def measure(call: Call, calls: int, in_flight: int, servers: Callable[[], list[int]]) -> dict[str, float]:
    """calls/s and client/server CPU µs per call for ``calls`` calls with at most ``in_flight`` outstanding."""
    for i in range(20):  # warm up (also wakes every pooled session)
        await call(i)
    gate = asyncio.Semaphore(in_flight)

    async def one(i: int) -> None:
        async with gate:
            await call(i)

    pids = servers()
    wall, client, server = time.perf_counter(), time.process_time(), sum(process_cpu(p) for p in pids)
    if in_flight == 1:
        for i in range(calls):
            await call(i)
    else:
        await asyncio.gather(*(one(i) for i in range(calls)))
    wall = time.perf_counter() - wall
    client = time.process_time() - client
    server = sum(process_cpu(p) for p in pids) - server
    return {"per_s": calls / wall, "client_cpu_us": client / calls * 1e6, "server_cpu_us": server / calls * 1e6}


async def run_transport(stack: AsyncExitStack, transport: str, url: str, pool: int | None, calls: int,
                        rounds: int, servers: Callable[[], list[int]]) -> dict[str, Any]:
    if transport == "stdio":
        tool, args = "echo", (lambda i: {"text": f"hello {i}"})
        params = StdioServerParameters(command=sys.executable, args=["-m", "tests.mcp_raw_server"], cwd=str(REPO))
        read, write = await stack.enter_async_context(stdio_client(params))
        config = McpServerConfig(command=sys.executable, args=["-m", "tests.mcp_raw_server"], cwd=str(REPO),
                                 stateless=True, pool_size=pool, max_concurrency=16)
    else:
        tool, args = "calculate", (lambda i: {"expression": f"{i}*{i}+1"})
        http = await stack.enter_async_context(httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"},
                                                                 timeout=30))
        read, write, _ = await stack.enter_async_context(streamable_http_client(url, http_client=http))
        config = McpServerConfig(transport="http", url=url, token=TOKEN, stateless=True, pool_size=pool,
                                 max_concurrency=16)
    session = await stack.enter_async_context(ClientSession(read, write))
    await session.initialize()
    threaded = McpClient({"s": config}).start()
    stack.callback(threaded.close)
    same_loop = await stack.enter_async_context(McpClient({"s": config}))
    calls_of: dict[str, Call] = {
        "raw_sdk": lambda i: session.call_tool(tool, args(i)),
        "tierflow": lambda i: threaded.acall("s", tool, args(i)),
        "tierflow_same_loop": lambda i: same_loop.acall("s", tool, args(i)),
    }
    samples: dict[str, dict[str, list[dict[str, float]]]] = {c: {m: [] for m in MODES} for c in CLIENTS}
    for r in range(rounds):
        order = CLIENTS[r % len(CLIENTS):] + CLIENTS[:r % len(CLIENTS)]
        for mode, in_flight in MODES.items():
            for client in order:
                n = calls if in_flight == 1 else calls * 2
                samples[client][mode].append(await measure(calls_of[client], n, in_flight, servers))
    n_cores = cores()
    block: dict[str, Any] = {"tool": tool, "sessions": config.sessions()}
    for client in CLIENTS:
        block[client] = {}
        for mode in MODES:
            runs = samples[client][mode]
            med = {k: statistics.median(s[k] for s in runs) for k in runs[0]}
            med["cpu_ceiling_per_s"] = n_cores / ((med["client_cpu_us"] + med["server_cpu_us"]) / 1e6)
            med["client_ceiling_per_s"] = 1e6 / med["client_cpu_us"]  # one Python process, one core at most
            med["cores_used"] = (med["client_cpu_us"] + med["server_cpu_us"]) * med["per_s"] / 1e6
            med["spread"] = [round(min(s["per_s"] for s in runs), 1), round(max(s["per_s"] for s in runs), 1)]
            block[client][mode] = {k: (round(v, 2 if k == "cores_used" else 1) if isinstance(v, float) else v)
                                   for k, v in med.items()}
    for client in CLIENTS[1:]:
        for mode in MODES:
            block[f"{client}_{mode}_ratio"] = round(block[client][mode]["per_s"] / block["raw_sdk"][mode]["per_s"], 2)
    raw8 = block["raw_sdk"]["in_flight_8"]["per_s"]
    block["in_flight_8_target_per_s"] = round(1.8 * raw8, 1)
    return block


async def startup_once() -> tuple[float, float]:
    """Seconds from spawning ``tierflow mcp serve tierflow`` to its answers to initialize and tools/list."""
    script = Path(sys.executable).with_name("tierflow")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "tierflow.cli"]
    params = StdioServerParameters(command=command[0], args=[*command[1:], "mcp", "serve", "tierflow"], cwd=str(REPO))
    with open(os.devnull, "w") as quiet:
        started = time.perf_counter()
        async with stdio_client(params, errlog=quiet) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            initialized = time.perf_counter() - started
            await session.list_tools()
            listed = time.perf_counter() - started
    return initialized, listed


def bench_startup(runs: int) -> dict[str, Any]:
    times = [asyncio.run(startup_once()) for _ in range(runs)]
    return {"command": "tierflow mcp serve tierflow", "runs": runs,
            "initialize_s": round(statistics.median(t[0] for t in times), 3),
            "tools_list_s": round(statistics.median(t[1] for t in times), 3),
            "tools_list_spread": [round(min(t[1] for t in times), 3), round(max(t[1] for t in times), 3)],
            "target_s": 2.0}


def start_http_server() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "tierflow.mcp_servers.calculator", "--http", "--port", str(port),
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


async def bench(transport: str, url: str, opts: argparse.Namespace, servers: Callable[[], list[int]]) -> dict:
    async with AsyncExitStack() as stack:
        return await run_transport(stack, transport, url, opts.pool, opts.calls, opts.rounds, servers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300, help="calls per sequential run (twice that in flight)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pool", type=int, default=None, help="tierflow's sessions (default: one per CPU)")
    parser.add_argument("--transports", default="stdio,http,startup")
    parser.add_argument("--startups", type=int, default=5, help="spawns of the tierflow server for 'startup'")
    opts = parser.parse_args()
    os.chdir(REPO)
    out: dict[str, Any] = {"calls": opts.calls, "rounds": opts.rounds, "cpus": cores(),
                           "loadavg_before": os.getloadavg()[0]}
    transports = opts.transports.split(",")
    if "stdio" in transports:
        out["stdio"] = asyncio.run(bench("stdio", "", opts, child_pids))
    if "http" in transports:
        proc, url = start_http_server()
        try:
            out["http"] = asyncio.run(bench("http", url, opts, lambda: [proc.pid]))
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    if "startup" in transports:
        out["startup"] = bench_startup(opts.startups)
    out["loadavg_after"] = os.getloadavg()[0]
    out["targets"] = {"sequential_ratio": 1.0, "in_flight_8_ratio": 1.8, "startup_tools_list_s": 2.0}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
