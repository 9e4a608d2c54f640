"""A2A round trip: tierflow's A2A server vs a bare a2a-sdk agent on the same scripted model; prints one JSON object.

Both servers are real processes on loopback and both answer with the same scripted chat model (tests/a2a_support.py,
``TaskEchoModel``) given a fixed latency (``--latency-ms``, a stand-in for a small model's call), so what differs is
what each adds around that call. ``tierflow``: ``tierflow a2a serve`` running the orchestrator (intent fixed, the
one-step template plan, one worker call, SQLite checkpoints and task store, node and token streaming). ``bare``: an
agent built from the a2a-sdk's classes alone (in-memory task store) that calls the model once and streams its chunks.
The a2a-sdk client sends the same requests to both, alternating round by round; figures are medians.

- ``ratio_send`` / ``ratio_stream``: tierflow's round trip over the bare agent's (``message/send`` and
  ``message/stream``); target ≤ 1.2. ``overhead_ms``: the difference, what tierflow adds per request.
- ``server_cpu_ms_per_request``: CPU time each server process spent per request (from /proc): what the ratio would
  come to on idle cores, where wall time is not stretched by other processes.
- ``--no-checkpoints`` runs tierflow's graph without its SQLite checkpointer: most of the overhead is the durable
  runs' synced checkpoint writes (a step's checkpoint is on disk before the next step starts), not A2A.
- ``first_event_delay_ms``: for streamed runs, from the moment the graph emitted its first node event (server clock,
  carried in the event) to the client receiving it; target ≤ 50 ms. ``event_delay_ms`` covers every node event.
Run: ``.venv/bin/python bench/a2a.py [--requests 20] [--rounds 3] [--latency-ms 250]``.
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
import tempfile
import time
from pathlib import Path
from typing import Any

# This file is called a2a.py: keep its own folder off the path so `import a2a` finds the SDK.
REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO))

LATENCY_ENV = "TIERFLOW_BENCH_MODEL_LATENCY_MS"
NO_CHECKPOINTS_ENV = "TIERFLOW_BENCH_NO_CHECKPOINTS"


def graph(ctx: Any) -> Any:
    """tierflow's orchestrator on the scripted model with the bench's fixed latency."""
    from tests.a2a_support import scripted_deps
    from tierflow.graphs.orchestrator import build_orchestrator

    latency = float(os.environ.get(LATENCY_ENV, "0")) / 1000
    checkpointer = None if os.environ.get(NO_CHECKPOINTS_ENV) else ctx.checkpointer
    return build_orchestrator(scripted_deps(latency_s=latency), checkpointer)


def bare_app(url: str, latency_s: float) -> Any:
    """An a2a-sdk agent that answers with one call of the same scripted model, streaming its chunks."""
    from a2a.helpers import new_text_part
    from a2a.server.agent_execution import AgentExecutor, RequestContext
    from a2a.server.events import EventQueue
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
    from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
    from a2a.types import a2a_pb2 as pb
    from langchain_core.messages import HumanMessage
    from starlette.applications import Starlette

    from tests.a2a_support import TaskEchoModel

    model = TaskEchoModel(latency_s=latency_s)

    class Bare(AgentExecutor):
        async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
            task = pb.Task(id=str(context.task_id), context_id=str(context.context_id),
                           status=pb.TaskStatus(state=pb.TaskState.TASK_STATE_SUBMITTED), history=[context.message])
            await event_queue.enqueue_event(task)
            updater = TaskUpdater(event_queue, task.id, task.context_id)
            await updater.start_work()
            prompt = f"Your task: Explain clearly and briefly: {context.get_user_input()}"
            chunks = await asyncio.to_thread(lambda: [c.text for c in model.stream([HumanMessage(prompt)])])
            for index, chunk in enumerate(c for c in chunks if c):
                await updater.add_artifact([new_text_part(chunk)], artifact_id="answer", append=index > 0)
            await updater.add_artifact([new_text_part("".join(chunks))], artifact_id="answer", last_chunk=True)
            await updater.complete()

        async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
            await TaskUpdater(event_queue, str(context.task_id), str(context.context_id)).cancel()

    card = pb.AgentCard(name="bare", description="bare a2a-sdk agent", version="1",
                        supported_interfaces=[pb.AgentInterface(url=url, protocol_binding="JSONRPC",
                                                                protocol_version="1.0")],
                        capabilities=pb.AgentCapabilities(streaming=True), default_input_modes=["text/plain"],
                        default_output_modes=["text/plain"],
                        skills=[pb.AgentSkill(id="answer", name="answer", description="answers", tags=["bench"])])
    handler = DefaultRequestHandler(agent_executor=Bare(), task_store=InMemoryTaskStore(), agent_card=card)
    return Starlette(routes=[*create_agent_card_routes(card), *create_jsonrpc_routes(handler, rpc_url="/")])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server {url} exited with {proc.returncode}")
        try:
            if httpx.get(url + ".well-known/agent-card.json", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server {url} did not start in {timeout_s} s")


async def round_trip(client: Any, text: str) -> tuple[float, list[float]]:
    """Seconds for one request to end, and for each node event the delay from its emission to its receipt."""
    from a2a.types import a2a_pb2 as pb
    from google.protobuf.json_format import MessageToDict

    request = pb.SendMessageRequest(message=pb.Message(role=pb.Role.ROLE_USER, message_id=f"b{time.monotonic_ns()}",
                                                       parts=[pb.Part(text=text)]))
    delays: list[float] = []
    started = time.perf_counter()
    async for event in client.send_message(request):
        if event.WhichOneof("payload") == "status_update":
            facts = MessageToDict(event.status_update.status.message.metadata).get("tierflow") or {}
            if "at" in facts:
                delays.append(time.time() - float(facts["at"]))
    return time.perf_counter() - started, delays


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(urls: dict[str, str], requests: int, rounds: int, pids: dict[str, int]) -> dict[str, Any]:
    from a2a.client import ClientConfig, create_client

    clients = {(name, streaming): await create_client(url, client_config=ClientConfig(streaming=streaming))
               for name, url in urls.items() for streaming in (False, True)}
    for client in clients.values():  # warm-up: graph built, connections open
        for _ in range(3):
            await round_trip(client, "warm up")
    times: dict[tuple[str, bool], list[float]] = {key: [] for key in clients}
    cpu_before = {name: cpu_s(pid) for name, pid in pids.items()}
    first: list[float] = []
    every: list[float] = []
    order = list(clients)
    for rnd in range(rounds):
        for key in order[rnd % len(order):] + order[:rnd % len(order)]:
            for i in range(requests):
                took, delays = await round_trip(clients[key], f"Why is the sky blue? ({rnd}.{i})")
                times[key].append(took)
                if key == ("tierflow", True) and delays:
                    first.append(delays[0])
                    every.extend(delays)
    cpu = {name: (cpu_s(pid) - cpu_before[name]) / (2 * rounds * requests) for name, pid in pids.items()}
    for client in clients.values():
        await client.close()
    ms = {f"{name}_{'stream' if streaming else 'send'}_ms": round(statistics.median(v) * 1000, 2)
          for (name, streaming), v in times.items()}
    out: dict[str, Any] = dict(ms)
    out["ratio_send"] = round(ms["tierflow_send_ms"] / ms["bare_send_ms"], 3)
    out["ratio_stream"] = round(ms["tierflow_stream_ms"] / ms["bare_stream_ms"], 3)
    out["overhead_ms"] = {"send": round(ms["tierflow_send_ms"] - ms["bare_send_ms"], 2),
                          "stream": round(ms["tierflow_stream_ms"] - ms["bare_stream_ms"], 2)}
    out["server_cpu_ms_per_request"] = {name: round(value * 1000, 2) for name, value in cpu.items()}
    out["first_event_delay_ms"] = {"median": round(statistics.median(first) * 1000, 2),
                                   "p90": round(sorted(first)[int(0.9 * (len(first) - 1))] * 1000, 2),
                                   "max": round(max(first) * 1000, 2)}
    out["event_delay_ms"] = {"median": round(statistics.median(every) * 1000, 2),
                             "max": round(max(every) * 1000, 2), "events": len(every)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20, help="requests per client per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=250.0, help="the scripted model's fixed latency")
    parser.add_argument("--no-checkpoints", action="store_true", help="run tierflow's graph without its SQLite "
                        "checkpointer (what the A2A layer costs without the durable runs' synced writes)")
    parser.add_argument("--serve-bare", type=int, default=None, help=argparse.SUPPRESS)  # internal: bare server
    opts = parser.parse_args()
    if opts.serve_bare is not None:
        import uvicorn

        url = f"http://127.0.0.1:{opts.serve_bare}/"
        uvicorn.run(bare_app(url, opts.latency_ms / 1000), host="127.0.0.1", port=opts.serve_bare,
                    log_level="warning")
        return
    home = Path(tempfile.mkdtemp(prefix="tierflow-bench-a2a-"))
    env = {**os.environ, "TIERFLOW_HOME": str(home), "TIERFLOW_MEMORY__ENABLED": "false", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", LATENCY_ENV: str(opts.latency_ms), "PYTHONPATH": str(REPO),
           **({NO_CHECKPOINTS_ENV: "1"} if opts.no_checkpoints else {})}
    ports = {"tierflow": free_port(), "bare": free_port()}
    procs = {
        "tierflow": subprocess.Popen([sys.executable, "-m", "tierflow.cli", "a2a", "serve", "--graph",
                                      "bench.a2a:graph", "--port", str(ports["tierflow"])], cwd=REPO, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        "bare": subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve-bare", str(ports["bare"]),
                                  "--latency-ms", str(opts.latency_ms)], cwd=REPO, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    }
    urls = {name: f"http://127.0.0.1:{port}/" for name, port in ports.items()}
    try:
        for name, proc in procs.items():
            wait_ready(urls[name], proc)
        result = asyncio.run(measure(urls, opts.requests, opts.rounds, {n: p.pid for n, p in procs.items()}))
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(10)
    print(json.dumps({"latency_ms": opts.latency_ms, "requests": opts.requests * opts.rounds,
                      "checkpoints": not opts.no_checkpoints, **result,
                      "targets": {"ratio": 1.2, "first_event_delay_ms": 50},
                      "cpus": len(os.sched_getaffinity(0)), "loadavg_1m": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
