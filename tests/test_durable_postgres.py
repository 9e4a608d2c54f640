"""Durable runs on the scale-out checkpointer: a real PostgreSQL server on 127.0.0.1."""

from __future__ import annotations

import pytest

from tests.test_durable_resume import PLAN, _deps
from tests.test_patterns_parallel import Member, sub
from tierflow.graphs.patterns.parallel import build_parallel
from tierflow.graphs.runner import RequestError, make_checkpointer, resume_run, run_request
from tierflow.graphs.team import Team

pytestmark = [pytest.mark.postgres, pytest.mark.server]


def test_a_paused_run_is_resumed_through_a_fresh_connection(postgres_url):
    from tierflow.graphs.orchestrator import build_orchestrator

    plan = {"pattern": "parallel", "subtasks": PLAN["subtasks"][:2]}
    first = _deps(["x", "y"], ["final"], confirm=True, pattern_plan=plan)
    paused = run_request(build_orchestrator(first, make_checkpointer(postgres_url)), "explain", run_id="pg-1")
    assert paused.status == "waiting" and "Run this parallel plan?" in paused.interrupt["question"]
    # another process would build its own graph and connection; the thread lives in the server
    second = _deps(["done", "done"], ["final"], confirm=True, pattern_plan=plan)
    done = resume_run(build_orchestrator(second, make_checkpointer(postgres_url)), "pg-1", answer="yes")
    assert done.status == "done" and done.answer == "final" and done.pattern == "parallel"
    assert [r["output"] for r in done.results] == ["done", "done"]
    assert first.worker.model.seen == [] and len(done.model_calls) == 3  # two workers and the synthesizer


def test_a_team_built_in_python_is_durable_on_postgres(postgres_url):
    member = Member()
    team = Team("parallel", {"fast": member}, ask=lambda s: "Go ahead?" if s.id == "b" else None)
    result = team.run("req", [sub("a"), sub("b", deps=["a"])], checkpointer=make_checkpointer(postgres_url),
                      thread_id="pg-team")
    assert result.interrupt["value"] == {"question": "Go ahead?", "subtask_id": "b"} and len(member.seen) == 1
    graph = build_parallel({"fast": member}, ask=lambda s: "Go ahead?" if s.id == "b" else None).copy(
        update={"checkpointer": make_checkpointer(postgres_url)})
    from langgraph.types import Command

    state = graph.invoke(Command(resume="go"), {"configurable": {"thread_id": "pg-team"}})
    assert [r["output"] for r in state["results"]] == ["done a", "done b"]
    assert len(member.seen) == 2 and member.seen[1] == {"a": "done a", "human": "go"}


def test_an_unreachable_server_is_a_clear_error(postgres_url):
    dead = postgres_url.rsplit(":", 1)[0] + ":1/postgres"
    with pytest.raises(RequestError, match="cannot reach the PostgreSQL checkpointer"):
        make_checkpointer(dead)
    with pytest.raises(RequestError, match="is not sqlite"):
        make_checkpointer("mysql://x")
