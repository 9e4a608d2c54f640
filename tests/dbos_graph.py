"""The orchestrator for scale-out tests and benchmarks: every agent on the routed tiers, plus a tool with a side effect.

``--graph tests.dbos_graph:durable_graph`` in a worker: the configured routers (so model calls go to the scripted
model server through the real router and cloud tier), a fixed intent (no classifier to load), and a ``record``
tool that appends one line per call to ``$TIERFLOW_TEST_TOOL_LOG`` (a repeated call would show there twice).
"""

from __future__ import annotations

import json
import os
import time

from langchain_core.tools import tool

from tierflow.agents.decomposer import TaskDecomposer
from tierflow.agents.intent import IntentResult
from tierflow.agents.worker import WorkerAgent
from tierflow.graphs.loader import GraphContext
from tierflow.graphs.orchestrator import OrchestratorDeps, build_orchestrator
from tierflow.tools.native import native_tools
from tierflow.tools.registry import ToolRegistry


class FixedIntent:
    """A label with no intent template, so the planner model (the scripted server) writes the plan."""

    def classify(self, text: str) -> IntentResult:
        return IntentResult(label="definition", confidence=0.9, out_of_scope=False)


@tool
def record(note: str) -> str:
    """Record a note (a side effect: one line per call in the test's tool log)."""
    path = os.environ.get("TIERFLOW_TEST_TOOL_LOG")
    if path:
        with open(path, "a") as sink:
            sink.write(json.dumps({"pid": os.getpid(), "note": note, "at": time.time()}) + "\n")
    return f"noted {note}"


def durable_graph(ctx: GraphContext):
    """The real orchestrator on the configured routers, with the ``record`` tool."""
    tools = ToolRegistry([*native_tools(), record])
    deps = OrchestratorDeps(classifier=FixedIntent(), decomposer=TaskDecomposer(ctx.deps.decomposer.model, tools.names),
                            worker=WorkerAgent(ctx.deps.worker.model, tools), synthesizer=ctx.deps.synthesizer,
                            confirm_plan=ctx.deps.confirm_plan)
    return build_orchestrator(deps, ctx.checkpointer)
