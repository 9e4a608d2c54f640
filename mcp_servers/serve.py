"""Running an MCP server over stdio or streamable HTTP, with a bearer token guarding HTTP.

HTTP bound to anything but loopback refuses to start without a token; with a token, a request without
``Authorization: Bearer <token>`` (or with a wrong one) gets 401 before the MCP app sees it.
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import json
import os
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from mcp.server.fastmcp import FastMCP
from mcp.server.transport_security import TransportSecuritySettings

from tierflow.runtimes.errors import TierflowError

TOKEN_ENV = "TIERFLOW_MCP_TOKEN"
DEFAULT_PORT = 8765
Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


class ServeError(TierflowError, ValueError):
    """An MCP server cannot start as asked (e.g. a public bind address without a token)."""


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class BearerAuth:
    """ASGI middleware: HTTP requests must carry ``Authorization: Bearer <token>``; others get 401."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        if not token:
            raise ServeError("the bearer token must not be empty")
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                body = json.dumps({"error": "unauthorized", "detail": "missing or wrong bearer token"}).encode()
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def http_app(server: FastMCP, host: str = "127.0.0.1", token: str | None = None, port: int | None = None,
             allowed_origins: list[str] | None = None) -> ASGIApp:
    """The server's streamable-HTTP ASGI app (path ``/mcp``), behind :class:`BearerAuth` when a token is set.

    On loopback with a known ``port``, only that host:port is accepted in ``Host`` and only its own origins
    (plus ``allowed_origins``) in ``Origin``: a local web page on another port cannot drive the server.
    Requests without an ``Origin`` (non-browser clients) are not affected.
    """
    if not is_loopback(host) and not token:
        raise ServeError(f"refusing to serve MCP on {host} without a bearer token: pass --token or set {TOKEN_ENV}")
    if not is_loopback(host):
        # The SDK's Host-header check only knows loopback names; the token guards a public bind instead.
        server.settings.transport_security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    elif port is not None:
        names = ["127.0.0.1", "localhost", "[::1]"]
        server.settings.transport_security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=[f"{name}:{port}" for name in names],
            allowed_origins=[f"http://{name}:{port}" for name in names] + list(allowed_origins or []))
    app: ASGIApp = server.streamable_http_app()
    return BearerAuth(app, token) if token else app


def serve(server: FastMCP, *, http: bool = False, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          token: str | None = None, allowed_origins: list[str] | None = None) -> None:
    """Serve ``server`` on stdio (default) or streamable HTTP at ``http://host:port/mcp``; blocks until stopped."""
    if not http:
        server.run("stdio")
        return
    if not 0 < port < 65536:
        raise ServeError(f"port {port} is out of range")
    import uvicorn

    app = http_app(server, host, token, port, allowed_origins)
    uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="on")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--token", default=None, help=f"bearer token (default: ${TOKEN_ENV})")
    parser.add_argument("--allow-origin", action="append", default=[], dest="allowed_origins",
                        help="an extra browser Origin allowed on loopback (repeat); default: only the server's own")


def serve_from_args(server: FastMCP, args: argparse.Namespace) -> None:
    """``serve`` with the options of :func:`add_serve_arguments`; a ServeError exits with status 2."""
    try:
        serve(server, http=args.http, host=args.host, port=args.port, token=args.token or os.environ.get(TOKEN_ENV),
              allowed_origins=getattr(args, "allowed_origins", None))
    except ServeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
