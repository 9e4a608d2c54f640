"""One trace id across an HTTP call to the cloud tier: the request carries the generation's W3C traceparent."""

from __future__ import annotations

import re

import pytest
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from tests.conftest import cloud_tier
from tests.fixtures_tracing import header_proxy
from tierflow.graphs.runner import run_request, sqlite_checkpointer
from tierflow.runtimes.registry import TierRegistry
from tierflow.tracing import open_tracing

pytestmark = [pytest.mark.model, pytest.mark.server]
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


class State(TypedDict, total=False):
    request: str
    user_id: str
    answer: str


def test_the_cloud_tier_request_continues_the_run_s_trace(cloud_server, otlp_receiver, tmp_path):
    origin = cloud_server.removesuffix("/v1")
    proxy, server = header_proxy(origin)  # sees exactly what the cloud endpoint receives
    try:
        model = TierRegistry({"cloud": cloud_tier(proxy.url + "/v1", max_tokens=4)}, "cloud").chat_model()

        def answer(state: State, config) -> State:
            return {"answer": str(model.invoke(state["request"], config).content)}

        graph = StateGraph(State)
        graph.add_node("answer", answer)
        graph.add_edge(START, "answer")
        graph.add_edge("answer", END)
        compiled = graph.compile(checkpointer=sqlite_checkpointer(tmp_path / "cp.sqlite"))
        tracing = open_tracing(otlp_receiver.settings(), env={})
        handler = tracing.handler()
        run_request(compiled, "Say hi.", run_id="cloud-run", callbacks=[handler])
        assert tracing.close() is True
    finally:
        server.stop()
    spans = otlp_receiver.wait_for(lambda s: any(x.type == "generation" for x in s))
    [generation] = [s for s in spans if s.type == "generation"]
    assert generation.metadata("tier") == "cloud"
    [chat] = [h for h in proxy.seen if h[":path"].endswith("/chat/completions")]
    trace_id, parent_span = TRACEPARENT.match(chat["traceparent"]).groups()
    assert trace_id == generation.trace_id == handler.trace_ids[0]
    assert parent_span == generation.span_id
    assert "baggage" not in chat  # trace attributes (user ids) stay in the process


def test_untraced_cloud_calls_carry_no_trace_headers(cloud_server):
    proxy, server = header_proxy(cloud_server.removesuffix("/v1"))
    try:
        TierRegistry({"cloud": cloud_tier(proxy.url + "/v1", max_tokens=2)}, "cloud").chat_model().invoke("Hi")
    finally:
        server.stop()
    assert proxy.seen and all("traceparent" not in h for h in proxy.seen)
