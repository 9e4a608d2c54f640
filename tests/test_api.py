"""The public API: what ``import tierflow`` exports (and README documents), load(), the prebuilt nodes, run/resume."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph.graph import END, START, StateGraph

import tierflow
from tests.paths import REPO
from tests.scripted import ScriptedChatModel
from tierflow.agents.decomposer import TaskDecomposer
from tierflow.agents.intent import IntentResult
from tierflow.agents.supervisor import Supervisor
from tierflow.agents.synthesizer import Synthesizer
from tierflow.agents.worker import WorkerAgent
from tierflow.graphs.loader import GraphContext
from tierflow.graphs.orchestrator import OrchestratorDeps
from tierflow.graphs.patterns.common import TeamError
from tierflow.graphs.runner import sqlite_checkpointer
from tierflow.runtimes.errors import UnknownTierError
from tierflow.runtimes.router import TierRouter
from tierflow.tools.native import native_tools
from tierflow.tools.registry import ToolRegistry


@pytest.fixture(scope="module")
def tf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tierflow.Tierflow]:
    with tierflow.load(default_tier="tiny", home=tmp_path_factory.mktemp("home")) as loaded:
        yield loaded


def readme_api_names() -> set[str]:
    """The names in the first column of README's *Python API* table."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Python API", 1)[1].split("\n## ", 1)[0]
    return {m for line in section.splitlines() if line.startswith("| `")
            for m in re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)(?:\(|`)", line.split("|")[1])}


def test_all_is_what_readme_documents_and_every_name_resolves() -> None:
    assert sorted(tierflow.__all__) == tierflow.__all__ == sorted(tierflow._EXPORTS)
    assert readme_api_names() == set(tierflow.__all__), "update README's Python API table with __all__"
    for name in tierflow.__all__:
        assert getattr(tierflow, name) is not None and name in dir(tierflow)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tierflow.nope  # noqa: B018


def test_import_tierflow_loads_nothing_heavy() -> None:
    probe = ("import sys, tierflow; heavy = {'langgraph', 'langchain_core', 'pydantic', 'torch', 'typer', 'typing'}; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith('tierflow.')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_load_takes_a_file_settings_a_context_or_a_tierflow(tmp_path: Path, tf: tierflow.Tierflow) -> None:
    config = tmp_path / "tierflow.toml"
    config.write_text('default_tier = "tiny"\nmax_subtasks = 3\n')
    assert tierflow.load(config).settings.max_subtasks == 3
    assert tierflow.load(str(config), max_subtasks=4).settings.max_subtasks == 4
    settings = tierflow.Settings(default_tier="tiny", worker_max_steps=2)
    assert tierflow.load(settings).settings is settings
    assert tierflow.load(settings, worker_max_steps=3).settings.worker_max_steps == 3
    assert tierflow.load(tf) is tf
    with pytest.raises(TypeError, match="no overrides"):
        tierflow.load(tf, default_tier="mobile")
    saver = sqlite_checkpointer(tmp_path / "cp.sqlite")
    wrapped = tierflow.load(GraphContext(deps=tf.deps, checkpointer=saver))  # what `tierflow run --graph` passes
    assert wrapped.deps is tf.deps and wrapped.checkpointer is saver
    with pytest.raises(tierflow.SettingsError, match="max_subtasks"):
        tierflow.load(max_subtasks=0)


def test_chat_model_is_routed_by_agent_kind_or_tier(tf: tierflow.Tierflow) -> None:
    for kind in ("planner", "worker", "synthesizer"):
        model = tf.chat_model(kind)
        assert isinstance(model, TierRouter) and model.agent == kind
    tiny = tf.chat_model("tiny")
    assert isinstance(tiny, TierRouter) and tiny.preferred == "tiny"
    with pytest.raises(UnknownTierError, match=r"planner.*tiny"):
        tf.chat_model("gpu-cluster")


@pytest.mark.model
def test_the_routed_chat_model_answers_on_the_tier_asked_for(tf: tierflow.Tierflow) -> None:
    reply = tf.chat_model("tiny").bind(max_tokens=8).invoke("Say hello.")
    assert reply.response_metadata["route"]["tier"] == "tiny" and reply.text.strip()


def test_prebuilt_nodes_route_a_custom_state_by_intent(tf: tierflow.Tierflow) -> None:
    class MyState(tierflow.State, total=False):
        handled_by: str

    graph = StateGraph(MyState)
    graph.add_node("classify", tierflow.classify_intent_node(tf))
    for name in ("math", "other", "refuse"):
        graph.add_node(name, lambda state, name=name: {"handled_by": name})
        graph.add_edge(name, END)
    graph.add_edge(START, "classify")
    graph.add_conditional_edges("classify", tierflow.route_by_intent({"calculate": "math"}, default="other",
                                                                     out_of_scope="refuse"))
    app = graph.compile()
    assert app.invoke({"request": "What is 12 times 7?"})["handled_by"] == "math"
    assert app.invoke({"request": "Write a poem about autumn"})["handled_by"] == "other"
    assert app.invoke({"request": "What is the weather in Paris tomorrow?"})["handled_by"] == "refuse"


class FixedIntent:
    def __init__(self, label: str) -> None:
        self.label = label

    def classify(self, text: str) -> IntentResult:
        return IntentResult(label=self.label, confidence=0.9)


def scripted(worker: list[Any], synth: list[Any] = (), planner: list[Any] = ()) -> tierflow.Tierflow:
    """A Tierflow over scripted agents (a GraphContext, as `tierflow run --graph` passes), no memory."""
    tools = ToolRegistry(native_tools())
    deps = OrchestratorDeps(classifier=FixedIntent("write"),
                            decomposer=TaskDecomposer(ScriptedChatModel.of(planner), tools.names),
                            worker=WorkerAgent(ScriptedChatModel.of(worker), tools),
                            synthesizer=Synthesizer(ScriptedChatModel.of(synth)))
    return tierflow.load(GraphContext(deps=deps))


def test_team_node_runs_fixed_subtasks_and_writes_plan_results_and_decisions() -> None:
    tf = scripted(worker=["the facts", "the draft"], synth=["the answer"])
    team = tf.team("hierarchical", supervisor=Supervisor(None))  # fallback decisions: assign by role, accept
    subtasks = [{"id": "facts", "goal": "find the facts", "role": "researcher"},
                {"id": "draft", "goal": "write it up", "role": "writer", "depends_on": ["facts"]}]
    graph = StateGraph(tierflow.State)
    graph.add_sequence([("team", tierflow.team_node(team, subtasks=subtasks)),
                        ("synthesize", tierflow.synthesize_node(tf))])
    graph.add_edge(START, "team")
    out = graph.compile().invoke({"request": "announce the launch"})
    assert [(r["subtask_id"], r["output"]) for r in out["results"]] == [("facts", "the facts"), ("draft", "the draft")]
    assert out["pattern"] == "hierarchical" and out["answer"] == "the answer" and out["status"] == "done"
    assert [s["id"] for s in out["plan"]["subtasks"]] == ["facts", "draft"] and out["plan"]["source"] == "template"
    assert [(d["kind"], d["subtask_id"], d["choice"]) for d in out["decisions"]] == [
        ("assign", "facts", "researcher"), ("review", "facts", "accept"),
        ("assign", "draft", "writer"), ("review", "draft", "accept")]
    assert "Result of facts: the facts" in tf.worker.model.seen[1][-1].content  # the writer saw the facts
    with pytest.raises(TeamError, match="no plan"):
        tierflow.team_node(team)({"request": "x"}, {})


def test_plan_node_leaves_an_out_of_scope_request_unplanned() -> None:
    tf = scripted(worker=[])
    assert tierflow.plan_node(tf)({"request": "x", "route": "out_of_scope"}, {}) == {}
    planned = tierflow.plan_node(tf, pattern="parallel")({"request": "Write a haiku", "intent": {"label": "write"},
                                                          "route": "in_scope"}, {})
    assert planned["pattern"] == "parallel" and planned["plan"]["source"] == "template"


def test_team_takes_members_or_tools_not_both(tf: tierflow.Tierflow) -> None:
    calculator = [t for t in native_tools() if t.name == "calculator"]
    team = tf.team("parallel", tools=calculator, max_concurrency=2)
    assert team.members.tools.names == ["calculator"] and team.members.model is tf.worker.model
    assert tf.team("sequential").members is tf.worker
    with pytest.raises(TeamError, match="members or tools"):
        tf.team("parallel", tf.worker, tools=calculator)
    with pytest.raises(TeamError, match="unknown pattern"):
        tf.team("swarm")


def test_the_orchestrator_runs_and_resumes_from_python(tf: tierflow.Tierflow) -> None:
    assert tf.orchestrator(checkpointer=False).checkpointer is None
    assert tf.orchestrator().checkpointer is tf.checkpointer
    # the calculate intent plans from its template (no model call), and the run stops to ask about the plan
    paused = tf.run("What is 17 times 23?", confirm_plan=True, user_id="api-test")
    assert paused.status == "waiting" and "plan?" in (paused.interrupt or {})["question"]
    assert paused.model_calls == [] and (paused.plan or {})["source"] == "template"
    cancelled = tf.resume(paused.run_id, answer="no")
    assert cancelled.status == "done" and cancelled.answer.startswith("Cancelled") and cancelled.model_calls == []
    again = tf.resume(paused.run_id)
    assert again.already_finished and again.answer == cancelled.answer
    with pytest.raises(TeamError, match="orchestrator"):
        tf.run("hi", graph=StateGraph(tierflow.State), pattern="peer")
