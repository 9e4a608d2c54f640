"""The synthesizer: one final answer for the user from the subtasks' results."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel

from tierflow.agents.worker import MAX_PRIOR_RESULT_CHARS, WorkerResult
from tierflow.runtimes.checks import CheckResult, Verifier
from tierflow.runtimes.errors import MODEL_CALL_ERRORS, RUN_ENDING_ERRORS
from tierflow.runtimes.router import TierRouter
from tierflow.tools.grounding import ungrounded

SYSTEM_PROMPT = "You write the final answer to the user's request from your team's results. Be brief and direct."


class Synthesis(BaseModel):
    """The answer and whether the model wrote it or it fell back to the raw results."""

    answer: str
    fallback: bool = False
    error: str | None = None


class Synthesizer:
    """Writes the answer; if the model fails, the answer is the subtask results themselves."""

    def __init__(self, model: BaseChatModel) -> None:
        self.model = model

    def synthesize(self, request: str, results: Sequence[WorkerResult],
                   config: RunnableConfig | None = None) -> Synthesis:
        usable = [r for r in results if r.output]
        lines = [f"- {r.subtask_id} ({r.role}): {r.output[:MAX_PRIOR_RESULT_CHARS]}" for r in usable]
        messages = [SystemMessage(SYSTEM_PROMPT),
                    HumanMessage(f"Request: {request}\nResults:\n" + ("\n".join(lines) or "(none)"))]
        model = self.model
        if isinstance(model, TierRouter) and model.policy.checks.grounding:  # escalate an answer inventing numbers
            model = model.bind(verify=grounding_check(grounding_sources(request, usable)))  # type: ignore[assignment]
        try:
            reply = model.invoke(messages, config)
        except RUN_ENDING_ERRORS:
            raise
        except MODEL_CALL_ERRORS as exc:
            return Synthesis(answer=_joined(usable), fallback=True, error=str(exc))
        text = (reply.text if isinstance(reply, AIMessage) else str(reply)).strip()
        if not text:
            return Synthesis(answer=_joined(usable), fallback=True, error="model returned an empty answer")
        return Synthesis(answer=text)


def grounding_sources(request: str, results: Sequence[WorkerResult]) -> list[str]:
    """What an answer's numbers may come from: the request, the results and their tools' outputs."""
    return [request, *(r.output for r in results), *(c.output for r in results for c in r.tool_calls if not c.error)]


def grounding_check(sources: Sequence[str]) -> Verifier:
    """A cascade check that fails a reply claiming numbers none of ``sources`` has (see tools.grounding)."""
    def check(message: BaseMessage) -> CheckResult | None:
        invented = ungrounded(message.text, sources)
        return CheckResult("grounding", ", ".join(invented), detail="numbers no result or tool gave") if invented \
            else None
    return check


def _joined(results: Sequence[WorkerResult]) -> str:
    return "\n".join(r.output for r in results) or "No subtask produced a result."
