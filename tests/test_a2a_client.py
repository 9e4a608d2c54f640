"""Remote A2A agents as team members: tierflow's client against an a2a-sdk agent and against another tierflow.

The remote agents are real processes on loopback (tests/fixtures_a2a.py); the local team runs tierflow's
orchestrator on scripted models (tests/a2a_support.py), so what is tested is the A2A path and the routing rules.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph.state import CompiledStateGraph
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from tests.a2a_support import FixedIntent, TaskEchoModel
from tests.fixtures_a2a import A2A_TOKEN, A2AServers
from tierflow.agents.a2a_client import RemoteAgentError
from tierflow.agents.decomposer import TaskDecomposer
from tierflow.agents.plan import Subtask
from tierflow.agents.remote import RemoteAgent, RemoteAgentConfig, RemoteRefused, RosterWorker
from tierflow.agents.synthesizer import Synthesizer
from tierflow.agents.worker import WorkerAgent
from tierflow.graphs.events import RunEvent, TokenEvent
from tierflow.graphs.orchestrator import OrchestratorDeps, build_orchestrator
from tierflow.graphs.patterns.peer import build_peer
from tierflow.graphs.runner import RunResult, resume_run, run_request
from tierflow.runtimes.config import default_tiers
from tierflow.runtimes.context import RunContext
from tierflow.runtimes.errors import BudgetExceeded, TierTimeoutError
from tierflow.runtimes.registry import TierRegistry
from tierflow.runtimes.router import BudgetPolicy, RoutingPolicy, TierRouter
from tierflow.tools.registry import ToolRegistry

pytestmark = pytest.mark.server


def router(**policy: Any) -> TierRouter:
    """The rules' holder; its tiers are declared only (nothing loads: the local model here is scripted)."""
    return TierRouter(registry=TierRegistry(default_tiers(), "tiny"), policy=RoutingPolicy(**policy))


def team_graph(remote: RemoteAgent, pattern: str | None = None) -> CompiledStateGraph:
    """The orchestrator on scripted models whose one-step plan gives the task to ``remote``."""
    model = TaskEchoModel()
    worker = RosterWorker(WorkerAgent(model, ToolRegistry([])), [remote])
    templates = {"explain": [{"id": "delegated", "goal": "Explain briefly: {request}", "role": remote.name,
                              "tools": [], "depends_on": []}]}
    deps = OrchestratorDeps(classifier=FixedIntent("explain"), worker=worker, synthesizer=Synthesizer(model),
                            decomposer=TaskDecomposer(model, [], roles=worker.roles, templates=templates),
                            memory=None)
    return build_orchestrator(deps, InMemorySaver(), forced_pattern=pattern)


def run(graph: CompiledStateGraph, request: str, **kwargs: Any) -> tuple[RunResult, list[RunEvent]]:
    events: list[RunEvent] = []
    return run_request(graph, request, on_event=events.append, **kwargs), events


def config_for(run_id: str, private: bool = False) -> RunnableConfig:
    return {"metadata": RunContext(run_id=run_id, private=private).to_metadata()}


def test_a_remote_a2a_sdk_agent_works_a_subtask_streams_and_is_recorded(a2a_servers: A2AServers) -> None:
    echo = a2a_servers.echo
    rules = router()
    remote = RemoteAgent("echo", RemoteAgentConfig(url=echo.url, token="echo-token", cost=0.01), rules)
    provider = TracerProvider()
    before = len(echo.messages())
    with provider.get_tracer("test").start_as_current_span("caller") as span:
        result, events = run(team_graph(remote), "Why is the sea salty?")
    assert result.status == "done"
    assert result.answer == "echo: Explain briefly: Why is the sea salty?"
    [call] = result.model_calls
    assert (call.kind, call.tier, call.model, call.error) == ("a2a", "a2a:echo", "echo", None)
    assert call.input_tokens > 0 and call.output_tokens > 0
    # the remote agent's stream reached the run's events (what `tierflow run --stream` prints), chunk by chunk
    tokens = [e.text for e in events if isinstance(e, TokenEvent) and e.graph == "execute"]
    assert len(tokens) >= 2 and "".join(tokens) == result.answer
    [received] = echo.messages()[before:]
    assert received["text"].endswith("Your task: Explain briefly: Why is the sea salty?")
    assert received["authorization"] == "Bearer echo-token"
    assert received["metadata"] == {"tierflow": {"private": False}}
    trace_id = trace.format_trace_id(span.get_span_context().trace_id)
    assert received["traceparent"].split("-")[1] == trace_id  # the caller's W3C trace continues remotely
    assert rules.ledger(result.run_id)["cost"] == pytest.approx(0.01)
    assert rules.ledger(result.run_id)["tokens"] == call.input_tokens + call.output_tokens


