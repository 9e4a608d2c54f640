"""Interop with AutoGen AgentChat: a tierflow tier as an AutoGen model client, an AutoGen agent as a peer.

- :class:`TierChatCompletionClient` lets any AutoGen agent or team think on a tierflow tier (every
  call still goes through the tier's runtime, accounting and limits).
- :class:`AutoGenPeer` lets an AutoGen agent or team take part in tierflow's peer pattern.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

try:
    from autogen_core import CancellationToken
    from autogen_core.models import (
        AssistantMessage,
        ChatCompletionClient,
        CreateResult,
        FunctionExecutionResultMessage,
        LLMMessage,
        ModelInfo,
        RequestUsage,
        SystemMessage,
        UserMessage,
    )
    from autogen_core.tools import Tool, ToolSchema
except ImportError as exc:  # an optional extra: nothing else in tierflow needs AutoGen
    raise ImportError("AutoGen interop needs the autogen extra: pip install 'tierflow[autogen]'") from exc
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.messages import SystemMessage as LCSystemMessage
from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel

from tierflow.agents.peer import MAX_POST_CHARS, Post, Vote, board_text, fallback_vote, text_vote
from tierflow.runtimes.errors import TierflowError
from tierflow.runtimes.structured import json_schema_format

T = TypeVar("T")


class AutoGenInteropError(TierflowError, ValueError):
    """AutoGen asked for something a tierflow tier client cannot do (tools, images), or an agent misbehaved."""


def to_langchain(messages: Sequence[LLMMessage]) -> list[BaseMessage]:
    """AutoGen messages as LangChain messages; images and function calls are refused with a clear error."""
    converted: list[BaseMessage] = []
    for m in messages:
        if isinstance(m, SystemMessage):
            converted.append(LCSystemMessage(m.content))
        elif isinstance(m, UserMessage):
            if not isinstance(m.content, str):
                if not all(isinstance(part, str) for part in m.content):
                    raise AutoGenInteropError("tierflow tier clients take text only; the message has an image")
                converted.append(HumanMessage("\n".join(m.content), name=m.source or None))
            else:
                converted.append(HumanMessage(m.content, name=m.source or None))
        elif isinstance(m, AssistantMessage):
            if not isinstance(m.content, str):
                raise AutoGenInteropError("tierflow tier clients do not do native function calling")
            converted.append(AIMessage(m.content))
        elif isinstance(m, FunctionExecutionResultMessage):
            converted.append(HumanMessage("\n".join(f"{r.name} returned: {r.content}" for r in m.content)))
        else:
            raise AutoGenInteropError(f"unsupported AutoGen message type {type(m).__name__}")
    return converted


class TierChatCompletionClient(ChatCompletionClient):
    """An AutoGen ``ChatCompletionClient`` over a tierflow tier (a LangChain chat model, e.g. the router).

    Token counts are the tier's own (usage metadata); ``count_tokens`` estimates 4 characters a token.
    """

    def __init__(self, model: BaseChatModel, *, n_ctx: int = 2048, family: str = "unknown",
                 timeout_s: float | None = 120.0, config: RunnableConfig | None = None) -> None:
        self.model = model
        self.n_ctx = n_ctx
        self.timeout_s = timeout_s
        self.config = config
        self._info: ModelInfo = {"vision": False, "function_calling": False, "json_output": True, "family": family,
                                 "structured_output": True}
        self._last = RequestUsage(prompt_tokens=0, completion_tokens=0)
        self._total = RequestUsage(prompt_tokens=0, completion_tokens=0)

    def _bound(self, tools: Sequence[Tool | ToolSchema], json_output: bool | type[BaseModel] | None,
               extra_create_args: Mapping[str, Any]) -> Any:
        if tools:
            raise AutoGenInteropError("tierflow tier clients do not do native tool calling; give the agent no tools")
        kwargs: dict[str, Any] = dict(extra_create_args)
        if isinstance(json_output, type) and issubclass(json_output, BaseModel):
            kwargs["response_format"] = json_schema_format(json_output.model_json_schema(), json_output.__name__)
        elif json_output:
            kwargs["response_format"] = json_schema_format({"type": "object"})
        return self.model.bind(**kwargs) if kwargs else self.model

    def _account(self, message: BaseMessage) -> RequestUsage:
        usage = getattr(message, "usage_metadata", None) or {}
        self._last = RequestUsage(prompt_tokens=int(usage.get("input_tokens", 0)),
                                  completion_tokens=int(usage.get("output_tokens", 0)))
        self._total = RequestUsage(prompt_tokens=self._total.prompt_tokens + self._last.prompt_tokens,
                                   completion_tokens=self._total.completion_tokens + self._last.completion_tokens)
        return self._last

    async def create(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = [],
                     tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
                     json_output: bool | type[BaseModel] | None = None, extra_create_args: Mapping[str, Any] = {},
                     cancellation_token: CancellationToken | None = None) -> CreateResult:
        """One reply from the tier; honours the cancellation token and the client's timeout."""
        model = self._bound(tools, json_output, extra_create_args)
        task = asyncio.ensure_future(model.ainvoke(to_langchain(messages), self.config))
        if cancellation_token is not None:
            cancellation_token.link_future(task)
        try:
            reply = await asyncio.wait_for(task, self.timeout_s)
        except TimeoutError as exc:
            raise TimeoutError(f"the tier did not answer within {self.timeout_s:g} s") from exc
        text = reply.text if isinstance(reply, AIMessage) else str(reply)
        return CreateResult(finish_reason="stop", content=text, usage=self._account(reply), cached=False)

    async def create_stream(self, messages: Sequence[LLMMessage], *,
                            tools: Sequence[Tool | ToolSchema] = [],
                            tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
                            json_output: bool | type[BaseModel] | None = None,
                            extra_create_args: Mapping[str, Any] = {},
                            cancellation_token: CancellationToken | None = None,
                            ) -> AsyncGenerator[str | CreateResult, None]:
        """Text chunks as the tier produces them, then the CreateResult."""
        model = self._bound(tools, json_output, extra_create_args)
        total: AIMessageChunk | None = None
        async for chunk in model.astream(to_langchain(messages), self.config):
            if cancellation_token is not None and cancellation_token.is_cancelled():
                raise asyncio.CancelledError("cancelled by the AutoGen cancellation token")
            total = chunk if total is None else total + chunk
            if chunk.text:
                yield chunk.text
        text = total.text if total is not None else ""
        usage = self._account(total) if total is not None else RequestUsage(prompt_tokens=0, completion_tokens=0)
        yield CreateResult(finish_reason="stop", content=text, usage=usage, cached=False)

    async def close(self) -> None:
        """Nothing to release: the tier's runtime belongs to its registry."""

    def actual_usage(self) -> RequestUsage:
        return self._last

    def total_usage(self) -> RequestUsage:
        return self._total

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        return sum(len(str(m.content)) for m in messages) // 4 + 1

    def remaining_tokens(self, messages: Sequence[LLMMessage], *,
                         tools: Sequence[Tool | ToolSchema] = []) -> int:
        return max(self.n_ctx - self.count_tokens(messages), 0)

    @property
    def capabilities(self) -> Any:  # deprecated in AutoGen, still abstract
        return dict(self._info)

    @property
    def model_info(self) -> ModelInfo:
        return self._info


