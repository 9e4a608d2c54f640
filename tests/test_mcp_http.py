"""tierflow's MCP servers over streamable HTTP: bearer tokens, and clients other than ours (langchain-mcp-adapters)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from langchain_mcp_adapters.client import MultiServerMCPClient

from tests.fixtures_mcp import REPO, HttpServerFactory
from tierflow.mcp_servers.calculator import build_calculator_server
from tierflow.mcp_servers.serve import ServeError, http_app, is_loopback
from tierflow.tools.mcp.client import McpClient, McpConnectionError
from tierflow.tools.mcp.config import McpServerConfig

pytestmark = pytest.mark.server
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def test_wrong_or_missing_token_gets_401_and_nothing_runs(mcp_http_server: HttpServerFactory, tmp_path: Path) -> None:
    root = tmp_path / "notes"
    url = mcp_http_server("tierflow.mcp_servers.notes", "--root", str(root), token="s3cret")
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "write_note", "arguments": {"path": "x.md", "text": "pwned"}}}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        for body in (INIT, call):
            reply = httpx.post(url, json=body, headers={**HEADERS, **headers}, timeout=10)
            assert reply.status_code == 401 and reply.json()["error"] == "unauthorized"
    assert not (root / "x.md").exists()
    ok = httpx.post(url, json=INIT, headers={**HEADERS, "Authorization": "Bearer s3cret"}, timeout=10)
    assert ok.status_code == 200
    # Our client with the token works; without it, it fails with a clear error at start.
    with McpClient({"notes": McpServerConfig(transport="http", url=url, token="s3cret")}) as client:
        assert client.call("notes", "write_note", {"path": "x.md", "text": "hi"}) == "wrote 2 characters to x.md"
    with pytest.raises(McpConnectionError, match=r"cannot open MCP server 'notes'.*401"):
        McpClient({"notes": McpServerConfig(transport="http", url=url, token="wrong", connect_timeout_s=10)}).start()


def test_public_bind_without_token_refuses_to_start() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    with pytest.raises(ServeError, match=r"refusing to serve MCP on 0\.0\.0\.0 without a bearer token"):
        http_app(build_calculator_server(), "0.0.0.0", None)
    http_app(build_calculator_server(), "0.0.0.0", "a-token")  # with a token it builds
    proc = subprocess.run([sys.executable, "-m", "tierflow.cli", "mcp", "serve", "calculator", "--http",
                           "--host", "0.0.0.0", "--port", "1"], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "HOME": str(REPO / ".pytest-home-unused")})
    assert proc.returncode == 2 and "without a bearer token" in proc.stderr


def test_our_client_pools_http_sessions(mcp_http_server: HttpServerFactory) -> None:
    url = mcp_http_server("tierflow.mcp_servers.calculator", token="t0k")
    config = McpServerConfig(transport="http", url=url, token="t0k", stateless=True, pool_size=3)
    with McpClient({"calc": config}) as client:

        async def many() -> list[str]:
            return list(await asyncio.gather(*(client.acall("calc", "calculate", {"expression": f"{i}*{i}"})
                                               for i in range(20))))

        assert asyncio.run(many()) == [str(i * i) for i in range(20)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_langchain_mcp_adapters_client_over_stdio_and_http(mcp_http_server: HttpServerFactory,
                                                                  tmp_path: Path) -> None:
    url = mcp_http_server("tierflow.mcp_servers.calculator", token="t0k")
    client = MultiServerMCPClient({
        "calc": {"transport": "streamable_http", "url": url, "headers": {"Authorization": "Bearer t0k"}},
        "notes": {"transport": "stdio", "command": sys.executable, "cwd": str(REPO),
                  "args": ["-m", "tierflow.cli", "mcp", "serve", "notes", "--root", str(tmp_path)]},
    })
    tools = {t.name: t for t in await client.get_tools()}
    assert {"calculate", "convert_units", "write_note", "read_note"} <= set(tools)
    converted = await tools["convert_units"].ainvoke({"value": "2", "from_unit": "h", "to_unit": "min"})
    assert "120 min" in str(converted)
    await tools["write_note"].ainvoke({"path": "n.md", "text": "from langchain"})
    assert (tmp_path / "n.md").read_text() == "from langchain"



def test_a_loopback_server_without_token_takes_only_its_own_origin(mcp_http_server: HttpServerFactory,
                                                                  tmp_path: Path) -> None:
    # Any local web page could drive a token-less loopback server when every localhost:* Origin passed.
    root = tmp_path / "notes"
    url = mcp_http_server("tierflow.mcp_servers.notes", "--root", str(root), token=None)
    own = url.removesuffix("/mcp")
    port = own.rsplit(":", 1)[1]
    for origin in ("http://localhost:1", "http://127.0.0.1:9999", "https://evil.example", "null"):
        reply = httpx.post(url, json=INIT, headers={**HEADERS, "Origin": origin}, timeout=10)
        assert reply.status_code == 403, (origin, reply.status_code)
    for origin in (own, f"http://localhost:{port}"):
        assert httpx.post(url, json=INIT, headers={**HEADERS, "Origin": origin}, timeout=10).status_code == 200
    assert httpx.post(url, json=INIT, headers=HEADERS, timeout=10).status_code == 200  # no Origin: not a browser
