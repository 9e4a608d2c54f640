"""The orchestrator runs whichever pattern the planner chose (or the user forced) as its execute step."""

from __future__ import annotations

import pytest

from tests.scripted import ScriptedChatModel
from tierflow.agents.decomposer import TaskDecomposer
from tierflow.agents.intent import IntentResult
from tierflow.agents.synthesizer import Synthesizer
from tierflow.agents.worker import WorkerAgent
from tierflow.graphs.orchestrator import OrchestratorDeps, build_orchestrator
from tierflow.graphs.runner import run_request
from tierflow.tools.native import native_tools
from tierflow.tools.registry import ToolRegistry

SUBTASKS = [{"id": "a", "goal": "task a", "role": "researcher", "tools": [], "depends_on": []},
            {"id": "b", "goal": "task b", "role": "writer", "tools": [], "depends_on": ["a"]}]


class Define:
    """A label with no intent template (CLINC150's, as a trained model gives it), so the planner is asked.

    The demo's explain/calculate/write intents have single-step templates and never reach a team pattern.
    """

    def classify(self, text: str) -> IntentResult:
        return IntentResult(label="definition", confidence=0.9, out_of_scope=False)


def deps(plan_pattern: str, worker_script: list) -> OrchestratorDeps:
    tools = ToolRegistry(native_tools())
    return OrchestratorDeps(classifier=Define(),
                            decomposer=TaskDecomposer(ScriptedChatModel.of([{"pattern": plan_pattern,
                                                                             "subtasks": SUBTASKS}]), tools.names),
                            worker=WorkerAgent(ScriptedChatModel.of(worker_script), tools),
                            synthesizer=Synthesizer(ScriptedChatModel.of(["the answer"])))


@pytest.mark.parametrize(("pattern", "script", "outputs"), [
    ("parallel", ["A", "B"], ["A", "B"]),
    # assign a, work, review; assign b, work, review (the worker's model also supervises)
    ("hierarchical", [{"member": "researcher"}, "A", {"verdict": "accept"}, {"member": "writer"}, "B",
                      {"verdict": "accept"}], ["A", "B"]),
])
def test_the_planned_pattern_runs_and_its_results_reach_the_synthesizer(pattern, script, outputs):
    d = deps(pattern, script)
    result = run_request(build_orchestrator(d), "explain it")
    assert result.pattern == pattern and result.answer == "the answer"
    assert [r["output"] for r in result.results] == outputs
    synth_prompt = d.synthesizer.model.seen[0][-1].content
    assert all(f": {o}" in synth_prompt for o in outputs)


def test_the_peers_decision_is_the_answer_without_a_synthesizer_call():
    # peers share the worker's model and act concurrently: identical replies keep the script order-free
    d = deps("peer", ["P", "P", {"vote": "b"}, {"vote": "b"}])
    result = run_request(build_orchestrator(d), "explain it")
    assert result.pattern == "peer" and [r["output"] for r in result.results] == ["P", "P", "P"]
    assert result.results[-1]["subtask_id"] == "consensus" and result.answer == "P" and result.status == "done"
    assert d.synthesizer.model.seen == []


def test_a_forced_pattern_overrides_the_plan():
    d = deps("sequential", ["A", "B"])
    result = run_request(build_orchestrator(d, forced_pattern="parallel"), "explain it")
    assert result.pattern == "parallel" and [r["subtask_id"] for r in result.results] == ["a", "b"]


def test_a_question_asked_inside_a_team_pauses_the_whole_run_and_resume_continues_inside_the_team(tmp_path):
    from functools import partial

    from tierflow.graphs.patterns.peer import build_peer
    from tierflow.graphs.runner import resume_run, sqlite_checkpointer

    d = deps("peer", ["A", "B", {"vote": "a"}, {"vote": "b"}])  # one vote each: a tie
    d.patterns = {"peer": partial(build_peer, max_rounds=1, tie_break="human")}
    graph = build_orchestrator(d, sqlite_checkpointer(tmp_path / "cp.sqlite"))
    paused = run_request(graph, "explain it", run_id="tie-1")
    assert paused.status == "waiting" and "tied between a, b" in paused.interrupt["question"]
    calls_before = len(d.worker.model.seen)
    done = resume_run(graph, "tie-1", answer="b")
    # b won, as the human chose, and is the answer; the peers did not propose or vote again
    assert done.status == "done" and done.answer == "B" and done.results[-1]["output"] == "B"
    assert len(d.worker.model.seen) == calls_before
    assert done.model_calls == [] and d.synthesizer.model.seen == []  # no model ran after the human's answer
