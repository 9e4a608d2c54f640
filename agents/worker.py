"""The worker agent: one subtask, one role, a bounded loop of schema-constrained tool decisions."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel, Field

from agents.plan import Subtask
from agents.roles import DEFAULT_ROLES, Role
from runtimes.errors import MODEL_CALL_ERRORS, ContextLengthExceeded
from runtimes.structured import invoke_json
from tools.policy import ROLE_METADATA_KEY
from tools.registry import ToolRegistry

MAX_TOOL_OUTPUT_CHARS = 2000
MAX_PRIOR_RESULT_CHARS = 1200


class ToolCallRecord(BaseModel):
    """A tool the worker called, with what it returned (or the error it saw)."""

    tool: str
    args: dict[str, Any]
    output: str
    error: bool = False


class WorkerResult(BaseModel):
    """Outcome of one subtask; ``stopped`` tells why the loop ended."""

    subtask_id: str
    role: str
    output: str
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    steps: int = 0
    stopped: Literal["finished", "max_steps", "repeated_call", "error"] = "finished"
    error: str | None = None


def action_schema(registry: ToolRegistry, tool_names: Sequence[str]) -> dict[str, Any]:
    """One branch per allowed tool (its own argument schema) plus a ``finish`` branch.

    Tool choice is decoded under a JSON schema instead of native tool calling so that the same loop
    works on every tier, including llama.cpp models whose chat templates have no tool format.
    """
    branches: list[dict[str, Any]] = []
    for tool in registry.subset(tool_names):
        args = tool.tool_call_schema.model_json_schema()
        branches.append({
            "type": "object",
            "properties": {"action": {"const": "call_tool"}, "tool": {"const": tool.name},
                           "args": {"type": "object", "properties": args.get("properties", {}),
                                    "required": args.get("required", [])}},
            "required": ["action", "tool", "args"],
        })
    branches.append({"type": "object", "properties": {"action": {"const": "finish"}, "answer": {"type": "string"}},
                     "required": ["action", "answer"]})
    return {"anyOf": branches}


class WorkerAgent:
    """Runs a subtask with its role's instructions and at most ``max_steps`` model calls."""

    def __init__(self, model: BaseChatModel, tools: ToolRegistry, roles: Mapping[str, Role] | None = None,
                 max_steps: int = 4) -> None:
        if max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        self.model = model
        self.tools = tools
        self.roles = dict(roles or DEFAULT_ROLES)
        self.max_steps = max_steps

    def run(self, subtask: Subtask, request: str, prior: Mapping[str, str] | None = None,
            memories: Sequence[str] = (), config: RunnableConfig | None = None) -> WorkerResult:
        """Work on ``subtask``; model failures end the subtask with ``stopped='error'`` instead of raising."""
        role = self.roles.get(subtask.role) or self.roles["generalist"]
        messages = self._messages(role, subtask, request, prior or {}, memories)
        try:
            if not subtask.tools:
                reply = self.model.invoke(messages, config)
                return WorkerResult(subtask_id=subtask.id, role=role.name, output=_text(reply).strip(), steps=1)
            return self._tool_loop(subtask, role, messages, config)
        except ContextLengthExceeded:
            raise
        except MODEL_CALL_ERRORS as exc:
            return WorkerResult(subtask_id=subtask.id, role=role.name, output="", stopped="error",
                                error=str(exc), steps=1)

    def _tool_loop(self, subtask: Subtask, role: Role, messages: list[BaseMessage],
                   config: RunnableConfig | None) -> WorkerResult:
        schema = action_schema(self.tools, subtask.tools)
        records: list[ToolCallRecord] = []
        seen_calls: set[str] = set()
        for step in range(1, self.max_steps + 1):
            action = invoke_json(self.model, messages, schema, config, name="action")
            if action.get("action") != "call_tool":
                answer = str(action.get("answer", "")).strip()
                return WorkerResult(subtask_id=subtask.id, role=role.name, output=answer or _last_output(records),
                                    tool_calls=records, steps=step)
            name = str(action.get("tool", ""))
            args = action.get("args") if isinstance(action.get("args"), dict) else {}
            key = json.dumps([name, args], sort_keys=True)
            if key in seen_calls:
                return WorkerResult(subtask_id=subtask.id, role=role.name, output=_last_output(records),
                                    tool_calls=records, steps=step, stopped="repeated_call")
            seen_calls.add(key)
            record = self._call_tool(subtask, name, args, config)
            records.append(record)
            # A tool declared private (metadata {"private": True}) marks its result so the tier router
            # keeps every later call of this loop on tiers cleared for private data.
            private = bool(name in self.tools and (self.tools.get(name).metadata or {}).get("private"))
            messages = [*messages, AIMessage(json.dumps(action)),
                        HumanMessage(f"Tool {name} {'failed' if record.error else 'returned'}: {record.output}\n"
                                     "Call another tool or finish with the answer.",
                                     additional_kwargs={"private": True} if private else {})]
        return WorkerResult(subtask_id=subtask.id, role=role.name, output=_last_output(records),
                            tool_calls=records, steps=self.max_steps, stopped="max_steps")

    def _call_tool(self, subtask: Subtask, name: str, args: dict[str, Any],
                   config: RunnableConfig | None) -> ToolCallRecord:
        if name not in subtask.tools:
            return ToolCallRecord(tool=name, args=args, output=f"tool {name!r} is not allowed here", error=True)
        # The calling role travels in the run config so tools with a role allowlist can refuse it.
        tool_config: RunnableConfig = {**(config or {}),
                                       "metadata": {**((config or {}).get("metadata") or {}),
                                                    ROLE_METADATA_KEY: subtask.role}}
        try:
            output = str(self.tools.get(name).invoke(args, tool_config))
            error = False
        except Exception as exc:  # a tool's failure is an observation for the agent, not a crash
            output, error = f"{type(exc).__name__}: {exc}", True
        if len(output) > MAX_TOOL_OUTPUT_CHARS:
            output = output[:MAX_TOOL_OUTPUT_CHARS] + f" [cut: {len(output) - MAX_TOOL_OUTPUT_CHARS} more characters]"
        return ToolCallRecord(tool=name, args=args, output=output, error=error)

    def _messages(self, role: Role, subtask: Subtask, request: str, prior: Mapping[str, str],
                  memories: Sequence[str]) -> list[BaseMessage]:
        system = role.instructions
        if subtask.tools:
            described = self.tools.describe(subtask.tools)
            system += ("\nTools: " + "; ".join(f"{t['name']}: {t['description']}" for t in described)
                       + '\nReply with JSON: {"action": "call_tool", "tool": ..., "args": {...}} '
                       'or {"action": "finish", "answer": ...}.')
        parts = [f"User request: {request}"]
        parts += [f"Memory: {m}" for m in memories]
        parts += [f"Result of {sid}: {text[:MAX_PRIOR_RESULT_CHARS]}" for sid, text in prior.items()]
        parts.append(f"Your task: {subtask.goal}")
        return [SystemMessage(system), HumanMessage("\n".join(parts))]


def _text(message: Any) -> str:
    return message.text if isinstance(message, AIMessage) else str(message)


def _last_output(records: list[ToolCallRecord]) -> str:
    return records[-1].output if records else ""
