"""``tierflow mcp serve tierflow`` answers the handshake before it loads models: nothing heavy is on that path.

Speed targets live in bench/mcp.py (``--transports startup``); this checks the structure that makes start-up fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

pytestmark = pytest.mark.server

# What the tools need but initialize and tools/list must not wait for: model runtimes, LangGraph, settings.
HEAVY = ("torch", "transformers", "sentence_transformers", "llama_cpp", "langgraph", "langchain_openai", "openai",
         "tierflow.app", "tierflow.settings", "tierflow.runtimes.router", "tierflow.graphs.runner")
SERVING = "tierflow MCP server: serving"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def tierflow_command() -> list[str]:
    """The installed ``tierflow`` console script next to this interpreter, else ``python -m tierflow.cli``."""
    script = Path(sys.executable).with_name("tierflow")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tierflow.cli"]


def imported_before(log: str, mark: str) -> set[str]:
    """Modules a ``-X importtime`` log on stderr shows imported before the line starting with ``mark``."""
    head, found, _ = log.partition(mark)
    assert found, f"the server never logged {mark!r}:\n{log[-2000:]}"
    return {line.rsplit("|", 1)[1].strip() for line in head.splitlines() if line.startswith("import time:")}


@pytest.mark.anyio
async def test_serve_lists_tools_before_loading_any_model(tmp_path: Path) -> None:
    # PYTHONPROFILEIMPORTTIME makes the server log every import on stderr; the line it writes when it starts
    # serving (and warming in the background) splits what serving needed from what the warm-up loads.
    command, *args = tierflow_command()
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1", "TIERFLOW_HOME": str(tmp_path / "home"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    params = StdioServerParameters(command=command, args=[*args, "mcp", "serve", "tierflow"], cwd=str(tmp_path),
                                   env=env)
    errlog = tmp_path / "stderr.log"
    with errlog.open("w") as sink:
        async with stdio_client(params, errlog=sink) as (read, write), ClientSession(read, write) as session:
            init = await session.initialize()
            listed = await session.list_tools()
    assert init.serverInfo.name == "tierflow"
    assert {t.name for t in listed.tools} == {"run_task", "classify_intent", "plan_task"}
    before = imported_before(errlog.read_text(errors="replace"), SERVING)
    assert "mcp.server.fastmcp" in before and "tierflow.mcp_servers.tierflow_server" in before  # (the log works)
    loaded = sorted(m for m in before if m in HEAVY or m.startswith(tuple(f"{h}." for h in HEAVY)))
    assert loaded == [], f"imported before serving: {loaded}"