def test_private_data_never_reaches_an_uncleared_remote_agent(a2a_servers: A2AServers) -> None:
    echo = a2a_servers.echo
    before = len(echo.messages())
    uncleared = RemoteAgent("echo", RemoteAgentConfig(url=echo.url), router())
    graph = team_graph(uncleared)
    private_run, _ = run(graph, "Summarise my medical file", private=True)
    pattern_run, _ = run(graph, "Email jane.doe@example.com the summary")  # private by routing.private_patterns
    assert echo.messages()[before:] == []  # 0 private-data egress
    for result in (private_run, pattern_run):
        assert result.status == "done" and result.model_calls[0].kind == "model"  # done by the local worker
        assert any("not cleared for private data" in note for note in result.notes)
    strict = RemoteAgent("echo", RemoteAgentConfig(url=echo.url, fallback="fail"), router())
    failed, _ = run(team_graph(strict), "Summarise my medical file", private=True)
    assert failed.status == "failed" and "not cleared for private data" in " ".join(failed.errors)
    assert echo.messages()[before:] == []
    # an agent cleared for private data gets it, told that it is private
    cleared = RemoteAgent("echo", RemoteAgentConfig(url=echo.url, data_classes=["public", "private"]), router())
    sent, _ = run(team_graph(cleared), "Summarise my medical file", private=True)
    assert sent.answer.startswith("echo:") and echo.messages()[-1]["metadata"] == {"tierflow": {"private": True}}


def test_failures_open_the_circuit_and_a_slow_agent_meets_its_deadline(a2a_servers: A2AServers) -> None:
    echo = a2a_servers.echo
    rules = router(circuit_failures=2, circuit_cooldown_s=60)
    remote = RemoteAgent("echo", RemoteAgentConfig(url=echo.url), rules)
    for _ in range(2):
        with pytest.raises(RemoteAgentError, match="asked to fail"):
            remote.ask("[fail] please", config_for("r1"))
    before = len(echo.messages())
    with pytest.raises(RemoteRefused, match="circuit open"):
        remote.ask("hello", config_for("r1"))
    assert len(echo.messages()) == before and rules.circuit_state("a2a:echo") == "open"
    slow = RemoteAgent("slow", RemoteAgentConfig(url=echo.url, timeout_s=1.0), router())
    started = time.monotonic()
    with pytest.raises(TierTimeoutError, match=r"'a2a:slow' did not finish within 1 s"):
        slow.ask("[sleep 5] take your time", config_for("r2"))
    assert time.monotonic() - started < 2.5  # the whole exchange, not each read


def test_each_call_is_charged_to_the_run_budget(a2a_servers: A2AServers) -> None:
    echo = a2a_servers.echo
    config = RemoteAgentConfig(url=echo.url, cost=0.01)
    rules = router(budget=BudgetPolicy(max_cost=0.015, on_exceed="raise"))
    remote = RemoteAgent("echo", config, rules)
    remote.ask("one", config_for("b1"))
    remote.ask("two", config_for("b1"))  # 0.01 used < 0.015: still allowed
    with pytest.raises(BudgetExceeded, match="cost"):
        remote.ask("three", config_for("b1"))
    assert rules.ledger("b1")["cost"] == pytest.approx(0.02)
    degrade = RemoteAgent("echo", config, router(budget=BudgetPolicy(max_cost=0.005, on_exceed="degrade")))
    degrade.ask("one", config_for("b2"))
    with pytest.raises(RemoteRefused, match="budget exhausted"):
        degrade.ask("two", config_for("b2"))


