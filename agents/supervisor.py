"""The supervisor of the hierarchical pattern: assigns subtasks to workers and reviews their results.

Small models make bad routing decisions, so every decision is decoded under a JSON schema, checked,
and replaced by a deterministic fallback when unusable; the :class:`Decision` records which it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel

from tierflow.agents.plan import Subtask
from tierflow.agents.worker import MAX_PRIOR_RESULT_CHARS, WorkerResult
from tierflow.runtimes.errors import MODEL_CALL_ERRORS, RUN_ENDING_ERRORS
from tierflow.runtimes.structured import invoke_json

DECISION_MAX_TOKENS = 64
ASSIGN_PROMPT = "You are a supervisor. Pick the team member best suited to the task. Reply with JSON only."
REVIEW_PROMPT = ("You are a supervisor reviewing a team member's result. Reply with JSON only: "
                 '{"verdict": "accept"} if it does the task, or {"verdict": "redo", "feedback": "what to fix"}.')


class Decision(BaseModel):
    """One supervisor decision; ``source`` says whether the model made it or the fallback did, and why."""

    kind: Literal["assign", "review"]
    subtask_id: str
    choice: str
    feedback: str | None = None
    source: Literal["model", "fallback"] = "model"
    reason: str | None = None


class Supervisor:
    """Decides who works on a subtask and whether a result is accepted; ``model=None`` means always fallback."""

    def __init__(self, model: BaseChatModel | None, max_tokens: int = DECISION_MAX_TOKENS) -> None:
        self.model = model
        self.max_tokens = max_tokens

    def assign(self, subtask: Subtask, members: Sequence[str], request: str,
               config: RunnableConfig | None = None) -> Decision:
        """The member for ``subtask``; fallback: the member named by its role, else the first member."""
        if not members:
            raise ValueError("a supervisor needs at least one team member to assign to")
        fallback = subtask.role if subtask.role in members else members[0]
        schema = {"type": "object", "properties": {"member": {"type": "string", "enum": list(members)}},
                  "required": ["member"]}
        prompt = (f"Request: {request}\nTask: {subtask.goal}\nSuggested role: {subtask.role}\n"
                  f"Members: {', '.join(members)}\nReply {{\"member\": <one member>}}.")
        raw, problem = self._ask(ASSIGN_PROMPT, prompt, schema, config)
        if raw is not None:
            member = raw.get("member")
            if isinstance(member, str) and member in members:
                return Decision(kind="assign", subtask_id=subtask.id, choice=member)
            problem = f"model chose {member!r}, not one of {', '.join(members)}"
        return Decision(kind="assign", subtask_id=subtask.id, choice=fallback, source="fallback", reason=problem)

    def review(self, subtask: Subtask, result: WorkerResult, config: RunnableConfig | None = None) -> Decision:
        """Accept or redo ``result``; fallback: accept a non-empty result without error, else redo."""
        schema = {"type": "object", "properties": {"verdict": {"type": "string", "enum": ["accept", "redo"]},
                                                   "feedback": {"type": "string"}}, "required": ["verdict"]}
        shown = result.output[:MAX_PRIOR_RESULT_CHARS] or f"(no output; error: {result.error})"
        raw, problem = self._ask(REVIEW_PROMPT, f"Task: {subtask.goal}\nResult: {shown}", schema, config)
        if raw is not None:
            verdict, feedback = raw.get("verdict"), raw.get("feedback")
            feedback = feedback.strip() if isinstance(feedback, str) else ""
            if verdict == "accept":
                return Decision(kind="review", subtask_id=subtask.id, choice="accept")
            if verdict == "redo" and feedback:
                return Decision(kind="review", subtask_id=subtask.id, choice="redo", feedback=feedback[:500])
            problem = ("model asked for a redo without feedback" if verdict == "redo"
                       else f"model gave verdict {verdict!r}, not accept or redo")
        if result.output and result.stopped != "error":
            return Decision(kind="review", subtask_id=subtask.id, choice="accept", source="fallback", reason=problem)
        return Decision(kind="review", subtask_id=subtask.id, choice="redo", source="fallback", reason=problem,
                        feedback=f"The previous attempt produced no usable result ({result.error or 'empty'}). "
                                 "Try again.")

    def _ask(self, system: str, prompt: str, schema: dict[str, Any],
             config: RunnableConfig | None) -> tuple[dict[str, Any] | None, str | None]:
        if self.model is None:
            return None, "no supervisor model"
        try:
            model = self.model.bind(max_tokens=self.max_tokens)
            return invoke_json(model, [SystemMessage(system), HumanMessage(prompt)], schema, config,
                               name="decision"), None
        except RUN_ENDING_ERRORS:
            raise
        except MODEL_CALL_ERRORS as exc:
            return None, f"model call failed: {exc}"
