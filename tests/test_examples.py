"""The examples in examples/ run on the tiny tier, and do what each promises (≤ 60 s each on an idle machine).

Tiny models answer poorly, so the checks are on what the graphs guarantee: routes, structure, statuses, tool
results equal to the tools' own, provenance, and a resumed run that does not run its team again.
"""

from __future__ import annotations

import inspect
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from langgraph.types import Command

import tierflow
from tierflow.examples import approval, memory_recall, research, triage
from tierflow.memory.errors import UnknownRunError

pytestmark = [pytest.mark.model, pytest.mark.timeout(300)]
# Every call stays on tiny (no escalation to mobile on a bad JSON reply): the examples' own guarantees must hold
# whatever the model says.
TINY = {"default_tier": "tiny", "routing": {"max_escalations": 0}}


@pytest.fixture(scope="module")
def tf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tierflow.Tierflow]:
    """One Tierflow on the tiny tier with a throwaway home (checkpoints, memory) for the examples."""
    with tierflow.load(home=tmp_path_factory.mktemp("home"), **TINY) as loaded:
        yield loaded


def timed(started: float, name: str) -> None:
    """Print how long the example took (the target is 60 s on an idle 2-core machine; not asserted, since a
    shared machine's load decides it)."""
    print(f"\n{name}: {time.perf_counter() - started:.1f} s")


def test_triage_routes_each_intent_to_its_team_in_under_30_lines(tf: tierflow.Tierflow) -> None:
    started = time.perf_counter()
    code = inspect.getsource(triage.build_graph) + inspect.getsource(triage.decline)
    assert len(code.strip().splitlines()) <= 30
    graph = tf.compile(triage.build_graph(tf))

    calc = tf.run("What is 17 times 23?", graph=graph)
    assert (calc.intent or {})["label"] == "calculate" and calc.pattern == "sequential"  # the analysts
    assert [r["subtask_id"] for r in calc.results] == [s["id"] for s in (calc.plan or {})["subtasks"]]
    calls = [c for r in calc.results for c in r["tool_calls"] if not c["error"]]
    for call in calls:  # a tool result in the run is exactly what the tool returns
        assert call["output"] == str(tf.tools.get(call["tool"]).invoke(call["args"]))
    assert calc.status in ("done", "partial", "failed") and (calc.status == "failed" or calc.answer.strip())

    write = tf.run("Write a haiku about the sea", graph=graph)
    assert (write.intent or {})["label"] == "write" and write.pattern == "parallel"  # the writers
    assert [r["subtask_id"] for r in write.results] == ["draft"] and write.status != "waiting"

    declined = tf.run("What is the weather in Paris tomorrow?", graph=graph)
    assert (declined.intent or {})["out_of_scope"] is True
    assert declined.answer == triage.DECLINED and declined.status == "done"
    assert declined.plan is None and declined.results == [] and declined.model_calls == []  # no agent, no model
    timed(started, "triage")


def test_research_team_members_use_mcp_tools_in_parallel(tmp_path: Path) -> None:
    started = time.perf_counter()
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "lisbon.md").write_text("Lisbon trip: the hotel near Alfama costs 120 euros per night.\n")
    request = "The notes say what the Lisbon hotel costs per night. What do 3 nights at 120 euros cost?"
    with tierflow.load(home=tmp_path / "home", **TINY) as tf:
        graph = research.build_graph(tf, notes)
        result = tf.run(request, graph=graph)
        # the members' tools are the MCP servers' (write and delete left out by the server declaration)
        mcp = {t.name: t for t in tf._clients[0].tools()}
        assert set(mcp) == {"calculate", "convert_units", "list_units", "search_notes", "read_note", "list_notes"}
        assert result.pattern == "parallel" and result.status in ("done", "partial", "failed")
        assert [r["subtask_id"] for r in result.results] == ["facts", "numbers", "report"]  # plan order
        allowed = {s["id"]: set(s.get("tools", [])) for s in research.SUBTASKS}
        calls = [(r["subtask_id"], c) for r in result.results for c in r["tool_calls"]]
        assert calls, "no member called an MCP tool"
        for subtask, call in calls:
            assert call["tool"] in allowed[subtask]  # each member only the tools its subtask lists
            if not call["error"]:  # the result in the run is the MCP server's own answer
                assert call["output"] == str(mcp[call["tool"]].invoke(call["args"]))
        pids = [pid for server in ("calculator", "notes") for pid in tf._clients[0].pids(server)]
        assert pids
    time.sleep(0.5)
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()], "MCP servers outlived close()"
    timed(started, "research")


