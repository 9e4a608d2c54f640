"""Memory in every run: the orchestrator recalls before planning and remembers after answering."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.scripted import ScriptedChatModel
from tierflow.agents.decomposer import TaskDecomposer
from tierflow.agents.intent import IntentResult
from tierflow.agents.synthesizer import Synthesizer
from tierflow.agents.worker import WorkerAgent
from tierflow.graphs.orchestrator import OrchestratorDeps, build_orchestrator
from tierflow.graphs.runner import run_request, sqlite_checkpointer
from tierflow.memory.config import MemoryConfig, open_embedded, open_memory
from tierflow.memory.errors import MemoryBackendUnavailable
from tierflow.settings import load_settings
from tierflow.tools.native import native_tools
from tierflow.tools.registry import ToolRegistry

pytestmark = pytest.mark.timeout(300)
PLAN = {"pattern": "sequential", "subtasks": [
    {"id": "calc", "goal": "compute 17*23", "role": "analyst", "tools": ["calculator"], "depends_on": []}]}


class FixedIntent:
    """CLINC150's label, with no intent template: the planner is asked, and sees the recalled memories."""

    def classify(self, text: str) -> IntentResult:
        return IntentResult(label="calculator", confidence=0.9, out_of_scope=False)


def scripted_deps(memory) -> OrchestratorDeps:
    tools = ToolRegistry(native_tools())
    return OrchestratorDeps(
        classifier=FixedIntent(), memory=memory,
        decomposer=TaskDecomposer(ScriptedChatModel.of([PLAN, PLAN]), tools.names),
        worker=WorkerAgent(ScriptedChatModel.of([
            {"action": "call_tool", "tool": "calculator", "args": {"expression": "17*23"}},
            {"action": "finish", "answer": "391"}] * 2), tools),
        synthesizer=Synthesizer(ScriptedChatModel.of([])))


def test_a_second_run_recalls_the_first_and_both_are_remembered_once(tmp_path, embedder):
    memory = open_embedded(tmp_path / "memory.sqlite", embedder)
    deps = scripted_deps(memory)
    graph = build_orchestrator(deps, sqlite_checkpointer(tmp_path / "cp.sqlite"))
    first = run_request(graph, "What is 17 times 23?", run_id="run-1", user_id="ana")
    second = run_request(graph, "Multiply 17 by 23 please", run_id="run-2", user_id="ana")
    # one subtask per plan: the worker's result is the answer, no synthesizer call
    assert (first.answer, second.answer) == ("391", "391") and deps.synthesizer.model.seen == []
    assert "Relevant memory" not in deps.decomposer.model.seen[0][-1].content  # nothing to recall yet
    # the second run is told what the user asked before, never the earlier answer
    planner_prompt = deps.decomposer.model.seen[1][-1].content
    assert "Relevant memory: earlier the user asked: 'What is 17 times 23?'" in planner_prompt
    assert "391" not in planner_prompt
    worker_prompt = deps.worker.model.seen[2][-1].content
    assert "earlier the user asked: 'What is 17 times 23?'" in worker_prompt and "391" not in worker_prompt
    prov = memory.provenance("run-1", user_id="ana")
    assert prov.of_kind("ToolCall")[0].props["output"] == "391"
    assert prov.node("run:run-1").props["answer"] == "391"
    # replaying the finished run's episode (a retried remember) writes nothing new
    count = memory.count(user_id="ana")
    state = graph.get_state({"configurable": {"thread_id": "run-1"}}).values
    episode = {"run_id": "run-1", **{k: state.get(k) for k in ("request", "intent", "plan", "pattern", "results",
                                                               "answer")}}
    assert not memory.remember(episode, user_id="ana").written and memory.count(user_id="ana") == count
    assert memory.recall("17 times 23", 5, user_id="bob") == []


def test_settings_default_to_embedded_memory_under_home(tmp_path, monkeypatch, embedder):
    monkeypatch.setenv("TIERFLOW_HOME", str(tmp_path))
    settings = load_settings()
    assert settings.memory.backend == "embedded" and settings.memory_path == tmp_path / "memory.sqlite"
    store = open_memory(settings.memory, settings.memory_path, embedder)
    assert store is not None and store.recall("anything", 3) == []
    # only what is close in meaning comes back (min_score 0.5): an unrelated request recalls nothing
    from tests.test_memory_backends import LISBON

    assert settings.memory.min_score == 0.5
    store.remember(LISBON)
    assert store.recall("Plan a weekend trip to Lisbon", 3)[0].startswith("Request: Plan a weekend in Lisbon")
    assert store.recall("What is 17 times 23?", 3) == []
    store.close()
    assert open_memory(MemoryConfig(enabled=False), settings.memory_path) is None


