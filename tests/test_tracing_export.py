"""A traced run as Langfuse receives it: the real SDK's OTLP export decoded by a local receiver.

Orchestration runs on scripted chat models (the only fake allowed); tracing, export, gzip, the
receiver and the checkpointer are real.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.outputs import ChatResult

from tests.scripted import ScriptedChatModel
from tierflow.agents.decomposer import TaskDecomposer
from tierflow.agents.intent import IntentResult
from tierflow.agents.synthesizer import Synthesizer
from tierflow.agents.worker import WorkerAgent
from tierflow.graphs.orchestrator import OrchestratorDeps, build_orchestrator
from tierflow.graphs.runner import run_request, sqlite_checkpointer
from tierflow.memory.types import MemoryHit
from tierflow.tools.native import native_tools
from tierflow.tools.registry import ToolRegistry
from tierflow.tracing import open_tracing

PLAN = {"pattern": "sequential", "subtasks": [
    {"id": "calc", "goal": "compute 17*23", "role": "analyst", "tools": ["calculator"], "depends_on": []},
    {"id": "say", "goal": "report", "role": "writer", "tools": [], "depends_on": ["calc"]}]}
WORKER = [{"action": "call_tool", "tool": "calculator", "args": {"expression": "17*23"}},
          {"action": "finish", "answer": "391"}, "It is 391."]


class FixedIntent:
    """A label with no intent template (CLINC150's), so the planner, both workers and the synthesizer all run."""

    def classify(self, text: str) -> IntentResult:
        return IntentResult(label="calculator", confidence=0.9, out_of_scope=False)


class RoutedScriptedModel(ScriptedChatModel):
    """Scripted replies carrying a router decision the way runtimes/router.py reports it."""

    def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
        result = super()._generate(*args, **kwargs)
        result.generations[0].message.response_metadata["route"] = {
            "tier": "scripted", "rule": "schema_escalation", "fallback_from": "mobile", "attempt": 2}
        return result


class Memories:
    """A memory backend that recalls one item (the recall node becomes a retriever observation)."""

    def search(self, query: str, k: int = 5, *, user_id: str = "local") -> list[MemoryHit]:
        # an earlier episode, as memory stores them
        return [MemoryHit("m1", "run-0", "episode", "Request: what is 17*24?\nAnswer: 408", "calculator", 0.9)]

    def recall(self, query: str, k: int = 5, *, user_id: str = "local") -> list[str]:
        return [h.text for h in self.search(query, k, user_id=user_id)]

    def remember(self, episode: dict[str, Any], *, user_id: str = "local") -> None:
        pass


def scripted_graph(tmp_path, synth: str = "17 times 23 is 391.", planner_cls=ScriptedChatModel):
    tools = ToolRegistry(native_tools())
    deps = OrchestratorDeps(classifier=FixedIntent(),
                            decomposer=TaskDecomposer(planner_cls.of([PLAN]), tools.names),
                            worker=WorkerAgent(ScriptedChatModel.of(list(WORKER)), tools),
                            synthesizer=Synthesizer(ScriptedChatModel.of([synth])), memory=Memories())
    return build_orchestrator(deps, sqlite_checkpointer(tmp_path / "cp.sqlite"))


def traced_run(receiver, tmp_path, request: str = "what is 17*23?", **graph_kw):
    tracing = open_tracing(receiver.settings(), env={}, release="9.9.9-test")
    handler = tracing.handler(costs={"scripted": (0.5, 1.5)})
    result = run_request(scripted_graph(tmp_path, **graph_kw), request, run_id="run-42", user_id="alice",
                         callbacks=[handler])
    assert tracing.close() is True
    spans = receiver.wait_for(lambda s: any(x.name == "tierflow.run" for x in s))
    return result, handler, spans


def test_a_run_is_one_trace_with_graph_agents_tools_memory_and_generations(otlp_receiver, tmp_path):
    result, handler, spans = traced_run(otlp_receiver, tmp_path)
    assert result.answer == "17 times 23 is 391."
    by_id = {s.span_id: s for s in spans}
    # one trace, one root, every other span's parent was exported too
    assert {s.trace_id for s in spans} == set(handler.trace_ids) and len(handler.trace_ids) == 1
    [root] = [s for s in spans if s.parent_id is None]
    assert root.name == "tierflow.run"
    assert all(s.parent_id in by_id for s in spans if s is not root)

    def parent(span):
        return by_id[span.parent_id].name

    named = {}
    for span in spans:
        named.setdefault(span.name, []).append(span)
    # graph nodes under the run, the pattern subgraph nested under execute, agents inside it
    assert {parent(named[n][0]) for n in ("classify_intent", "recall", "plan", "execute", "synthesize")} == {
        "tierflow.run"}
    assert parent(named["sequential"][0]) == "execute"
    assert [parent(w) for w in named["work"]] == ["sequential", "sequential"]
    assert parent(named["calculator"][0]) == "work"
    # observation types
    assert named["recall"][0].type == "retriever"
    assert {named[n][0].type for n in ("plan", "work", "synthesize")} == {"agent"}
    assert named["calculator"][0].type == "tool"
    assert "391" in named["calculator"][0].attributes["langfuse.observation.output"]
    recalled = named["recall"][0].attributes["langfuse.observation.output"]
    assert "earlier the user asked: 'what is 17*24?'" in recalled and "408" not in recalled  # never old answers
    generations = [s for s in spans if s.type == "generation"]
    assert len(generations) == len(result.model_calls) == 5
    assert {parent(g) for g in generations} == {"plan", "work", "synthesize"}
    for g in generations:
        assert g.metadata("tier") == "scripted"
        assert g.attributes["langfuse.observation.model.name"] == "scripted"
        assert '"input": 10' in g.attributes["langfuse.observation.usage_details"].replace(":10", ": 10")
        cost = g.attributes["langfuse.observation.cost_details"]
        assert '"total": 0.0125' in cost.replace(":0.0125", ": 0.0125")  # 10/1k*0.5 + 5/1k*1.5
    # trace attributes: session = run id, user, tags learned from the run, release
    assert {s.attributes.get("session.id") for s in spans} == {"run-42"}
    assert {s.attributes.get("user.id") for s in spans} == {"alice"}
    assert set(root.attributes["langfuse.trace.tags"]) >= {"intent:calculator", "pattern:sequential"}
    assert root.resource["langfuse.release"] == "9.9.9-test"
    assert root.metadata("tierflow_version") == "9.9.9-test"


def test_the_export_is_the_sdk_s_gzip_otlp_with_basic_auth(otlp_receiver, tmp_path):
    traced_run(otlp_receiver, tmp_path)
    trace_posts = [r for r in otlp_receiver.requests if r["path"].endswith("/otel/v1/traces")]
    assert trace_posts
    headers = trace_posts[0]["headers"]
    assert headers["content-encoding"] == "gzip"
    assert headers["content-type"] == "application/x-protobuf"
    assert headers["authorization"].startswith("Basic ")
    assert headers["x-langfuse-public-key"] == otlp_receiver.public_key


def test_router_decisions_are_generation_metadata(otlp_receiver, tmp_path):
    _, _, spans = traced_run(otlp_receiver, tmp_path, planner_cls=RoutedScriptedModel)
    [plan_gen] = [s for s in spans if s.type == "generation" and s.name == "RoutedScriptedModel"]
    assert plan_gen.metadata("rule") == "schema_escalation"
    assert plan_gen.metadata("fallback_from") == "mobile"
    assert plan_gen.metadata("attempt") == 2
    assert plan_gen.metadata("route")["tier"] == "scripted"


def test_secrets_and_private_data_are_masked_before_export(otlp_receiver, tmp_path):
    request = ("what is 17*23? my password: hunter2 token sk-live-abcdefghijklmnop "
               "<private>patient 4711 has diabetes</private>")
    _, _, spans = traced_run(otlp_receiver, tmp_path, request=request,
                             synth="Done. Authorization: Bearer eyJhbGciOi.secretpart.sig")
    exported = " ".join(str(v) for s in spans for v in s.attributes.values())
    for leaked in ("hunter2", "sk-live-abcdefghijklmnop", "patient 4711", "diabetes", "secretpart"):
        assert leaked not in exported
    assert "[REDACTED]" in exported and "[PRIVATE]" in exported


def test_masking_can_be_turned_off(otlp_receiver, tmp_path):
    tracing = open_tracing(otlp_receiver.settings(mask={"enabled": False}), env={})
    run_request(scripted_graph(tmp_path), "what is 17*23? password: hunter2", run_id="r", callbacks=[
        tracing.handler()])
    tracing.close()
    spans = otlp_receiver.wait_for(lambda s: any(x.name == "tierflow.run" for x in s))
    assert "hunter2" in " ".join(str(v) for s in spans for v in s.attributes.values())


def test_eval_scores_are_posted_on_their_trace(otlp_receiver, tmp_path):
    tracing = open_tracing(otlp_receiver.settings(), env={})
    handler = tracing.handler()
    run_request(scripted_graph(tmp_path), "what is 17*23?", run_id="run-s", callbacks=[handler])
    [trace_id] = handler.trace_ids
    tracing.score(trace_id, "answer_correct", True, comment="matched 391")
    tracing.score(trace_id, "plan_f1", 0.75)
    tracing.score(trace_id, "intent", "calculate")
    assert tracing.close() is True
    by_name = {s["name"]: s for s in otlp_receiver.scores}
    assert set(by_name) == {"answer_correct", "plan_f1", "intent"}
    assert all(s["traceId"] == trace_id for s in by_name.values())
    assert (by_name["answer_correct"]["value"], by_name["answer_correct"]["dataType"]) == (1.0, "BOOLEAN")
    assert by_name["answer_correct"]["comment"] == "matched 391"
    assert (by_name["plan_f1"]["value"], by_name["plan_f1"]["dataType"]) == (0.75, "NUMERIC")
    assert (by_name["intent"]["value"], by_name["intent"]["dataType"]) == ("calculate", "CATEGORICAL")


# -- the leak probe: nothing secret or private reaches the export, whatever type carried it ----------------------
EMAIL, CARD, PASSWORD, PRIVATE_PHRASE = "ann.lee@example.com", "4111 1111 1111 1111", "hunter2-XYZ", "zebra-orchid"
PARALLEL_PLAN = {"pattern": "parallel", "subtasks": [
    {"id": "a", "goal": "look up the account", "role": "analyst", "tools": [], "depends_on": []},
    {"id": "b", "goal": "check the card", "role": "writer", "tools": [], "depends_on": []}]}


def probe_graph(tmp_path, name: str, worker: list[Any], synth: str):
    """The orchestrator running the parallel pattern (its branches are LangGraph ``Send`` objects)."""
    tools = ToolRegistry(native_tools())
    deps = OrchestratorDeps(classifier=FixedIntent(),
                            decomposer=TaskDecomposer(ScriptedChatModel.of([PARALLEL_PLAN]), tools.names),
                            worker=WorkerAgent(ScriptedChatModel.of(worker), tools),
                            synthesizer=Synthesizer(ScriptedChatModel.of([synth])), memory=Memories())
    return build_orchestrator(deps, sqlite_checkpointer(tmp_path / f"{name}.sqlite"))


def decoded(value: Any) -> str:
    """An attribute value as text, JSON strings decoded (escapes undone) and appended to the raw form."""
    if isinstance(value, list):
        return " ".join(decoded(v) for v in value)
    text = str(value)
    try:
        return f"{text} {json.dumps(json.loads(text), ensure_ascii=False)}"
    except (TypeError, ValueError):
        return text


@pytest.mark.parametrize("defer", [True, False], ids=["deferred", "inline"])
def test_no_secret_or_private_run_data_reaches_the_export(otlp_receiver, tmp_path, defer):
    tracing = open_tracing(otlp_receiver.settings(defer=defer), env={})
    request = f"mail {EMAIL}, card {CARD}, my password is {PASSWORD}; what is on my account?"
    run_request(probe_graph(tmp_path, "probe", [ValueError(f"tier down for {EMAIL}"), f"card {CARD} is fine"],
                            f"Sent to {EMAIL}: card {CARD} checked."),
                request, run_id="run-probe", user_id="alice", callbacks=[tracing.handler()])
    run_request(probe_graph(tmp_path, "private", [f"{PRIVATE_PHRASE} noted", f"{PRIVATE_PHRASE} again"],
                            f"About {PRIVATE_PHRASE}."),
                f"tell me about the {PRIVATE_PHRASE} plan", run_id="run-private", user_id="alice",
                callbacks=[tracing.handler()], private=True)
    assert tracing.close() is True
    spans = otlp_receiver.wait_for(lambda s: sum(x.name == "tierflow.run" for x in s) == 2)
    assert {s.attributes.get("session.id") for s in spans} == {"run-probe", "run-private"}
    exported = " ".join([*(decoded(v) for s in spans for v in s.attributes.values()),
                         *(decoded(v) for s in spans for v in s.resource.values()), *(s.name for s in spans)])
    for leaked in (EMAIL, "ann.lee", CARD, CARD.replace(" ", ""), "4111 1111", PASSWORD, "hunter2", PRIVATE_PHRASE):
        assert exported.count(leaked) == 0, leaked
    # the probe went through what leaked before: Send objects, errors, models' replies, both runs
    named = {(s.attributes.get("session.id"), s.name): s for s in spans}
    assert any('"node": "branch"' in str(s.attributes.get("langfuse.observation.output", "")).replace('":"', '": "')
               for s in spans if s.name == "fan_out")
    assert any(s.attributes.get("langfuse.observation.level") == "ERROR" for s in spans
               if s.attributes.get("session.id") == "run-probe")
    probe_root = named["run-probe", "tierflow.run"]
    assert "mail [PRIVATE], card [PRIVATE], my [PRIVATE]" in probe_root.attributes["langfuse.observation.input"]
    # a private run keeps its ids and flags; everything else of it is replaced whole
    private = [s for s in spans if s.attributes.get("session.id") == "run-private"]
    assert len(private) > 10 and {s.attributes.get("user.id") for s in private} == {"alice"}
    root = named["run-private", "tierflow.run"]
    assert root.metadata("tierflow_run_id") == "run-private" and root.metadata("tierflow_private") is True
    for span in private:
        for key in ("input", "output"):
            value = span.attributes.get(f"langfuse.observation.{key}")
            if value is None:
                continue
            try:
                parsed = json.loads(value)
            except ValueError:  # plain text is exported as it is
                parsed = value
            leaves = parsed.values() if isinstance(parsed, dict) else [parsed]
            assert all(leaf in ("[PRIVATE]", "alice") for leaf in leaves), (span.name, key, value)