def test_memory_is_recalled_per_user_and_written_with_provenance(tf: tierflow.Tierflow) -> None:
    started = time.perf_counter()
    user = f"ana-{uuid.uuid4().hex[:8]}"
    graph = tf.compile(memory_recall.build_graph(tf))
    first = tf.run("What is 17 times 23?", graph=graph, user_id=user)
    second = tf.run("And what is 17 times 24?", graph=graph, user_id=user)
    assert first.status != "waiting" and second.status != "waiting"
    memories = graph.get_state({"configurable": {"thread_id": second.run_id}}).values["memories"]
    assert any("What is 17 times 23?" in m for m in memories)  # the earlier request, as stale context
    assert not any("391" in m for m in memories)  # never the earlier answer

    memory = tf.memory
    assert memory is not None
    prov = memory.provenance(first.run_id, user_id=user)
    kinds = {n.kind for n in prov.nodes}
    assert {"Session", "Run", "Intent", "Plan", "Subtask", "Agent", "Outcome"} <= kinds
    run = prov.node(f"run:{first.run_id}").props
    assert run["request"] == "What is 17 times 23?" and run["answer"] == first.answer
    assert prov.node(f"intent:{(first.intent or {})['label']}").kind == "Intent"
    plan_ids = [s["id"] for s in (first.plan or {})["subtasks"]]
    assert [n.props["subtask_id"] for n in prov.of_kind("Subtask")] == sorted(plan_ids)
    outputs = {r["subtask_id"]: r["output"] for r in first.results}
    assert {sid: prov.node(f"outcome:{first.run_id}:{sid}").props["output"] for sid in outputs} == outputs
    calls = [(c["tool"], json.dumps(c["args"], sort_keys=True)) for r in first.results for c in r["tool_calls"]]
    assert sorted((n.props["tool"], n.props["args"]) for n in prov.of_kind("ToolCall")) == sorted(calls)
    assert {e.rel for e in prov.edges} >= {"HAS_RUN", "CLASSIFIED_AS", "PLANNED", "HAS_SUBTASK", "HANDLED_BY",
                                          "PRODUCED"}
    assert {n.props["run_id"] for n in memory.runs(user_id=user)} == {first.run_id, second.run_id}
    # another user recalls none of it and cannot read its provenance
    assert memory.search("What is 17 times 23?", user_id=f"{user}-other") == []
    with pytest.raises(UnknownRunError):
        memory.provenance(first.run_id, user_id=f"{user}-other")
    timed(started, "memory_recall")


def test_hierarchical_team_waits_for_approval_and_resumes_without_rerunning(tf: tierflow.Tierflow) -> None:
    started = time.perf_counter()
    graph = tf.compile(approval.build_graph(tf))
    paused = tf.run("Announce that the office opens on Monday at 9.", graph=graph)
    assert paused.status == "waiting" and paused.model_calls  # the team ran, then the graph stopped
    assert (paused.interrupt or {})["question"].startswith("Publish this announcement?")
    config = {"configurable": {"thread_id": paused.run_id}}
    waiting = graph.get_state(config)
    results = waiting.values["results"]
    assert waiting.next == ("approve",) and [r["subtask_id"] for r in results] == ["outline", "draft"]
    assert (paused.interrupt or {})["draft"] == results[1]["output"]
    # the supervisor assigned each subtask in order, and its last word on each was to accept it
    decisions = waiting.values["decisions"]
    assert [d["subtask_id"] for d in decisions if d["kind"] == "assign"] == ["outline", "draft"]
    last_review = {d["subtask_id"]: d["choice"] for d in decisions if d["kind"] == "review"}
    assert last_review == {"outline": "accept", "draft": "accept"}

    approved = tf.resume(paused.run_id, answer="yes", graph=graph)
    assert approved.status == "done" and approved.model_calls == []  # resumed at the approval: no team re-run
    assert approved.answer == results[1]["output"] and approved.results == results
    assert any(n.startswith("approved by a human") for n in approved.notes)

    # answered "no", the approval step publishes nothing (checked on the step alone: no team to run again)
    step = StateGraph(tierflow.State)
    step.add_node("approve", approval.approve)
    step.add_edge(START, "approve")
    alone = step.compile(checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "reject"}}
    asked = alone.invoke({"request": "r", "results": results}, thread)["__interrupt__"][0].value
    assert asked == {"question": "Publish this announcement? (yes/no)", "draft": results[1]["output"]}
    rejected = alone.invoke(Command(resume="no"), thread)
    assert rejected["answer"] == "Not published." and rejected["notes"] == ["rejected by a human ('no')"]
    timed(started, "approval")
