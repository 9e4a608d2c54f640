"""One short run per pattern on the real offline model (SmolLM2-135M): structure and accounting, not quality."""

from __future__ import annotations

import pytest
from tierflow.agents.supervisor import Supervisor
from tierflow.agents.worker import WorkerAgent
from tierflow.graphs.team import Team
from tierflow.runtimes.accounting import ModelCallRecorder
from tierflow.tools.native import native_tools
from tierflow.tools.registry import ToolRegistry

pytestmark = pytest.mark.model
PAIR = [{"id": "facts", "goal": "Name one fact about tea.", "role": "researcher"},
        {"id": "line", "goal": "Write one line about tea.", "role": "writer", "depends_on": ["facts"]}]


@pytest.fixture(scope="module")
def small_model(tiny_registry):
    return tiny_registry.chat_model("tiny").bind(max_tokens=24)  # short answers keep the runs cheap


def run(team: Team, subtasks: list[dict]) -> tuple:
    recorder = ModelCallRecorder()
    result = team.run("Tell me about tea.", subtasks, config={"callbacks": [recorder]})
    return result, recorder.calls


@pytest.mark.parametrize("pattern", ["sequential", "parallel"])
def test_sequential_and_parallel_teams_answer_every_subtask_on_the_tiny_tier(small_model, pattern):
    result, calls = run(Team(pattern, WorkerAgent(small_model, ToolRegistry(native_tools()))), PAIR)
    assert [r.subtask_id for r in result.results] == ["facts", "line"]
    assert all(r.stopped == "finished" and r.output for r in result.results)
    assert [c.tier for c in calls] == ["tiny", "tiny"] and all(c.output_tokens <= 24 for c in calls)


def test_a_hierarchical_team_records_each_supervisor_decision_as_model_or_fallback(small_model):
    worker = WorkerAgent(small_model, ToolRegistry(native_tools()))
    team = Team("hierarchical", worker, supervisor=Supervisor(small_model), max_redos=0)
    result, calls = run(team, PAIR[:1])
    assert [r.subtask_id for r in result.results] == ["facts"]
    assert [d["kind"] for d in result.decisions][:2] == ["assign", "review"]
    for d in result.decisions:
        assert d["source"] in ("model", "fallback") and (d["source"] == "model" or d["reason"])
        assert d["kind"] != "assign" or d["choice"] in worker.roles
    assert len(calls) == 3 and {c.tier for c in calls} == {"tiny"}  # assign, work, review


def test_a_peer_team_reaches_a_decision_with_valid_votes(small_model):
    worker = WorkerAgent(small_model, ToolRegistry(native_tools()))
    plan = [{"id": "pro", "goal": "Argue for green tea.", "role": "writer"},
            {"id": "con", "goal": "Argue for black tea.", "role": "writer"}]
    result, calls = run(Team("peer", worker, max_rounds=1), plan)
    votes = [p for p in result.board if p["kind"] == "vote"]
    assert [v["author"] for v in votes] == ["pro", "con"] and all(v["text"] in ("pro", "con") for v in votes)
    assert result.decision["winner"] in ("pro", "con") and result.decision["round"] == 1
    assert result.results[-1].subtask_id == "consensus" and result.results[-1].output == result.decision["text"]
    assert len(calls) == 4  # two proposals, two votes
