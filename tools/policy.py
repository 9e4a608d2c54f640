"""Tool policies: which agent roles may call which tools.

A tool carries its own allowlist (``allow_roles``, from its MCP server's declaration). Planners filter the
names they offer with :func:`allowed_tools`; the tool itself refuses a call whose run config says it comes
from a role outside the list (the worker puts its role under ``metadata["tierflow_role"]``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tierflow.tools.errors import ToolLayerError

ROLE_METADATA_KEY = "tierflow_role"


class ToolNotAllowedError(ToolLayerError, PermissionError):
    """An agent role called a tool its allowlist does not include."""


def role_of(config: Mapping[str, Any] | None) -> str | None:
    """The calling agent's role recorded in a LangChain run config, if any."""
    if not config:
        return None
    metadata = config.get("metadata") or {}
    role = metadata.get(ROLE_METADATA_KEY)
    return str(role) if role is not None else None


def permits(allow_roles: Iterable[str] | None, role: str | None) -> bool:
    """True when no allowlist is set, the caller's role is unknown, or the role is listed."""
    return allow_roles is None or role is None or role in set(allow_roles)


def check_allowed(tool: str, allow_roles: Iterable[str] | None, config: Mapping[str, Any] | None) -> None:
    """Raise :class:`ToolNotAllowedError` when the config's role may not call ``tool``."""
    role = role_of(config)
    if not permits(allow_roles, role):
        raise ToolNotAllowedError(f"role {role!r} may not call tool {tool!r}; allowed roles: "
                                  f"{', '.join(sorted(allow_roles or [])) or '(none)'}")


def allowed_tools(tools: Iterable[Any], role: str) -> list[str]:
    """Names of the tools ``role`` may call; tools without an ``allow_roles`` attribute are open to all."""
    return [tool.name for tool in tools if permits(getattr(tool, "allow_roles", None), role)]
