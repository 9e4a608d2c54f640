"""The orchestrator graph end to end with scripted models: routing, planning, execution, checkpoints."""

import httpx
import openai
import pytest

from tests.scripted import ScriptedChatModel
from tierflow.agents.decomposer import TaskDecomposer
from tierflow.agents.intent import IntentResult
from tierflow.agents.synthesizer import Synthesizer
from tierflow.agents.worker import WorkerAgent
from tierflow.graphs.orchestrator import OrchestratorDeps, build_orchestrator
from tierflow.graphs.runner import RequestError, run_request, sqlite_checkpointer
from tierflow.tools.native import native_tools
from tierflow.tools.registry import ToolRegistry


class FixedIntent:
    """An injected classifier: the orchestrator takes any object with ``classify``."""

    def __init__(self, label: str, confidence: float = 0.9, out_of_scope: bool = False) -> None:
        self.result = IntentResult(label=label, confidence=confidence, out_of_scope=out_of_scope)

    def classify(self, text: str) -> IntentResult:
        return self.result


# A label with no intent template (CLINC150's, as a trained intent model gives it): the planner model is asked.
# The demo's calculate/explain/write intents have single-step templates and skip the planner call.
PLANNED = FixedIntent("calculator")
PLAN = {"pattern": "sequential", "subtasks": [
    {"id": "calc", "goal": "compute 17*23", "role": "analyst", "tools": ["calculator"], "depends_on": []},
    {"id": "say", "goal": "report", "role": "writer", "tools": [], "depends_on": ["calc"]}]}


def deps(planner, worker, synth, intent=None, **kw) -> OrchestratorDeps:
    tools = ToolRegistry(native_tools())
    return OrchestratorDeps(classifier=intent or FixedIntent("calculate"),
                            decomposer=TaskDecomposer(ScriptedChatModel.of(planner), tools.names),
                            worker=WorkerAgent(ScriptedChatModel.of(worker), tools),
                            synthesizer=Synthesizer(ScriptedChatModel.of(synth)), **kw)


def test_a_request_flows_through_every_node_and_is_checkpointed(tmp_path):
    d = deps([PLAN], [{"action": "call_tool", "tool": "calculator", "args": {"expression": "17*23"}},
                      {"action": "finish", "answer": "391"}, "It is 391."], ["17 times 23 is 391."], PLANNED)
    graph = build_orchestrator(d, sqlite_checkpointer(tmp_path / "cp.sqlite"))
    result = run_request(graph, "what is 17*23?", run_id="run-1")
    assert result.answer == "17 times 23 is 391." and result.status == "done" and result.errors == []
    assert result.intent["label"] == "calculator" and result.pattern == "sequential"
    assert result.plan["source"] == "model"
    assert [(r["subtask_id"], r["output"]) for r in result.results] == [("calc", "391"), ("say", "It is 391.")]
    # planner, two worker steps, the second worker, synthesizer: five calls, all accounted
    assert [c.tier for c in result.model_calls] == ["scripted"] * 5
    assert sum(c.input_tokens for c in result.model_calls) == 50
    # the second worker saw the first one's result
    assert "Result of calc: 391" in d.worker.model.seen[2][-1].content
    # the run can be inspected after it ended, from a fresh connection to the same file
    reopened = build_orchestrator(d, sqlite_checkpointer(tmp_path / "cp.sqlite"))
    state = reopened.get_state({"configurable": {"thread_id": "run-1"}})
    assert state.values["answer"] == "17 times 23 is 391." and state.next == ()


def test_a_single_step_template_answers_with_its_result_without_planner_or_synthesizer():
    d = deps([], [{"action": "call_tool", "tool": "calculator", "args": {"expression": "17*23"}},
                  {"action": "finish", "answer": "17*23 is 391."}], [])
    result = run_request(build_orchestrator(d), "what is 17*23?")
    assert result.plan["source"] == "template" and [s["id"] for s in result.plan["subtasks"]] == ["compute"]
    assert "single-step template: no planner call" in result.plan["notes"]
    assert result.answer == "17*23 is 391." and result.status == "done"
    assert d.decomposer.model.seen == [] and d.synthesizer.model.seen == []
    assert len(result.model_calls) == 2  # the worker's two steps only


