"""The worker agent: one subtask, one role, a bounded loop of schema-constrained tool decisions."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel, Field, TypeAdapter, field_validator

from tierflow.agents.plan import Subtask
from tierflow.agents.roles import DEFAULT_ROLES, Role
from tierflow.runtimes.errors import MODEL_CALL_ERRORS, RUN_ENDING_ERRORS, StructuredOutputError
from tierflow.runtimes.journal import current_journal
from tierflow.runtimes.structured import invoke_json
from tierflow.tools.grounding import GROUNDED, ground_schema, numbers_in, ungrounded
from tierflow.tools.policy import ROLE_METADATA_KEY
from tierflow.tools.registry import ToolRegistry, args_json_schema

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
    # tool_result: the model failed after a tool answered, so the subtask ends with the tool's result.
    stopped: Literal["finished", "max_steps", "repeated_call", "tool_result", "error"] = "finished"
    error: str | None = None
    notes: list[str] = Field(default_factory=list, description="what the answer checks changed, and why")

    @property
    def failed(self) -> bool:
        """True when the subtask produced nothing usable."""
        return not self.output.strip()


class CallTool(BaseModel):
    """The model's decision to call ``tool`` with ``args`` (one step of the tool loop)."""

    action: Literal["call_tool"] = "call_tool"
    tool: str = ""
    args: dict[str, Any] = Field(default_factory=dict)

    @field_validator("tool", mode="before")
    @classmethod
    def _name(cls, value: Any) -> str:
        return str(value)  # a name that is no allowed tool is refused by the loop, not by parsing

    @field_validator("args", mode="before")
    @classmethod
    def _args(cls, value: Any) -> dict[str, Any]:
        return value if isinstance(value, dict) else {}  # the tool then reports what is missing

    @staticmethod
    def branch(tool: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
        """The JSON schema of a call to ``tool`` with these argument properties (one branch of action_schema)."""
        return {
            "type": "object",
            "properties": {"action": {"const": "call_tool"}, "tool": {"const": tool},
                           "args": {"type": "object", "properties": properties, "required": required}},
            "required": ["action", "tool", "args"],
        }


class Finish(BaseModel):
    """The model's decision to end the subtask with ``answer``."""

    action: Literal["finish"] = "finish"
    answer: str = ""

    @field_validator("answer", mode="before")
    @classmethod
    def _text(cls, value: Any) -> str:
        return str(value)

    @staticmethod
    def branch() -> dict[str, Any]:
        """The JSON schema of a finish (the last branch of action_schema)."""
        return {"type": "object", "properties": {"action": {"const": "finish"}, "answer": {"type": "string"}},
                "required": ["action", "answer"]}


# What a worker step decides, told apart by its ``action`` field.
WorkerAction = Annotated[CallTool | Finish, Field(discriminator="action")]
_ACTION = TypeAdapter(WorkerAction)


def parse_action(raw: dict[str, Any]) -> CallTool | Finish:
    """A decoded action as its typed form; anything but a tool call counts as a finish (small models drift).

    Fields are coerced the lenient way the loop has always read them: a non-dict ``args`` becomes ``{}``, a
    non-string answer its text.
    """
    return _ACTION.validate_python({**raw, "action": "call_tool" if raw.get("action") == "call_tool" else "finish"})


def action_schema(registry: ToolRegistry, tool_names: Sequence[str],
                  context_numbers: Sequence[str] | None = None, context_text: str = "") -> dict[str, Any]:
    """One branch per allowed tool (its own argument schema) plus a ``finish`` branch.

    Tool choice is decoded under a JSON schema instead of native tool calling so that the same loop
    works on every tier, including llama.cpp models whose chat templates have no tool format. With
    ``context_numbers``, grounded arguments (tools.grounding) admit only those numbers; a tool whose
    grounded argument has nothing to choose from is left out.
    """
    branches: list[dict[str, Any]] = []
    for tool in registry.subset(tool_names):
        args = args_json_schema(tool)
        if context_numbers is not None:
            grounded = ground_schema(args, context_numbers, context_text)
            if grounded is None:
                continue
            args = grounded
        else:
            args = _without_grounding(args)
        # grounding may split a tool's arguments into alternatives (distinct units): one branch each
        branches += [CallTool.branch(tool.name, alternative.get("properties", {}), alternative.get("required", []))
                     for alternative in args.get("anyOf") or [args]]
    branches.append(Finish.branch())
    return {"anyOf": branches}


def _without_grounding(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with tierflow's grounding keys removed (they are not JSON Schema)."""
    props = {name: {k: v for k, v in prop.items() if not k.startswith("x-tierflow-")} if isinstance(prop, dict)
             else prop for name, prop in (schema.get("properties") or {}).items()}
    return {**schema, "properties": props}


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
            return self._tool_loop(subtask, role, messages, config, request, prior or {})
        except RUN_ENDING_ERRORS:
            raise
        except MODEL_CALL_ERRORS as exc:
            return WorkerResult(subtask_id=subtask.id, role=role.name, output="", stopped="error",
                                error=str(exc), steps=1)

    def _tool_loop(self, subtask: Subtask, role: Role, messages: list[BaseMessage],
                   config: RunnableConfig | None, request: str, prior: Mapping[str, str]) -> WorkerResult:
        records: list[ToolCallRecord] = []
        seen_calls: set[str] = set()
        context_text = " ".join([request, *prior.values()])
        base_numbers = numbers_in(context_text)

        def end(step: int, stopped: str, output: str = "", error: str | None = None) -> WorkerResult:
            result = WorkerResult(subtask_id=subtask.id, role=role.name, output=output, tool_calls=records,
                                  steps=step, stopped=stopped, error=error)  # type: ignore[arg-type]
            return self._checked(result, request, prior)

        # Operands come from the request and earlier subtasks' results, not from this loop's own tool results:
        # any computation on the request fits in one expression, and small models otherwise feed a result back
        # in (391*23, then 8993*23, ...) instead of finishing.
        schema = action_schema(self.tools, subtask.tools, base_numbers, context_text)
        for step in range(1, self.max_steps + 1):
            try:
                action = parse_action(invoke_json(self.model, messages, schema, config, name="action"))
            except RUN_ENDING_ERRORS:
                raise
            except (StructuredOutputError, *MODEL_CALL_ERRORS) as exc:
                if not _tool_outputs(records):
                    raise
                # The tool's answer is the truth the run has; a later bad reply must not throw it away.
                return end(step, "tool_result", "", f"{type(exc).__name__}: {exc}")
            if isinstance(action, Finish):
                return end(step, "finished", action.answer.strip())
            name, args = action.tool, action.args
            key = json.dumps([name, args], sort_keys=True)
            if key in seen_calls:
                return end(step, "repeated_call")
            seen_calls.add(key)
            record = self._call_tool(subtask, name, args, config)
            records.append(record)
            # A tool declared private (metadata {"private": True}) marks its result so the tier router
            # keeps every later call of this loop on tiers cleared for private data.
            private = bool(name in self.tools and (self.tools.get(name).metadata or {}).get("private"))
            messages = [*messages, AIMessage(json.dumps(action.model_dump())),
                        HumanMessage(f"Tool {name} {'failed' if record.error else 'returned'}: {record.output}\n"
                                     + ("Fix the call, or finish." if record.error else
                                        f'If that answers the task, reply {{"action": "finish", "answer": ...}} '
                                        f"stating {record.output} exactly; call a tool again only for a different "
                                        "part of the task."),
                                     additional_kwargs={"private": True} if private else {})]
        return end(self.max_steps, "max_steps")

    def _checked(self, result: WorkerResult, request: str, prior: Mapping[str, str]) -> WorkerResult:
        """Hold the answer to the tools: numbers must come from the request, earlier results or tool results.

        An empty answer, one that leaves out the tool's result, or one with a number no source has is
        replaced by the tool results themselves (``notes`` says why).
        """
        outputs = _tool_outputs(result.tool_calls)
        if not outputs:
            return result
        answer = result.output
        last = outputs[-1]
        invented = ungrounded(answer, [request, *prior.values(), *(r.output for r in outputs)]) if answer else []
        states_result = any(n in numbers_in(answer, words=False) for n in numbers_in(last.output, words=False)) \
            if numbers_in(last.output, words=False) else bool(answer)
        if answer and not invented and states_result:
            return result
        why = (f"answer had numbers no tool or request gave ({', '.join(invented)})" if invented
               else "answer left out the tool's result" if answer else "no answer after the tool call")
        summary = "; ".join(_summary(r, self.tools) for r in outputs)
        return result.model_copy(update={"output": summary, "notes": [*result.notes,
                                                                       f"{why}; answered with the tool results"]})

    def _call_tool(self, subtask: Subtask, name: str, args: dict[str, Any],
                   config: RunnableConfig | None) -> ToolCallRecord:
        if name not in subtask.tools:
            return ToolCallRecord(tool=name, args=args, output=f"tool {name!r} is not allowed here", error=True)
        # The calling role travels in the run config so tools with a role allowlist can refuse it.
        tool_config: RunnableConfig = {**(config or {}),
                                       "metadata": {**((config or {}).get("metadata") or {}),
                                                    ROLE_METADATA_KEY: subtask.role}}
        def invoke() -> tuple[str, bool]:
            try:
                return str(self.tools.get(name).invoke(args, tool_config)), False
            except Exception as exc:  # a tool's failure is an observation for the agent, not a crash
                return f"{type(exc).__name__}: {exc}", True

        journal = current_journal()  # a durable executor records the call: a recovered run does not repeat it
        output, error = invoke() if journal is None else journal.tool_call(name, args, invoke)
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
        parts += [f"Context: {m}" for m in memories]  # recalled ones say themselves that they may be stale
        parts += [f"Result of {sid}: {text[:MAX_PRIOR_RESULT_CHARS]}" for sid, text in prior.items()]
        parts.append(f"Your task: {subtask.goal}")
        return [SystemMessage(system), HumanMessage("\n".join(parts))]


def _text(message: Any) -> str:
    return message.text if isinstance(message, AIMessage) else str(message)


def _tool_outputs(records: Sequence[ToolCallRecord]) -> list[ToolCallRecord]:
    """The calls that returned a result (not an error)."""
    return [r for r in records if not r.error and r.output]


def _summary(record: ToolCallRecord, tools: ToolRegistry) -> str:
    """A tool result as an answer: ``17*23 = 391`` for a grounded expression, ``5 km = 3.1 mi``, else the output."""
    props = args_json_schema(tools.get(record.tool)).get("properties", {}) if record.tool in tools else {}
    grounded = {name: (prop or {}).get(GROUNDED) for name, prop in props.items()}
    expressions = [name for name, kind in grounded.items() if kind == "expression" and name in record.args]
    if len(expressions) == 1:
        return f"{record.args[expressions[0]]} = {record.output}"
    if {"value", "from_unit"} <= set(record.args):
        return f"{record.args['value']} {record.args['from_unit']} = {record.output}"
    return record.output
