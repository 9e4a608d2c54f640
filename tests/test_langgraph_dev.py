"""`langgraph dev` serves the graphs langgraph.json names: listed through its HTTP API, and run to completion.

The server comes from its own tool environment (infra/setup.d/70-langgraph-dev.sh: langgraph-cli[inmem] needs
protobuf and grpcio versions tierflow's .venv cannot hold), with tierflow installed from this checkout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.paths import REPO, missing_server
from tierflow.examples.triage import DECLINED

pytestmark = [pytest.mark.server, pytest.mark.model, pytest.mark.timeout(400)]
ENV = Path(os.environ.get("TIERFLOW_LANGGRAPH_ENV") or Path.home() / ".cache" / "tierflow" / "langgraph-dev")
SETUP = "bash infra/setup.d/70-langgraph-dev.sh"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`langgraph dev` on a free loopback port, offline, on the tiny tier with a throwaway home; its base URL."""
    exe = ENV / "bin" / "langgraph"
    if not exe.is_file():
        missing_server(f"no langgraph-cli tool environment at {ENV} ({SETUP})")
    where = subprocess.run([str(ENV / "bin" / "python"), "-c", "import tierflow; print(tierflow.__file__)"],
                           capture_output=True, text=True, timeout=60)
    if where.returncode != 0 or not Path(where.stdout.strip()).resolve().is_relative_to(REPO.resolve()):
        found = where.stdout.strip() or where.stderr[-300:]
        missing_server(f"{ENV} does not serve this checkout's tierflow ({found}); run {SETUP}")
    home = tmp_path_factory.mktemp("langgraph-dev")
    env = {**os.environ, "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGGRAPH_NO_VERSION_CHECK": "true",
           "TIERFLOW_HOME": str(home), "TIERFLOW_DEFAULT_TIER": "tiny", "TIERFLOW_ROUTING__MAX_ESCALATIONS": "0",
           "TIERFLOW_NOTES": str(home / "notes"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("TIERFLOW_CONFIG", None)
    port = free_port()
    log_path = home / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([str(exe), "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1", "--port",
                                 str(port), "--config", str(REPO / "langgraph.json")], cwd=REPO, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240  # it imports every graph (models, MCP servers) before it answers
        while True:
            if proc.poll() is not None:
                pytest.fail(f"langgraph dev exited {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/ok", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"langgraph dev did not answer /ok:\n{log_path.read_text()[-3000:]}")
            time.sleep(1)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server, its worker and the MCP servers the graphs started
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_the_server_lists_every_graph_of_langgraph_json(server: str) -> None:
    declared = set(json.loads((REPO / "langgraph.json").read_text())["graphs"])
    assert declared == {"tierflow", "triage", "research", "memory_recall", "approval"}
    found = httpx.post(f"{server}/assistants/search", json={"limit": 100}, timeout=30)
    assert found.status_code == 200, found.text
    assert {a["graph_id"] for a in found.json()} == declared


def test_a_graph_runs_to_completion_through_the_server(server: str) -> None:
    thread = httpx.post(f"{server}/threads", json={}, timeout=30).json()["thread_id"]
    done = httpx.post(f"{server}/threads/{thread}/runs/wait", timeout=300,
                      json={"assistant_id": "triage", "input": {"request": "Write a haiku about the sea"}})
    assert done.status_code == 200, done.text
    state = done.json()
    assert state["intent"]["label"] == "write" and state["pattern"] == "parallel" and state["status"] == "done"
    assert [r["subtask_id"] for r in state["results"]] == ["draft"] and state["answer"].strip()
    assert state["messages"][-1]["type"] == "ai" and state["messages"][-1]["content"] == state["answer"]
    # the same thread, as a chat UI sends it: the last human message is the request
    chat = httpx.post(f"{server}/threads/{thread}/runs/wait", timeout=120, json={
        "assistant_id": "triage", "input": {"messages": [{"role": "user", "content": "What is the weather in "
                                                                                       "Paris tomorrow?"}]}}).json()
    assert chat["request"] == "What is the weather in Paris tomorrow?" and chat["results"] == []
    assert [m["type"] for m in chat["messages"]] == ["ai", "human", "ai"]
    assert chat["messages"][-1]["content"] == DECLINED