class _LoopThread:
    """One event loop on a daemon thread, so sync graph nodes can drive async AutoGen objects safely."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True, name="tierflow-autogen").start()

    def run(self, make: Callable[[], Awaitable[T]], timeout_s: float | None) -> T:
        async def bounded() -> T:
            return await asyncio.wait_for(make(), timeout_s)

        future = asyncio.run_coroutine_threadsafe(bounded(), self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise


def _last_text(result: Any, exclude: str = "user") -> str:
    for message in reversed(list(getattr(result, "messages", []) or [])):
        content = getattr(message, "content", None)
        if isinstance(content, str) and getattr(message, "source", "") != exclude:
            return content
    return ""


class AutoGenPeer:
    """An AutoGen AgentChat agent or team (anything with ``async run(task=...)``) as a tierflow peer."""

    def __init__(self, participant: Any, name: str | None = None, timeout_s: float | None = 120.0) -> None:
        if not callable(getattr(participant, "run", None)):
            raise AutoGenInteropError(f"{participant!r} has no run(task=...) method: not an AutoGen agent or team")
        self.participant = participant
        self.name = name or str(getattr(participant, "name", "") or "autogen")
        self.timeout_s = timeout_s
        self._loop = _LoopThread()

    def propose(self, topic: str, board: Sequence[Post], config: RunnableConfig | None = None) -> str:
        """Ask the AutoGen participant for a proposal; its last message is the proposal."""
        task = (f"Topic: {topic}\nBoard:\n{board_text(board)}\nYou are {self.name}. "
                "Write your proposal in one or two sentences.")
        result = self._loop.run(lambda: self.participant.run(task=task), self.timeout_s)
        return _last_text(result)[:MAX_POST_CHARS * 2]

    def vote(self, topic: str, proposals: Sequence[Post], board: Sequence[Post],
             config: RunnableConfig | None = None) -> Vote:
        """Ask for a vote in words and validate it; an unusable reply becomes the fallback vote."""
        listing = "\n".join(f"- {p.author}: {p.text[:MAX_POST_CHARS]}" for p in proposals)
        task = (f"Topic: {topic}\nProposals:\n{listing}\nYou are {self.name}. Reply with only the name of the "
                f"best proposal's author, one of: {', '.join(p.author for p in proposals)}.")
        try:
            result = self._loop.run(lambda: self.participant.run(task=task), self.timeout_s)
        except TimeoutError as exc:
            return fallback_vote(self.name, proposals, f"no vote within {self.timeout_s:g} s: {exc}")
        return text_vote(self.name, _last_text(result), proposals)
