"""The parallel pattern on scripted models: concurrency, DAG order, limits, failures and deterministic results."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from tests.scripted import ScriptedChatModel
from tierflow.agents.plan import Subtask
from tierflow.agents.worker import WorkerAgent, WorkerResult
from tierflow.graphs.patterns.common import UnknownAgentError
from tierflow.graphs.patterns.parallel import build_parallel
from tierflow.graphs.team import Team
from tierflow.tools.native import native_tools
from tierflow.tools.registry import ToolRegistry

TOOLS = ToolRegistry(native_tools())


class Member:
    """A named team member for these tests: replies ``done <id>`` after a delay, or raises, and counts load."""

    active = 0
    peak = 0
    lock = threading.Lock()

    def __init__(self, delay: float = 0.0, fail: bool = False, barrier: threading.Barrier | None = None) -> None:
        self.delay, self.fail, self.barrier = delay, fail, barrier
        self.seen: list[dict[str, str]] = []

    def run(self, subtask: Subtask, request: str, prior: Mapping[str, str] | None = None,
            memories: Sequence[str] = (), config: Any = None) -> WorkerResult:
        with Member.lock:
            Member.active += 1
            Member.peak = max(Member.peak, Member.active)
        try:
            self.seen.append(dict(prior or {}))
            if self.barrier is not None:
                self.barrier.wait(timeout=5)  # only passes if the other branch runs at the same time
            time.sleep(self.delay)
            if self.fail:
                raise RuntimeError(f"{subtask.id} broke")
            return WorkerResult(subtask_id=subtask.id, role=subtask.role, output=f"done {subtask.id}")
        finally:
            with Member.lock:
                Member.active -= 1


@pytest.fixture(autouse=True)
def _reset_load():
    Member.active = Member.peak = 0


def sub(sid: str, role: str = "fast", deps: Sequence[str] = ()) -> dict[str, Any]:
    return {"id": sid, "goal": f"goal {sid}", "role": role, "depends_on": list(deps)}


def test_independent_subtasks_run_at_the_same_time_and_dependents_get_their_inputs():
    barrier = threading.Barrier(2)
    members = {"left": Member(barrier=barrier), "right": Member(barrier=barrier), "join": Member()}
    result = Team("parallel", members).run("req", [sub("a", "left"), sub("b", "right"), sub("c", "join", ["a", "b"])])
    assert [(r.subtask_id, r.output, r.stopped) for r in result.results] == [
        ("a", "done a", "finished"), ("b", "done b", "finished"), ("c", "done c", "finished")]
    assert members["join"].seen == [{"a": "done a", "b": "done b"}]


def test_results_follow_the_plan_order_not_the_finishing_order():
    members = {"slow": Member(delay=0.4), "fast": Member()}
    result = Team("parallel", members).run("req", [sub("first", "slow"), sub("second", "fast")])
    assert [r.subtask_id for r in result.results] == ["first", "second"]


def test_max_concurrency_bounds_the_branches_running_at_once():
    members = {"fast": Member(delay=0.05)}
    result = Team("parallel", members, max_concurrency=2).run("req", [sub(f"s{i}") for i in range(6)])
    assert len(result.results) == 6 and Member.peak <= 2


def test_a_failing_branch_is_reported_while_the_others_finish_and_its_dependents_are_skipped():
    members = {"fast": Member(delay=0.1), "bad": Member(fail=True)}
    result = Team("parallel", members).run("req", [sub("ok"), sub("broken", "bad"), sub("after", "fast", ["broken"]),
                                                   sub("later", "fast", ["ok"])])
    by_id = {r.subtask_id: r for r in result.results}
    assert by_id["ok"].output == "done ok" and by_id["later"].output == "done later"
    assert by_id["broken"].stopped == "error" and by_id["broken"].error == "RuntimeError: broken broke"
    assert by_id["after"].error == "skipped: depends on failed subtask broken"


def test_fail_fast_skips_what_has_not_started_once_a_branch_failed():
    members = {"fast": Member(delay=0.2), "bad": Member(fail=True)}
    result = Team("parallel", members, fail_fast=True).run(
        "req", [sub("ok"), sub("broken", "bad"), sub("next", "fast", ["ok"])])
    by_id = {r.subtask_id: r for r in result.results}
    assert by_id["ok"].output == "done ok"  # already running: it finishes
    assert by_id["next"].error == "skipped: fail-fast after broken failed"


def test_a_branch_that_times_out_is_reported_and_the_others_finish():
    members = {"fast": Member(), "stuck": Member(delay=3)}
    started = time.perf_counter()
    result = Team("parallel", members, branch_timeout_s=0.3).run("req", [sub("quick"), sub("hang", "stuck")])
    assert time.perf_counter() - started < 2.5
    by_id = {r.subtask_id: r for r in result.results}
    assert by_id["quick"].output == "done quick"
    assert by_id["hang"].stopped == "error" and "BranchTimeout: timed out after 0.3 s" == by_id["hang"].error


def test_a_plan_naming_an_unknown_agent_is_refused_before_any_work():
    member = Member()
    with pytest.raises(UnknownAgentError, match=r"unknown agent\(s\) 'ghost'; the team has: fast"):
        Team("parallel", {"fast": member}).run("req", [sub("a"), sub("b", "ghost")])
    assert member.seen == []


def test_a_worker_agent_team_uses_its_roles_and_a_raising_model_is_a_failed_subtask():
    model = ScriptedChatModel.of([ValueError("model exploded")])
    result = Team("parallel", WorkerAgent(model, TOOLS)).run("req", [sub("a", "writer")])
    assert result.results[0].stopped == "error" and result.results[0].error == "ValueError: model exploded"


def test_a_policy_can_ask_a_human_before_a_branch_and_the_answer_reaches_the_agent():
    member = Member()
    graph = build_parallel({"fast": member}, ask=lambda s: "Which region?" if s.id == "b" else None)
    durable = graph.copy(update={"checkpointer": InMemorySaver()})
    config = {"configurable": {"thread_id": "t1"}}
    state = durable.invoke({"request": "req", "subtasks": [sub("a"), sub("b")], "results": []}, config)
    assert state["__interrupt__"][0].value == {"question": "Which region?", "subtask_id": "b"}
    state = durable.invoke(Command(resume="EU"), config)
    assert [r["output"] for r in state["results"]] == ["done a", "done b"]
    assert {"human": "EU"} in member.seen and len(member.seen) == 2  # a did not run twice


@pytest.mark.parametrize("bad", [{"max_concurrency": 0}, {"branch_timeout_s": -1}])
def test_bad_options_are_refused(bad):
    with pytest.raises(ValueError):
        build_parallel({"fast": Member()}, **bad)
