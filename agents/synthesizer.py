"""The synthesizer: one final answer for the user from the subtasks' results."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel

from tierflow.agents.worker import MAX_PRIOR_RESULT_CHARS, WorkerResult
from tierflow.runtimes.errors import MODEL_CALL_ERRORS, RUN_ENDING_ERRORS

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
        try:
            reply = self.model.invoke(messages, config)
        except RUN_ENDING_ERRORS:
            raise
        except MODEL_CALL_ERRORS as exc:
            return Synthesis(answer=_joined(usable), fallback=True, error=str(exc))
        text = (reply.text if isinstance(reply, AIMessage) else str(reply)).strip()
        if not text:
            return Synthesis(answer=_joined(usable), fallback=True, error="model returned an empty answer")
        return Synthesis(answer=text)


def _joined(results: Sequence[WorkerResult]) -> str:
    return "\n".join(r.output for r in results) or "No subtask produced a result."
