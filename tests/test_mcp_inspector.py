"""A third-party client against tierflow's servers: the official MCP Inspector in CLI mode, stdio and HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures_mcp import REPO, HttpServerFactory

pytestmark = pytest.mark.server


def inspect(inspector: list[str], *args: str, status: int = 0) -> dict:
    """Run the Inspector CLI; ``status`` 5 is its exit code for a tool result with isError."""
    proc = subprocess.run([*inspector, *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == status, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_inspector_lists_and_calls_tools_over_stdio(inspector: list[str], tmp_path: Path) -> None:
    server = [sys.executable, "-m", "tierflow.cli", "mcp", "serve", "notes", "--root", str(tmp_path)]
    listed = inspect(inspector, *server, "--method", "tools/list")
    assert {t["name"] for t in listed["tools"]} == {"list_notes", "read_note", "write_note", "search_notes",
                                                    "delete_note"}
    written = inspect(inspector, *server, "--method", "tools/call", "--tool-name", "write_note",
                      "--tool-arg", "path=inspected.md", "text=hello inspector")
    assert written["content"][0]["text"] == "wrote 15 characters to inspected.md"
    assert (tmp_path / "inspected.md").read_text() == "hello inspector"
    refused = inspect(inspector, *server, "--method", "tools/call", "--tool-name", "read_note",
                      "--tool-arg", "path=../../etc/passwd", status=5)
    assert refused["isError"] is True and "'..' is refused" in refused["content"][0]["text"]


def test_inspector_over_http_with_a_token(inspector: list[str], mcp_http_server: HttpServerFactory) -> None:
    url = mcp_http_server("tierflow.mcp_servers.calculator", token="insp3ct")
    auth = ["--header", "Authorization: Bearer insp3ct"]
    listed = inspect(inspector, url, "--transport", "http", *auth, "--method", "tools/list")
    assert {t["name"] for t in listed["tools"]} == {"calculate", "convert_units", "list_units"}
    called = inspect(inspector, url, "--transport", "http", *auth, "--method", "tools/call",
                     "--tool-name", "calculate", "--tool-arg", "expression=2^10 / 4")
    assert called["content"][0]["text"] == "256"
    # Without the token the server answers 401; the Inspector reports that authorization is required.
    denied = subprocess.run([*inspector, url, "--transport", "http", "--stored-auth-only", "--method", "tools/list"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert denied.returncode != 0 and "auth" in denied.stderr and "tools" not in denied.stdout