def test_servers_down_at_start_fail_clearly_or_fall_back_when_configured(tmp_path, embedder):
    from tests.fixtures_memory import _free_port

    down = MemoryConfig(backend="neo4j+weaviate", neo4j_url=f"bolt://127.0.0.1:{_free_port()}",
                        weaviate_url=f"http://127.0.0.1:{_free_port()}", timeout_s=2)
    with pytest.raises(MemoryBackendUnavailable, match=r"Neo4j at bolt://127\.0\.0\.1"):
        open_memory(down, tmp_path / "m.sqlite", embedder)
    fallback = open_memory(down.model_copy(update={"fallback_to_embedded": True}), tmp_path / "m.sqlite", embedder)
    assert fallback is not None and fallback.recall("hello", 1) == []
    fallback.close()


def test_memory_cli_shows_searches_and_forgets(tmp_path, embedder):
    from tests.test_memory_backends import LISBON

    with open_embedded(tmp_path / "memory.sqlite", embedder) as store:
        store.remember(LISBON, user_id="ana")
    env = {**os.environ, "TIERFLOW_HOME": str(tmp_path), "PYTHONPATH": str(REPO)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tierflow.cli", "memory", *args], capture_output=True,
                              text=True, env=env, timeout=240, cwd=tmp_path)

    shown = cli("show", "run-lisbon", "--user", "ana")
    assert shown.returncode == 0, shown.stderr
    for part in ("Session", "HAS_RUN", "Run", "CLASSIFIED_AS", "Intent", "Subtask", "HANDLED_BY", "Agent",
                 "ToolCall", "calculator", "Outcome", "Entity", "Lisbon"):
        assert part in shown.stdout
    as_json = json.loads(cli("show", "run-lisbon", "--user", "ana", "--json").stdout)
    assert {n["kind"] for n in as_json["nodes"]} >= {"Run", "Plan", "Subtask", "ToolCall", "Outcome"}
    missing = cli("show", "run-nope", "--user", "ana")
    assert missing.returncode == 2 and "no run 'run-nope'" in missing.stderr and "Traceback" not in missing.stderr
    assert cli("search", "", "--user", "ana").returncode == 2
    assert "run-lisbon" in cli("search", "Portugal trip", "--user", "ana").stdout
    assert "forgot 3 memories" in cli("forget", "--user", "ana").stdout
    assert cli("show", "run-lisbon", "--user", "ana").returncode == 2


def test_forget_removes_the_users_text_from_memory_and_checkpoints(tmp_path, embedder):
    # `memory forget` used to empty memory and leave 25 copies of the request in checkpoints.sqlite.
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    from tierflow.graphs.runner import run_request, sqlite_checkpointer

    class State(TypedDict, total=False):
        request: str
        user_id: str
        answer: str

    graph = StateGraph(State)
    graph.add_node("answer", lambda s: {"answer": f"noted: {s['request']}"})
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    saver = sqlite_checkpointer(tmp_path / "checkpoints.sqlite")
    compiled = graph.compile(checkpointer=saver)
    secret, other = "ana-zebra-secret-7731", "bob-keeps-this-4410"
    run_request(compiled, f"remember {secret}", run_id="ana-1", user_id="ana")
    run_request(compiled, f"remember {secret} again", run_id="ana-2", user_id="ana")
    run_request(compiled, f"remember {other}", run_id="bob-1", user_id="bob")
    saver.conn.close()
    with open_embedded(tmp_path / "memory.sqlite", embedder) as store:
        for run_id, user, text in [("ana-1", "ana", secret), ("bob-1", "bob", other)]:
            store.remember({"run_id": run_id, "request": f"remember {text}", "answer": "noted"}, user_id=user)

    def copies(text: str) -> int:
        return sum(p.read_bytes().count(text.encode()) for p in tmp_path.rglob("*") if p.is_file())

    assert copies(secret) > 0
    env = {**os.environ, "TIERFLOW_HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "tierflow.cli", "memory", "forget", "--user", "ana"],
                          capture_output=True, text=True, env=env, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "deleted the checkpoints of 2 run(s)" in done.stdout
    assert copies(secret) == 0  # not in any store, not in free pages or a write-ahead log
    assert copies(other) > 0  # another user's runs are untouched
