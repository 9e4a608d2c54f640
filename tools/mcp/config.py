"""Declarations of the MCP servers agents may use, as they appear under ``[mcp_servers.NAME]`` in settings."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class McpServerConfig(BaseModel):
    """One MCP server: how to reach it (stdio command or streamable-HTTP URL), pooling, limits, who may use it.

    ``stateless = false`` (the default) keeps one session for the client's lifetime, so server-side state
    survives between calls; ``stateless = true`` opens ``pool_size`` sessions (default: one per CPU, since a
    stdio session is one server process) and sends each call to the least busy one.
    """

    model_config = ConfigDict(extra="forbid")

    transport: Literal["stdio", "http"] = "stdio"
    command: str | None = Field(None, description="stdio: the executable to start")
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] | None = Field(None, description="stdio: extra environment variables")
    cwd: str | None = None
    url: str | None = Field(None, description="http: the streamable-HTTP endpoint, e.g. http://127.0.0.1:8765/mcp")
    headers: dict[str, str] = Field(default_factory=dict)
    token: str | None = Field(None, description="http: bearer token sent as 'Authorization: Bearer …'")
    stateless: bool = False
    pool_size: int | None = Field(None, ge=1, le=32,
                                  description="sessions opened when stateless (default: one per CPU, at most 8)")
    max_concurrency: int = Field(8, ge=1, le=256, description="calls in flight to this server at once")
    timeout_s: float = Field(30.0, gt=0, le=3600, description="per call, including a reconnect")
    connect_timeout_s: float = Field(20.0, gt=0, le=600)
    max_result_chars: int = Field(4000, ge=100, le=1_000_000, description="longer results are cut, with a marker")
    max_argument_chars: int = Field(100_000, ge=100, le=10_000_000, description="larger arguments are refused")
    tools: list[str] | None = Field(None, description="only these tools of the server (default: all)")
    prefix: str = Field("", description="prepended to the server's tool names in tierflow's registry")
    allow_roles: list[str] | None = Field(None, description="agent roles that may call these tools (default: all)")

    def sessions(self) -> int:
        """How many sessions the client opens: 1 for a stateful server, else ``pool_size`` or one per CPU."""
        if not self.stateless:
            return 1
        return self.pool_size or max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                            else os.cpu_count() or 1))

    @model_validator(mode="after")
    def _endpoint_matches_transport(self) -> McpServerConfig:
        if self.transport == "stdio" and not self.command:
            raise ValueError("a stdio MCP server needs 'command'")
        if self.transport == "http":
            if not self.url or not self.url.startswith(("http://", "https://")):
                raise ValueError("an http MCP server needs 'url' starting with http:// or https://")
        return self
