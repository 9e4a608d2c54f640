"""One trace across processes: MCP calls over HTTP carry W3C traceparent, and tierflow's MCP server continues it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from tests.fixtures_mcp import REPO, HttpServerFactory
from tests.fixtures_tracing import OtlpReceiver, header_proxy
from tierflow.graphs.runner import run_request, sqlite_checkpointer
from tierflow.tools.mcp.client import McpClient
from tierflow.tools.mcp.config import McpServerConfig
from tierflow.tracing import open_tracing, read_spans

pytestmark = pytest.mark.server
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


class State(TypedDict, total=False):
    request: str
    user_id: str
    answer: str


def traced_tool_run(client: McpClient, tool: str, args: dict[str, Any], receiver: OtlpReceiver,
                    tmp_path: Path) -> tuple[str, str]:
    """Run a one-node graph whose node calls ``tool``, traced to ``receiver``; (trace id, answer)."""

    def call(state: State, config: RunnableConfig) -> State:
        return {"answer": str(client.tool(tool).invoke(args, config))}

    graph = StateGraph(State)
    graph.add_node("call", call)
    graph.add_edge(START, "call")
    graph.add_edge("call", END)
    compiled = graph.compile(checkpointer=sqlite_checkpointer(tmp_path / "client-cp.sqlite"))
    tracing = open_tracing(receiver.settings(), env={})
    assert tracing is not None
    handler = tracing.handler()
    result = run_request(compiled, "use the tool", run_id="client-run", callbacks=[handler])
    assert tracing.close() is True
    return handler.trace_ids[0], result.answer


def test_http_mcp_calls_carry_the_tool_span_s_traceparent(mcp_http_server: HttpServerFactory,
                                                          otlp_receiver: OtlpReceiver, tmp_path: Path) -> None:
    url = mcp_http_server("tierflow.mcp_servers.calculator", token="t0k")
    origin = url.removesuffix("/mcp")
    proxy, server = header_proxy(origin)  # sees exactly what the MCP server receives
    try:
        config = McpServerConfig(transport="http", url=proxy.url + "/mcp", token="t0k")
        with McpClient({"calc": config}) as client:
            trace_id, answer = traced_tool_run(client, "calculate", {"expression": "6*7"}, otlp_receiver, tmp_path)
            assert answer == "42"
            untraced = len(proxy.seen)
            assert client.call("calc", "calculate", {"expression": "1+1"}) == "2"  # outside any trace
            after = proxy.seen[untraced:]
    finally:
        server.stop()
    spans = otlp_receiver.wait_for(lambda s: any(x.type == "tool" for x in s))
    [tool_span] = [s for s in spans if s.type == "tool"]
    assert tool_span.name == "calculate" and tool_span.trace_id == trace_id
    calls = [h for h in proxy.seen[:untraced] if h.get("traceparent")]
    assert len(calls) == 1  # only the tools/call of the traced run; the handshake is outside the trace
    got_trace, got_parent = TRACEPARENT.match(calls[0]["traceparent"]).groups()
    assert (got_trace, got_parent) == (trace_id, tool_span.span_id)
    assert "baggage" not in calls[0]
    assert after and all("traceparent" not in h for h in after)


@pytest.mark.model
def test_tierflow_server_continues_the_caller_s_trace(mcp_http_server: HttpServerFactory,
                                                      otlp_receiver: OtlpReceiver, tmp_path: Path) -> None:
    # The served orchestrator answers out of scope right after classifying (min_confidence 1), so no model runs.
    settings = tmp_path / "tierflow.toml"
    tracing = otlp_receiver.settings()
    settings.write_text(f'home = "{tmp_path / "home"}"\nmin_confidence = 1.0\n\n[tracing]\n'
                        + "".join(f'{key} = {value!r}\n'.replace("'", '"') for key, value in tracing.items()))
    url = mcp_http_server("tierflow.cli", "mcp", "serve", "tierflow", "--config", str(settings), token="t0k")
    config = McpServerConfig(transport="http", url=url, token="t0k", timeout_s=120)
    with McpClient({"tierflow": config}) as client:
        trace_id, answer = traced_tool_run(client, "run_task", {"request": "what is 6 times 7?"}, otlp_receiver,
                                           tmp_path)
    assert '"pattern":"none"' in answer.replace(" ", "")
    spans = otlp_receiver.wait_for(lambda s: any(x.name == "classify_intent" for x in s), timeout_s=30)
    [tool_span] = [s for s in spans if s.type == "tool" and s.name == "run_task"]
    assert tool_span.trace_id == trace_id
    served = [s for s in spans if s.trace_id == trace_id and s.parent_id == tool_span.span_id]
    assert len(served) == 1, [(s.name, s.parent_id) for s in spans]  # the served run's root, under our tool span
    [node] = [s for s in spans if s.name == "classify_intent"]
    assert node.trace_id == trace_id and node.parent_id == served[0].span_id


@pytest.mark.timeout(180)
def test_tierflow_resume_is_traced_like_run(tmp_path: Path) -> None:
    # `run` pauses for plan approval (scripted models, no tracing); `resume --trace-file` traces the rest.
    env = {**os.environ, "TIERFLOW_HOME": str(tmp_path / "home"), "TIERFLOW_TEST_CALL_LOG": str(tmp_path / "log"),
           "PYTHONPATH": str(REPO)}
    spec = "tests.test_durable_resume:crashy_graph"
    cli = [sys.executable, "-m", "tierflow.cli"]
    asked = subprocess.run([*cli, "run", "--graph", spec, "--run-id", "traced-1", "--confirm-plan", "--json",
                            "explain"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert asked.returncode == 0 and json.loads(asked.stdout)["status"] == "waiting", asked.stderr
    trace_file = tmp_path / "resume.jsonl"
    resumed = subprocess.run([*cli, "resume", "traced-1", "--graph", spec, "--answer", "yes", "--json",
                              "--trace-file", str(trace_file)], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=120)
    assert resumed.returncode == 0 and json.loads(resumed.stdout)["status"] == "done", resumed.stderr
    spans = list(read_spans(trace_file))
    names = {s["name"] for s in spans}
    assert {"execute", "synthesize"} <= names and "classify_intent" not in names  # only what the resume ran
    assert {s["session_id"] for s in spans if s.get("session_id")} == {"traced-1"}
    assert len({s["trace_id"] for s in spans}) == 1
