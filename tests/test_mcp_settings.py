"""MCP servers declared in settings: validation, and their tools registered next to the native ones."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.fixtures_mcp import REPO
from tierflow.agents.intent import IntentResult
from tierflow.app import build_deps
from tierflow.settings import SettingsError, load_settings


class FixedIntent:
    def classify(self, text: str) -> IntentResult:
        return IntentResult(label="calculate", confidence=1.0)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tierflow.toml"
    path.write_text(text)
    return path


def test_a_stdio_server_needs_a_command(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"mcp_servers.calc.*a stdio MCP server needs 'command'"):
        load_settings(write(tmp_path, '[mcp_servers.calc]\ntransport = "stdio"\n'))
    with pytest.raises(SettingsError, match=r"mcp_servers.web.*needs 'url' starting with http"):
        load_settings(write(tmp_path, '[mcp_servers.web]\ntransport = "http"\nurl = "ftp://x"\n'))
    with pytest.raises(SettingsError, match=r"mcp_servers.calc.pool_size"):
        load_settings(write(tmp_path, '[mcp_servers.calc]\ncommand = "x"\npool_size = 0\n'))


def calc_server(*extra: str) -> str:
    """The calculator MCP server as a settings block, plus ``extra`` lines."""
    lines = ["[mcp_servers.calc]", f'command = "{sys.executable}"', 'args = ["-m", "tierflow.mcp_servers.calculator"]',
             f'cwd = "{REPO}"', *extra]
    return "\n".join(lines)


@pytest.mark.server
def test_declared_servers_tools_join_the_registry(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, f"""
home = "{tmp_path / 'home'}"
{calc_server('stateless = true', 'pool_size = 2', 'prefix = "calc_"')}
[mcp_servers.notes]
command = "{sys.executable}"
args = ["-m", "tierflow.mcp_servers.notes", "--root", "{tmp_path / 'notes'}"]
cwd = "{REPO}"
prefix = "notes_"
allow_roles = ["writer", "researcher"]
"""))
    # An injected classifier, as in test_orchestrator; chat models load lazily, so no model runs here.
    deps = build_deps(settings, classifier=FixedIntent())
    names = deps.worker.tools.names
    assert {"calculator", "convert_units", "word_count", "calc_calculate", "calc_convert_units",
            "notes_write_note"} <= set(names)
    assert "notes_write_note" in deps.decomposer.tools  # the planner may plan with MCP tools
    tool = deps.worker.tools.get("notes_write_note")
    assert tool.invoke({"path": "a.md", "text": "hi"}) == "wrote 2 characters to a.md"
    assert (tmp_path / "notes" / "a.md").read_text() == "hi"
    assert tool.allow_roles == ["writer", "researcher"]


@pytest.mark.server
def test_a_server_tool_named_like_a_native_one_asks_for_a_prefix(tmp_path: Path) -> None:
    # the calculator server has convert_units, and so do the native tools
    settings = load_settings(write(tmp_path, f"""
home = "{tmp_path / 'home'}"
{calc_server()}
"""))
    with pytest.raises(ValueError, match="tool 'convert_units' is registered twice "
                                         r"\(MCP server 'calc' has a tool of that name: give the server a `prefix`\)"):
        build_deps(settings, classifier=FixedIntent())