def test_out_of_scope_requests_are_answered_without_running_agents():
    d = deps([], [], [], intent=FixedIntent("oos", 0.8, out_of_scope=True))
    result = run_request(build_orchestrator(d), "what's the weather in Oslo?")
    assert "outside what this assistant handles" in result.answer
    assert result.model_calls == [] and result.pattern == "none" and result.plan is None


def test_low_confidence_takes_the_out_of_scope_edge():
    d = deps([], [], [], intent=FixedIntent("write", 0.2), min_confidence=0.5)
    result = run_request(build_orchestrator(d), "hmm")
    assert "outside what this assistant handles (write, confidence 0.20)" in result.answer


def test_escalation_runs_agents_with_the_generic_plan_and_says_so():
    d = deps(["not a plan"], ["an answer"], ["final"], intent=FixedIntent("oos", 0.7, out_of_scope=True),
             out_of_scope="escalate")
    result = run_request(build_orchestrator(d), "tell me a joke")
    assert result.plan["source"] == "template" and result.plan["subtasks"][0]["id"] == "answer"
    assert any("escalated" in note for note in result.notes)
    # the generic plan has one subtask: its result is the answer, the synthesizer is not asked
    assert result.answer == "an answer" and d.synthesizer.model.seen == []


def test_a_pattern_that_is_not_available_runs_sequentially_and_is_noted():
    from tierflow.graphs.patterns.sequential import build_sequential

    plan = {**PLAN, "pattern": "peer"}
    d = deps([plan], [{"action": "finish", "answer": "391"}, "ok"], ["done"], PLANNED,
             patterns={"sequential": build_sequential})
    result = run_request(build_orchestrator(d), "what is 17*23?")
    assert result.pattern == "sequential"
    assert "pattern 'peer' is not available; ran sequential" in result.notes


def test_forcing_an_unknown_pattern_is_refused():
    with pytest.raises(ValueError, match="pattern 'swarm' is not available"):
        build_orchestrator(deps([], [], []), forced_pattern="swarm")


def test_a_failing_tier_is_survived_and_the_results_are_not_lost():
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    down = openai.APIConnectionError(request=request)
    d = deps([PLAN], [{"action": "call_tool", "tool": "calculator", "args": {"expression": "17*23"}},
                      {"action": "finish", "answer": "391"}, down], [down], PLANNED)
    result = run_request(build_orchestrator(d), "what is 17*23?")
    assert result.results[1]["stopped"] == "error" and "Connection error" in result.results[1]["error"]
    assert result.answer == "391"  # the synthesizer fell back to the results it had
    assert result.status == "partial" and len(result.errors) == 1
    assert result.errors[0].startswith("subtask say (writer) failed:") and "Connection error" in result.errors[0]
    assert any(note.startswith("synthesis fell back") for note in result.notes)
    assert [c.error is not None for c in result.model_calls] == [False, False, False, True, True]


def test_a_run_whose_every_subtask_failed_fails_without_a_made_up_answer():
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    down = openai.APIConnectionError(request=request)
    d = deps([PLAN], [down, down], ["an invented answer"], PLANNED)
    result = run_request(build_orchestrator(d), "what is 17*23?")
    assert result.status == "failed" and result.answer == "" and not result.ok
    assert [e.split(":")[0] for e in result.errors[:2]] == ["subtask calc (analyst) failed",
                                                           "subtask say (writer) failed"]
    # the failed model calls are named too (the same failure twice is said once)
    assert result.errors[2:] == [
        "model call on tier scripted (rule direct) failed: APIConnectionError: Connection error."]
    assert d.synthesizer.model.seen == []  # no model is asked to answer from nothing


@pytest.mark.parametrize("request_text", ["", "   ", "x" * 20_001])
def test_empty_and_oversized_requests_are_refused_before_any_work(request_text):
    with pytest.raises(RequestError):
        run_request(build_orchestrator(deps([], [], [])), request_text)
