"""Privacy is a property of data: a private run's memory keeps a later run that recalls it off uncleared tiers.

The probe this reproduces: a ``--private`` run was remembered without its data class, the next ordinary run of
the same user recalled it, and the router sent the recalled private text to a cloud tier not cleared for it.
Here the cloud tier is a real OpenAI-compatible server (llama.cpp) preferred over the on-device tier.
"""

from __future__ import annotations

import pytest

from tests.conftest import cloud_tier
from tierflow.agents.decomposer import TaskDecomposer
from tierflow.agents.intent import IntentResult
from tierflow.agents.synthesizer import Synthesizer
from tierflow.agents.worker import WorkerAgent
from tierflow.graphs.orchestrator import OrchestratorDeps, build_orchestrator
from tierflow.graphs.runner import run_request, sqlite_checkpointer
from tierflow.memory.config import open_embedded
from tierflow.runtimes.accounting import ModelCallRecorder
from tierflow.runtimes.config import default_tiers
from tierflow.runtimes.registry import TierRegistry
from tierflow.runtimes.router import RoutingPolicy, TierRouter
from tierflow.tools.native import native_tools
from tierflow.tools.registry import ToolRegistry

pytestmark = [pytest.mark.model, pytest.mark.server, pytest.mark.timeout(600)]
SECRET = "knee surgery at Clinica Silva"


class FixedIntent:
    """A label with no single-step template, so the planner (a model call) sees the recalled memories."""

    def classify(self, text: str) -> IntentResult:
        return IntentResult(label="calculator", confidence=0.9, out_of_scope=False)


def orchestrator(tmp_path, cloud_server: str, embedder):
    """The orchestrator on a router that prefers the cloud tier, with real embedded memory."""
    registry = TierRegistry({"cloud": cloud_tier(cloud_server, max_tokens=48, data_classes=["public"]),
                             "tiny": default_tiers()["tiny"]}, "tiny")
    router = TierRouter(registry=registry, policy=RoutingPolicy(order=["cloud", "tiny"], max_escalations=0))
    tools = ToolRegistry(native_tools())
    deps = OrchestratorDeps(classifier=FixedIntent(), memory=open_embedded(tmp_path / "memory.sqlite", embedder),
                            decomposer=TaskDecomposer(router.for_agent("planner"), tools.names),
                            worker=WorkerAgent(router.for_agent("worker"), tools, max_steps=1),
                            synthesizer=Synthesizer(router.for_agent("synthesizer")))
    return build_orchestrator(deps, sqlite_checkpointer(tmp_path / "cp.sqlite"), forced_pattern="sequential")


def tiers_of(graph, request: str, run_id: str, user_id: str, private: bool = False) -> tuple[list[str], dict]:
    recorder = ModelCallRecorder()
    run_request(graph, request, run_id=run_id, user_id=user_id, callbacks=[recorder], private=private)
    state = graph.get_state({"configurable": {"thread_id": run_id}}).values
    return [c.tier for c in recorder.calls], state


def test_recalling_a_private_memory_keeps_the_run_off_uncleared_tiers(tmp_path, cloud_server, embedder):
    graph = orchestrator(tmp_path, cloud_server, embedder)
    private_tiers, _ = tiers_of(graph, f"What is 17 times 23? It is for my {SECRET}.", "run-1", "ana", private=True)
    assert private_tiers and set(private_tiers) == {"tiny"}

    later_tiers, state = tiers_of(graph, "What is 17 times 23?", "run-2", "ana")
    assert any(SECRET in m for m in state["memories"])  # the private request was recalled ...
    assert state["private"] is True and any("private run" in n for n in state["notes"])
    assert later_tiers and set(later_tiers) == {"tiny"}  # ... so nothing after the recall reached the cloud

    # the control: the same pair of requests with an ordinary first run goes to the preferred cloud tier
    _, _ = tiers_of(graph, "What is 17 times 23? It is for my kitchen tiles.", "run-3", "bob")
    control_tiers, control = tiers_of(graph, "What is 17 times 23?", "run-4", "bob")
    assert control["memories"] and not control.get("private") and "cloud" in control_tiers
