"""MCP tools as LangChain tools (sync and async, role-checked, exact JSON schema) and the text an agent sees."""

# Not langchain_mcp_adapters' convert_mcp_tool_to_langchain_tool: its tools are async only (invoke raises), call
# ClientSession.call_tool on one session (or open a session per call), return content blocks plus an artifact and
# report isError as an error ToolMessage; tierflow's agents invoke tools from threads too, through the pooled
# client's limits and reconnects, and read capped text, with McpToolError for a failed call.

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from mcp import types
from pydantic import BaseModel, ConfigDict, PrivateAttr, create_model

from tierflow.tools.mcp.config import McpServerConfig
from tierflow.tools.policy import check_allowed

CUT_MARKER = "[cut: {n} more characters]"


class McpCaller(Protocol):
    """What an :class:`McpTool` calls its server through (the :class:`~tierflow.tools.mcp.client.McpClient`)."""

    def call(self, server: str, tool: str, args: Mapping[str, Any] | None = None,
             timeout_s: float | None = None) -> str: ...

    async def acall(self, server: str, tool: str, args: Mapping[str, Any] | None = None,
                    timeout_s: float | None = None) -> str: ...


def cut(text: str, limit: int) -> str:
    """``text`` shortened to ``limit`` characters plus a marker saying how much was cut."""
    if len(text) <= limit:
        return text
    return text[:limit] + " " + CUT_MARKER.format(n=len(text) - limit)


def result_text(result: types.CallToolResult) -> str:
    """The text an agent sees for a tool result: text parts, structured content, placeholders for binaries."""
    parts: list[str] = []
    for item in result.content:
        if isinstance(item, types.TextContent):
            parts.append(item.text)
        elif isinstance(item, types.EmbeddedResource):
            res = item.resource
            parts.append(res.text if isinstance(res, types.TextResourceContents) else f"[binary resource {res.uri}]")
        elif isinstance(item, types.ResourceLink):
            parts.append(f"[resource {item.uri}]")
        else:
            parts.append(f"[{item.type} {getattr(item, 'mimeType', '')}]".replace(" ]", "]"))
    if not parts and result.structuredContent is not None:
        parts.append(json.dumps(result.structuredContent, ensure_ascii=False))
    return "\n".join(parts)


def schema_model(name: str, schema: dict[str, Any]) -> type[BaseModel]:
    """A pydantic class whose JSON schema is exactly ``schema`` (what tierflow's prompts and planners read)."""
    model = create_model(f"{name}_args", __config__=ConfigDict(extra="allow"))
    frozen = json.loads(json.dumps(schema))

    def model_json_schema(cls: type[BaseModel], *args: Any, **kwargs: Any) -> dict[str, Any]:
        return json.loads(json.dumps(frozen))

    model.model_json_schema = classmethod(model_json_schema)  # type: ignore[method-assign,assignment]
    return model


class McpTool(BaseTool):
    """A tool of an MCP server, called through the client's pooled sessions."""

    server: str
    remote_name: str
    allow_roles: list[str] | None = None
    _client: McpCaller = PrivateAttr()
    _schema_model: type[BaseModel] = PrivateAttr()

    @classmethod
    def from_mcp(cls, client: McpCaller, server: str, config: McpServerConfig, tool: types.Tool) -> McpTool:
        """``tool`` of ``server`` as a LangChain tool named with the server's prefix, calling through ``client``."""
        schema = dict(tool.inputSchema or {"type": "object", "properties": {}})
        schema.setdefault("properties", {})
        made = cls(name=config.prefix + tool.name, description=(tool.description or tool.title or tool.name).strip(),
                   args_schema=schema, server=server, remote_name=tool.name, allow_roles=config.allow_roles)
        made._client = client
        made._schema_model = schema_model(made.name, schema)
        return made

    @property
    def tool_call_schema(self) -> type[BaseModel]:  # type: ignore[override]
        return self._schema_model

    def _run(self, config: RunnableConfig, **kwargs: Any) -> str:
        check_allowed(self.name, self.allow_roles, config)
        return self._client.call(self.server, self.remote_name, kwargs)

    async def _arun(self, config: RunnableConfig, **kwargs: Any) -> str:
        check_allowed(self.name, self.allow_roles, config)
        return await self._client.acall(self.server, self.remote_name, kwargs)
