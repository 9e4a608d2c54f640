"""Durable runs: kill `tierflow run` mid-run, `tierflow resume` it, and finished subtasks do not run again.

The CLI runs the real orchestrator on scripted models (``--graph tests.test_durable_resume:crashy_graph``)
whose calls are logged to a file shared by both processes, so the test can count every model call.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from tests.scripted import ScriptedChatModel
from tierflow.agents.decomposer import TaskDecomposer
from tierflow.agents.intent import IntentResult
from tierflow.agents.synthesizer import Synthesizer
from tierflow.agents.worker import WorkerAgent
from tierflow.graphs.events import NodeEvent, RunEvent, TokenEvent
from tierflow.graphs.loader import GraphContext
from tierflow.graphs.orchestrator import OrchestratorDeps, build_orchestrator
from tierflow.graphs.runner import RunNotFoundError, resume_run, run_request, sqlite_checkpointer
from tierflow.tools.native import native_tools
from tierflow.tools.registry import ToolRegistry

REPO = Path(__file__).resolve().parent.parent
PLAN = {"pattern": "parallel", "subtasks": [
    {"id": "a", "goal": "task-a", "role": "researcher", "tools": [], "depends_on": []},
    {"id": "b", "goal": "task-b", "role": "researcher", "tools": [], "depends_on": []},
    {"id": "c", "goal": "task-c", "role": "writer", "tools": [], "depends_on": ["a", "b"]}]}


class FixedIntent:
    """A label with no intent template (CLINC150's), so the scripted planner's PLAN is used."""

    def classify(self, text: str) -> IntentResult:
        return IntentResult(label="definition", confidence=0.9, out_of_scope=False)


class LoggedScript(ScriptedChatModel):
    """A scripted model keyed by the task in the prompt ("task-a" → "done a"); logs each call to a file.

    With ``block_on`` set it hangs on that task, so the test can kill the process at a known point.
    """

    log: str = ""
    block_on: str | None = None

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        prompt = str(messages[-1].content)
        task = next((t for t in ("task-a", "task-b", "task-c") if f"Your task: {t}" in prompt), "synthesis")
        with open(self.log, "a") as sink:
            sink.write(f"{os.getpid()} start {task}\n")
        if task == self.block_on:
            time.sleep(300)
        text = "final answer" if task == "synthesis" else f"done {task}"
        with open(self.log, "a") as sink:
            sink.write(f"{os.getpid()} end {task}\n")
        message = AIMessage(text, usage_metadata={"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
                            response_metadata={"tier": "scripted", "model_name": "scripted"})
        return ChatResult(generations=[ChatGeneration(message=message)])


def crashy_graph(ctx: GraphContext):
    """The orchestrator on logged scripted models, for `tierflow run/resume --graph` (env configures it)."""
    log = os.environ["TIERFLOW_TEST_CALL_LOG"]
    model = LoggedScript.of([]).model_copy(update={"log": log, "block_on": os.environ.get("TIERFLOW_TEST_BLOCK_ON")})
    tools = ToolRegistry(native_tools())
    deps = OrchestratorDeps(classifier=FixedIntent(), decomposer=TaskDecomposer(ScriptedChatModel.of([PLAN]),
                                                                                tools.names),
                            worker=WorkerAgent(model, tools), synthesizer=Synthesizer(model),
                            confirm_plan=ctx.deps.confirm_plan)
    return build_orchestrator(deps, ctx.checkpointer)


def _cli(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tierflow.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _starts(log: Path) -> list[str]:
    return [line.split()[2] for line in log.read_text().splitlines() if " start " in line] if log.exists() else []


@pytest.mark.timeout(180)
def test_a_killed_run_resumes_from_its_checkpoint_without_redoing_finished_subtasks(tmp_path):
    log = tmp_path / "calls.log"
    env = {**os.environ, "TIERFLOW_HOME": str(tmp_path / "home"), "TIERFLOW_TEST_CALL_LOG": str(log),
           "TIERFLOW_TEST_BLOCK_ON": "task-b", "PYTHONPATH": str(REPO)}
    graph_spec = "tests.test_durable_resume:crashy_graph"
    run = _cli("run", "--graph", graph_spec, "--run-id", "crash-1", "--json", "explain things", env=env)
    try:
        deadline = time.monotonic() + 120
        # a and b run concurrently; b hangs; wait until a has finished (its write is checkpointed at once)
        while not (log.exists() and "end task-a" in log.read_text() and "task-b" in _starts(log)):
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "the run never reached subtask b"
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    assert sorted(_starts(log)) == ["task-a", "task-b"]

    env.pop("TIERFLOW_TEST_BLOCK_ON")
    resumed = _cli("resume", "crash-1", "--graph", graph_spec, "--json", env=env)
    stdout, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr
    payload = json.loads(stdout)
    assert payload["status"] == "done" and payload["answer"] == "final answer"
    # after the kill only b (cut off mid-call), c and the synthesis ran: a was not run again
    second = [line.split()[2] for line in log.read_text().splitlines() if line.startswith(f"{resumed.pid} start")]
    assert second == ["task-b", "task-c", "synthesis"]
    assert len(payload["model_calls"]) == 3
    assert _starts(log).count("task-a") == 1


@pytest.mark.timeout(180)
def test_the_cli_asks_the_plan_question_streams_events_and_resume_answers_it(tmp_path):
    log = tmp_path / "calls.log"
    env = {**os.environ, "TIERFLOW_HOME": str(tmp_path / "home"), "TIERFLOW_TEST_CALL_LOG": str(log),
           "PYTHONPATH": str(REPO)}
    spec = "tests.test_durable_resume:crashy_graph"
    asked = _cli("run", "--graph", spec, "--run-id", "ask-1", "--json", "--stream", "--confirm-plan", "explain",
                 env=env)
    stdout, stderr = asked.communicate(timeout=120)
    assert asked.returncode == 0, stderr
    paused = json.loads(stdout)
    assert paused["status"] == "waiting" and paused["interrupt"]["question"].startswith("Run this parallel plan?")
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert [e["node"] for e in events if e["type"] == "node"] == ["classify_intent", "recall", "plan"]
    assert events[-1]["type"] == "interrupt" and not log.exists()  # no agent ran yet

    resumed = _cli("resume", "ask-1", "--graph", spec, "--answer", "yes", "--json", env=env)
    stdout, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr
    done = json.loads(stdout)
    assert done["status"] == "done" and done["answer"] == "final answer" and "plan approved by a human ('yes')" in \
        done["notes"]
    assert sorted(_starts(log)) == ["synthesis", "task-a", "task-b", "task-c"]

    again = _cli("resume", "nope", "--graph", spec, env=env)
    _, stderr = again.communicate(timeout=120)
    assert again.returncode == 2 and "no run 'nope'" in stderr


def _deps(worker_script: list, synth_script: list, confirm: bool = False, pattern_plan: dict = PLAN):
    tools = ToolRegistry(native_tools())
    return OrchestratorDeps(classifier=FixedIntent(),
                            decomposer=TaskDecomposer(ScriptedChatModel.of([pattern_plan]), tools.names),
                            worker=WorkerAgent(ScriptedChatModel.of(worker_script), tools),
                            synthesizer=Synthesizer(ScriptedChatModel.of(synth_script)), confirm_plan=confirm)


def test_a_run_asks_for_plan_approval_and_resume_passes_the_answer_on(tmp_path):
    plan = {"pattern": "sequential", "subtasks": [PLAN["subtasks"][0]]}
    deps = _deps(["done a"], ["final"], confirm=True, pattern_plan=plan)
    graph = build_orchestrator(deps, sqlite_checkpointer(tmp_path / "cp.sqlite"))
    paused = run_request(graph, "explain things", run_id="hitl-1")
    assert paused.status == "waiting" and paused.answer == ""
    assert "Run this sequential plan? a (researcher): task-a" in paused.interrupt["question"]
    assert deps.worker.model.seen == []  # nothing ran before the human answered
    with pytest.raises(RunNotFoundError, match="waiting for an answer"):
        resume_run(graph, "hitl-1")
    done = resume_run(graph, "hitl-1", answer="focus on cost")
    # one subtask: its result is the answer, the synthesizer is not asked
    assert done.status == "done" and done.answer == "done a" and deps.synthesizer.model.seen == []
    assert "Human guidance: focus on cost" in deps.worker.model.seen[0][-1].content
    assert "plan approved by a human ('focus on cost')" in done.notes
    assert [r["subtask_id"] for r in done.results] == ["a"]
    with pytest.raises(RunNotFoundError, match="not waiting"):
        resume_run(graph, "hitl-1", answer="again")


def test_a_rejected_plan_ends_the_run_without_running_agents(tmp_path):
    deps = _deps([], [], confirm=True)
    graph = build_orchestrator(deps, sqlite_checkpointer(tmp_path / "cp.sqlite"))
    assert run_request(graph, "explain things", run_id="hitl-2").status == "waiting"
    done = resume_run(graph, "hitl-2", answer="no")
    assert done.answer == "Cancelled: the plan was not approved." and done.model_calls == []
    assert done.status == "done" and deps.worker.model.seen == []


def test_resuming_an_unknown_run_is_a_clear_error(tmp_path):
    graph = build_orchestrator(_deps([], []), sqlite_checkpointer(tmp_path / "cp.sqlite"))
    with pytest.raises(RunNotFoundError, match="no run 'nope'"):
        resume_run(graph, "nope")


def test_streaming_reports_nodes_of_the_run_and_of_the_team(tmp_path):
    deps = _deps(["done a", "done b", "done c"], ["final"])
    graph = build_orchestrator(deps, sqlite_checkpointer(tmp_path / "cp.sqlite"), forced_pattern="sequential")
    events: list[RunEvent] = []
    result = run_request(graph, "explain things", on_event=events.append)
    assert result.answer == "final" and result.status == "done"
    nodes = [(e.graph, e.node) for e in events if isinstance(e, NodeEvent)]
    assert nodes[:3] == [("", "classify_intent"), ("", "recall"), ("", "plan")]
    assert nodes.count(("execute", "work")) == 3 and nodes[-1] == ("", "remember")
    tokens = "".join(e.text for e in events if isinstance(e, TokenEvent))
    assert "done a" in tokens and "final" in tokens
    # `tierflow run --stream --json` prints each event as this JSON line
    assert json.loads(events[0].to_json()) == {"type": "node", "graph": "", "node": "classify_intent",
                                                "keys": ["intent", "notes", "route"]}
