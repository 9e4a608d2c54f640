"""One short run per pattern on the real offline model (SmolLM2-135M): structure and accounting, not quality."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

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


class Replies(BaseCallbackHandler):
    """The text of every model reply, in call order: what each recorded decision must agree with."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        self.texts.append(response.generations[0][0].text)


def decoded(text: str) -> dict[str, Any]:
    """A reply as the JSON object it should be, or {} when it is not one."""
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def run(team: Team, subtasks: list[dict], replies: Replies | None = None) -> tuple:
    recorder = ModelCallRecorder()
    result = team.run("Tell me about tea.", subtasks, config={"callbacks": [recorder, *([replies] if replies else [])]})
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
    replies = Replies()
    result, calls = run(team, PAIR[:1], replies)
    assert [r.subtask_id for r in result.results] == ["facts"]
    assert len(calls) == 3 and {c.tier for c in calls} == {"tiny"}  # assign, work, review
    assign, review = result.decisions[:2]
    assert (assign["kind"], review["kind"]) == ("assign", "review")
    # each decision says truthfully whose it is: "model" exactly when the model's reply was usable, and then it
    # is that reply; otherwise the deterministic fallback with the reason the reply was refused
    member = decoded(replies.texts[0]).get("member")
    if isinstance(member, str) and member in worker.roles:
        assert (assign["source"], assign["choice"], assign["reason"]) == ("model", member, None)
    else:
        assert (assign["source"], assign["choice"]) == ("fallback", "researcher") and assign["reason"]
    said = decoded(replies.texts[2])
    feedback = said.get("feedback").strip() if isinstance(said.get("feedback"), str) else ""
    if said.get("verdict") == "accept" or (said.get("verdict") == "redo" and feedback):
        assert (review["source"], review["choice"], review["reason"]) == ("model", said["verdict"], None)
        assert review["choice"] == "accept" or review["feedback"] == feedback[:500]
    else:  # the worker answered, so the fallback accepts
        assert (review["source"], review["choice"]) == ("fallback", "accept") and review["reason"]
    # max_redos=0: a redo verdict is overruled once, and the log says so
    assert result.decisions[2:] == ([{"kind": "review", "subtask_id": "facts", "choice": "accept", "feedback": None,
                                      "source": "fallback", "reason": "redo limit of 0 reached"}]
                                    if review["choice"] == "redo" else [])


def test_a_peer_team_reaches_a_decision_with_valid_votes(small_model):
    worker = WorkerAgent(small_model, ToolRegistry(native_tools()))
    plan = [{"id": "pro", "goal": "Argue for green tea.", "role": "writer"},
            {"id": "con", "goal": "Argue for black tea.", "role": "writer"}]
    replies = Replies()
    result, calls = run(Team("peer", worker, max_rounds=1), plan, replies)
    votes = [p for p in result.board if p["kind"] == "vote"]
    assert [v["author"] for v in votes] == ["pro", "con"]
    # a vote is the model's when its reply named a proposal, else the voter's own proposal, marked as fallback
    for vote, reply in zip(votes, replies.texts[2:], strict=True):
        named = decoded(reply).get("vote")
        named = named.strip() if isinstance(named, str) else named
        if named in ("pro", "con"):
            assert (vote["text"], vote["source"]) == (named, "model")
        else:
            assert (vote["text"], vote["source"]) == (vote["author"], "fallback") and vote["reason"]
    assert result.decision["winner"] in ("pro", "con") and result.decision["round"] == 1
    assert result.results[-1].subtask_id == "consensus" and result.results[-1].output == result.decision["text"]
    assert len(calls) == 4  # two proposals, two votes
