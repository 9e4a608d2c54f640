"""The hierarchical pattern on scripted models: assignment, review, redo, bounds, fallbacks and nested teams."""

from __future__ import annotations

import pytest

from tests.scripted import ScriptedChatModel
from tierflow.agents.supervisor import Supervisor
from tierflow.agents.worker import WorkerAgent
from tierflow.graphs.team import Team, TeamAgent
from tierflow.tools.native import native_tools
from tierflow.tools.registry import ToolRegistry

TOOLS = ToolRegistry(native_tools())
ONE = [{"id": "s1", "goal": "summarise the report", "role": "writer"}]


def worker(*replies):
    return WorkerAgent(ScriptedChatModel.of(replies), TOOLS)


def test_the_supervisor_assigns_and_accepts_and_every_decision_is_logged():
    boss = ScriptedChatModel.of([{"member": "analyst"}, {"verdict": "accept"}])
    w = worker("the summary")
    result = Team("hierarchical", w, supervisor=Supervisor(boss)).run("req", ONE)
    assert [(r.subtask_id, r.role, r.output) for r in result.results] == [("s1", "analyst", "the summary")]
    assert [(d["kind"], d["choice"], d["source"]) for d in result.decisions] == [
        ("assign", "analyst", "model"), ("review", "accept", "model")]
    assert "compute and check numbers" in w.model.seen[0][0].content  # ran with the analyst's instructions


def test_a_redo_sends_the_feedback_back_to_the_worker():
    boss = ScriptedChatModel.of([{"member": "writer"}, {"verdict": "redo", "feedback": "mention the totals"},
                                 {"verdict": "accept"}])
    w = worker("draft", "draft with totals")
    result = Team("hierarchical", w, supervisor=Supervisor(boss), max_redos=2).run("req", ONE)
    assert result.results[0].output == "draft with totals"
    assert "Reviewer feedback on your previous attempt: mention the totals" in w.model.seen[1][-1].content


def test_bad_supervisor_decisions_fall_back_deterministically_and_say_why():
    boss = ScriptedChatModel.of([{"member": "astronaut"}, "not json at all"])
    result = Team("hierarchical", worker("the summary"), supervisor=Supervisor(boss)).run("req", ONE)
    assign, review = result.decisions
    assert (assign["choice"], assign["source"]) == ("writer", "fallback")  # the subtask's own role
    assert "'astronaut', not one of" in assign["reason"]
    assert (review["choice"], review["source"]) == ("accept", "fallback") and "not JSON" in review["reason"]
    assert result.results[0].output == "the summary"


def test_a_supervisor_that_always_asks_for_a_redo_is_stopped_by_the_redo_limit():
    boss = ScriptedChatModel.of([{"member": "writer"}] + [{"verdict": "redo", "feedback": "again"}] * 3)
    result = Team("hierarchical", worker("v1", "v2", "v3"), supervisor=Supervisor(boss), max_redos=2).run("req", ONE)
    assert result.results[0].output == "v3"
    assert result.decisions[-1] == {"kind": "review", "subtask_id": "s1", "choice": "accept", "feedback": None,
                                    "source": "fallback", "reason": "redo limit of 2 reached"}


def test_past_its_call_budget_the_supervisor_is_replaced_by_the_fallback():
    plan = [*ONE, {"id": "s2", "goal": "check it", "role": "analyst"}]
    boss = ScriptedChatModel.of([{"member": "writer"}, {"verdict": "accept"}])
    result = Team("hierarchical", worker("a", "b"), supervisor=Supervisor(boss),
                  max_supervisor_calls=2).run("req", plan)
    assert [r.output for r in result.results] == ["a", "b"]
    late = result.decisions[2:]
    assert [(d["choice"], d["source"]) for d in late] == [("analyst", "fallback"), ("accept", "fallback")]
    assert all(d["reason"] == "supervisor call budget of 2 spent" for d in late)


def test_a_worker_that_times_out_gets_a_redo_and_the_failure_is_kept_if_it_persists():
    class Stuck:
        def run(self, subtask, request, prior=None, memories=(), config=None):
            import time

            time.sleep(2)

    result = Team("hierarchical", {"slow": Stuck()}, supervisor=Supervisor(None), max_redos=1,
                  branch_timeout_s=0.2).run("req", [{"id": "s1", "goal": "do the work", "role": "slow"}])
    assert result.results[0].stopped == "error" and "timed out after 0.2 s" in result.results[0].error
    assert [(d["choice"], d["source"]) for d in result.decisions] == [
        ("slow", "fallback"), ("redo", "fallback"), ("redo", "fallback"), ("accept", "fallback")]


def test_teams_nest_two_levels_deep():
    # level 2: a sequential pair of workers; level 1: a hierarchical team with that pair as one member;
    # level 0: a hierarchical team whose only member is the level-1 team.
    inner = Team("sequential", worker("facts", "draft"))
    inner_member = TeamAgent(inner, [{"id": "find", "goal": "facts for {goal}", "role": "researcher"},
                                     {"id": "write", "goal": "write up", "role": "writer", "depends_on": ["find"]}])
    middle = Team("hierarchical", {"pair": inner_member}, supervisor=Supervisor(None))
    top = Team("hierarchical", {"department": TeamAgent(middle, [{"id": "m", "goal": "{goal}", "role": "pair"}])},
               supervisor=Supervisor(None))
    result = top.run("req", [{"id": "job", "goal": "the quarterly report", "role": "department"}])
    assert [(r.subtask_id, r.output) for r in result.results] == [("job", "facts\ndraft")]
    assert "Your task: facts for the quarterly report" in inner.members.model.seen[0][-1].content


def test_an_unknown_pattern_or_option_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown pattern 'swarm'"):
        Team("swarm", worker())
    with pytest.raises(ValueError, match="does not take these options"):
        Team("hierarchical", worker(), rounds=3)
