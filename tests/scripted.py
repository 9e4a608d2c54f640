"""A scripted chat model for unit tests of orchestration logic (the only fake tierflow's tests use)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field


class ScriptedChatModel(FakeMessagesListChatModel):
    """Replies with the scripted items in order: a string, a dict (sent as JSON) or an exception to raise.

    Records every prompt and the keyword arguments (e.g. ``response_format``) it was called with.
    """

    tier: str = "scripted"
    seen: list[list[BaseMessage]] = Field(default_factory=list)
    seen_kwargs: list[dict[str, Any]] = Field(default_factory=list)
    script: list[Any] = Field(default_factory=list)

    @property
    def _identifying_params(self) -> dict[str, Any]:
        # name the model the way real tiers do, so tracing reads it from the invocation params
        return {"model_name": "scripted", "tier": self.tier}

    @classmethod
    def of(cls, items: Iterable[Any]) -> ScriptedChatModel:
        script = list(items)
        return cls(responses=[AIMessage("")], script=script)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        self.seen.append(list(messages))
        self.seen_kwargs.append(dict(kwargs))
        if not self.script:
            raise AssertionError("the scripted model ran out of replies")
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        text = json.dumps(item) if isinstance(item, dict) else str(item)
        message = AIMessage(text, usage_metadata={"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
                            response_metadata={"tier": self.tier, "model_name": "scripted"})
        return ChatResult(generations=[ChatGeneration(message=message)])
