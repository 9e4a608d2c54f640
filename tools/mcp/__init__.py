"""MCP on the client side: server declarations (``config``) and pooled sessions exposed as tools (``client``).

``client`` is built from ``bridge`` (its event loop), ``pool`` and ``session`` (connections), ``schemas``,
``tools`` (LangChain tools) and ``errors``; every public name stays importable from ``client``.

Only the declarations are imported here so that reading settings does not load the MCP SDK.
"""

from tierflow.tools.mcp.config import McpServerConfig

__all__ = ["McpServerConfig"]