def test_a_remote_question_pauses_the_run_and_the_answer_goes_back(a2a_servers: A2AServers) -> None:
    remote = RemoteAgent("echo", RemoteAgentConfig(url=a2a_servers.echo.url), router())
    graph = team_graph(remote)
    waiting, _ = run(graph, "Pick a colour [ask]")
    assert waiting.status == "waiting" and waiting.interrupt is not None
    assert waiting.interrupt["question"] == "Which one?" and waiting.interrupt["remote_agent"] == "echo"
    done = resume_run(graph, waiting.run_id, answer="the blue one")
    assert done.status == "done" and done.answer == "echo: the blue one"


def test_remote_agents_are_peers_in_the_peer_pattern(a2a_servers: A2AServers) -> None:
    remote = RemoteAgent("echo", RemoteAgentConfig(url=a2a_servers.echo.url), router())
    worker = RosterWorker(WorkerAgent(TaskEchoModel(), ToolRegistry([])), [remote])
    peer = worker.peer_for(Subtask(id="p1", goal="argue for tea", role="echo"))
    assert peer is not None and peer.name == "p1"
    assert peer.propose("Tea or coffee?", []).startswith("echo: ")
    graph = build_peer([peer], max_rounds=1)
    state = graph.invoke({"request": "Tea or coffee?", "subtasks": [], "results": []})
    assert state["decision"]["winner"] == "p1" and state["decision"]["text"].startswith("echo: ")


def test_a_tierflow_team_uses_another_tierflow_as_a_member(a2a_servers: A2AServers) -> None:
    """End to end: the local orchestrator hands a subtask to a second tierflow instance over A2A."""
    remote = RemoteAgent("helper", RemoteAgentConfig(url=a2a_servers.tierflow.url), router())
    result, events = run(team_graph(remote), "How do tides work?")
    assert result.status == "done"
    assert result.answer.startswith("Answer: ") and "How do tides work?" in result.answer
    [call] = result.model_calls
    assert (call.kind, call.tier, call.model) == ("a2a", "a2a:helper", "tierflow")
    assert call.input_tokens + call.output_tokens > 0
    assert "".join(e.text for e in events if isinstance(e, TokenEvent)).startswith("Answer:")
    # The remote tierflow asks for plan approval (--confirm-plan): the question reaches this run's human.
    guarded = RemoteAgent("helper", RemoteAgentConfig(url=a2a_servers.guarded.url, token=A2A_TOKEN), router())
    graph = team_graph(guarded)
    waiting, _ = run(graph, "Plan a garden")
    assert waiting.status == "waiting" and waiting.interrupt is not None
    assert waiting.interrupt["question"].startswith("Run this sequential plan?")
    done = resume_run(graph, waiting.run_id, answer="yes")
    assert done.status == "done" and done.answer.startswith("Answer: ") and "Plan a garden" in done.answer


def test_settings_put_remote_agents_on_the_roster(tmp_path: Path) -> None:
    from tierflow.app import build_deps
    from tierflow.settings import SettingsError, load_settings

    config = tmp_path / "tierflow.toml"
    config.write_text(f'home = "{tmp_path}"\n[memory]\nenabled = false\n'
                      '[a2a_agents.helper]\nurl = "http://127.0.0.1:1/"\ndescription = "a second tierflow"\n'
                      'data_classes = ["public", "private"]\ncost = 0.5\n')
    deps = build_deps(load_settings(config), classifier=FixedIntent())
    assert isinstance(deps.worker, RosterWorker) and set(deps.worker.remotes) == {"helper"}
    assert deps.decomposer.roles["helper"].instructions == "a second tierflow"
    remote = deps.worker.remotes["helper"]
    assert remote.config.cleared_for(True) and remote.config.cost == 0.5 and remote.local is not None
    config.write_text('[a2a_agents."not a role"]\nurl = "http://127.0.0.1:1/"\n')
    with pytest.raises(SettingsError, match="must be a letter"):
        load_settings(config)
