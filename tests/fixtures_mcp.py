"""MCP fixtures: stdio server declarations, HTTP servers on random loopback ports, the MCP Inspector CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.paths import missing_server
from tierflow.tools.mcp.config import McpServerConfig

REPO = Path(__file__).resolve().parent.parent
INSPECTOR_DIR = Path(os.environ.get("TIERFLOW_MCP_INSPECTOR_DIR", Path.home() / ".cache/tierflow/mcp-inspector"))


def stdio_server(module: str, *args: str, **config: object) -> McpServerConfig:
    """A stdio declaration that starts ``python -m module args`` from the repository root."""
    return McpServerConfig(command=sys.executable, args=["-m", module, *args], cwd=str(REPO), **config)


def raw_server(**config: object) -> McpServerConfig:
    """The low-level SDK test server of tests/mcp_raw_server.py."""
    return stdio_server("tests.mcp_raw_server", **config)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 60) -> None:
    """Block until something answers on ``url`` (any status), or fail with the server's log."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"MCP HTTP server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"MCP HTTP server did not start in {timeout_s} s: {log.read_text()[-2000:]}")
        time.sleep(0.2)


HttpServerFactory = Callable[..., str]


@pytest.fixture
def mcp_http_server(tmp_path: Path) -> Iterator[HttpServerFactory]:
    """Factory: start ``python -m module --http`` on a free loopback port with ``token``; returns the /mcp URL."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(module: str, *args: str, token: str | None = "test-token") -> str:
        port = free_port()
        log = tmp_path / f"{module}-{port}.log"
        cmd = [sys.executable, "-m", module, *args, "--http", "--host", "127.0.0.1", "--port", str(port)]
        if token:
            cmd += ["--token", token]
        with log.open("wb") as sink:
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT)
        procs.append(proc)
        url = f"http://127.0.0.1:{port}/mcp"
        wait_http(url, proc, log)
        return url

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def inspector_command() -> list[str] | None:
    """``node …/inspector-cli`` from the cache infra/setup.d/30-mcp-inspector.sh fills, or None if absent."""
    node = INSPECTOR_DIR / "node"
    cli = INSPECTOR_DIR / "node_modules" / ".bin" / "mcp-inspector"
    if not (node.exists() and cli.exists()):
        return None
    return [str(node), str(cli.resolve()), "--cli"]


@pytest.fixture(scope="session")
def inspector() -> list[str]:
    """The MCP Inspector CLI; skipped with the reason when setup could not install it."""
    cmd = inspector_command()
    if cmd is None:
        missing_server(f"MCP Inspector not installed in {INSPECTOR_DIR} (run infra/setup.d/30-mcp-inspector.sh)")
    return cmd
