"""What the A2A tests run in their server processes.

- :func:`scripted_graph`: tierflow's real orchestrator on scripted models (``tierflow a2a serve --graph
  tests.a2a_support:scripted_graph``): the intent is fixed, the plan is the intent's one-step template, and the
  worker's model streams a reply derived from its task, word by word (after 1.5 s when it says ``[slow]``).
- tests/a2a_echo.py: an agent built with the a2a-sdk alone (no tierflow).
"""

from __future__ import annotations

import re
import time
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.graph.state import CompiledStateGraph

from tierflow.agents.intent import IntentResult

TASK_LINE = re.compile(r"Your task: (.*)")


class FixedIntent:
    """A classifier that always says ``label`` (the intent model is not what these tests are about)."""

    def __init__(self, label: str = "explain") -> None:
        self.label = label

    def classify(self, text: str) -> IntentResult:
        return IntentResult(label=self.label, confidence=0.99)


class TaskEchoModel(GenericFakeChatModel):
    """langchain-core's fake chat model, scripted to answer ``Answer: <its task>``; streams word by word."""

    messages: Any = iter(())
    latency_s: float = 0.0

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        if self.latency_s or "[slow]" in str(messages[-1].content if messages else ""):
            time.sleep(self.latency_s or 1.5)
        found = TASK_LINE.findall(str(messages[-1].content)) if messages else []
        reply = f"Answer: {found[-1] if found else messages[-1].content}"
        message = AIMessage(reply, usage_metadata={"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
                            response_metadata={"tier": "scripted", "model_name": "scripted"})
        return ChatResult(generations=[ChatGeneration(message=message)])


def scripted_deps(confirm_plan: bool = False, latency_s: float = 0.0) -> Any:
    """OrchestratorDeps on scripted parts: fixed intent, template plans, the task-echo model everywhere."""
    from tierflow.agents.decomposer import TaskDecomposer
    from tierflow.agents.synthesizer import Synthesizer
    from tierflow.agents.worker import WorkerAgent
    from tierflow.graphs.orchestrator import OrchestratorDeps
    from tierflow.tools.registry import ToolRegistry

    model = TaskEchoModel(latency_s=latency_s)
    return OrchestratorDeps(classifier=FixedIntent("explain"), decomposer=TaskDecomposer(model, []),
                            worker=WorkerAgent(model, ToolRegistry([])), synthesizer=Synthesizer(model),
                            memory=None, confirm_plan=confirm_plan)


def scripted_graph(ctx: Any) -> CompiledStateGraph:
    """tierflow's orchestrator on scripted models: one subtask per request, answered 'Answer: <task>'."""
    from tierflow.graphs.orchestrator import build_orchestrator

    return build_orchestrator(scripted_deps(ctx.deps.confirm_plan), ctx.checkpointer)
