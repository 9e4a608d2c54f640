"""One registry for every tool an agent may call, native Python or (later) MCP-backed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from langchain_core.tools import BaseTool
from pydantic import BaseModel

from tierflow.tools.errors import UnknownToolError


class ToolRegistry:
    """Tools by name; agents ask it for the subset a subtask is allowed to use."""

    def __init__(self, tools: Iterable[BaseTool] = ()) -> None:
        self._tools: dict[str, BaseTool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: BaseTool) -> None:
        if tool.name in self._tools:
            hint = (f" (MCP server {tool.server!r} has a tool of that name: give the server a `prefix`)"
                    if getattr(tool, "server", None) else "")
            raise ValueError(f"tool {tool.name!r} is registered twice{hint}")
        self._tools[tool.name] = tool

    @property
    def names(self) -> list[str]:
        return sorted(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def get(self, name: str) -> BaseTool:
        try:
            return self._tools[name]
        except KeyError:
            raise UnknownToolError(name, self.names) from None

    def subset(self, names: Iterable[str]) -> list[BaseTool]:
        return [self.get(name) for name in names]

    def describe(self, names: Iterable[str]) -> list[dict[str, Any]]:
        """Name, description and argument schema of each tool, for prompts and JSON schemas."""
        return [
            {"name": tool.name, "description": tool.description,
             "args": args_json_schema(tool).get("properties", {})}
            for tool in self.subset(names)
        ]


def args_json_schema(tool: BaseTool) -> dict[str, Any]:
    """The JSON schema of a tool's arguments, with extension keys such as tierflow.tools.grounding's kept.

    An explicit pydantic ``args_schema`` is read directly: LangChain's ``tool_call_schema`` rebuilds the
    model and drops ``json_schema_extra``.
    """
    schema = tool.args_schema
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema.model_json_schema()
    return tool.tool_call_schema.model_json_schema()
