"""A2A fixtures: tierflow A2A servers and a bare a2a-sdk agent, each a real process on a free loopback port.

They start together (the first A2A test pays one start-up, not three) and live for the session.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
A2A_TOKEN = "a2a-test-token"
CARD_PATH = ".well-known/agent-card.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class A2AProcess:
    """One server process: its base URL (ending in /), log, and for the echo agent the messages it received."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    received: Path | None = None
    home: Path | None = None

    def messages(self) -> list[dict[str, Any]]:
        """What the echo agent received so far (one dict per message)."""
        if self.received is None or not self.received.exists():
            return []
        return [json.loads(line) for line in self.received.read_text().splitlines() if line.strip()]


@dataclass
class A2AServers:
    tierflow: A2AProcess  # loopback, no token: the scripted orchestrator
    guarded: A2AProcess  # loopback with a token and --confirm-plan
    echo: A2AProcess  # a2a-sdk only


def _start(cmd: list[str], port: int, folder: Path, name: str, env: dict[str, str]) -> A2AProcess:
    log = folder / f"{name}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT, env=env)
    return A2AProcess(url=f"http://127.0.0.1:{port}/", proc=proc, log=log)


def _wait(server: A2AProcess, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"A2A server exited with {server.proc.returncode}: {server.log.read_text()[-3000:]}")
        try:
            if httpx.get(server.url + CARD_PATH, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"A2A server did not start in {timeout_s} s: {server.log.read_text()[-3000:]}")
        time.sleep(0.2)


def tierflow_cmd(port: int, *extra: str) -> list[str]:
    """``tierflow a2a serve`` on the scripted orchestrator (tests/a2a_support.py)."""
    return [sys.executable, "-m", "tierflow.cli", "a2a", "serve", "--graph", "tests.a2a_support:scripted_graph",
            "--port", str(port), *extra]


def server_env(home: Path) -> dict[str, str]:
    return {**os.environ, "TIERFLOW_HOME": str(home), "TIERFLOW_MEMORY__ENABLED": "false",
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(scope="session")
def a2a_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[A2AServers]:
    """Three real servers: tierflow (open), tierflow (token, --confirm-plan), and the a2a-sdk echo agent."""
    folder = tmp_path_factory.mktemp("a2a")
    ports = [free_port() for _ in range(3)]
    open_home, guarded_home = folder / "home-open", folder / "home-guarded"
    tierflow = _start(tierflow_cmd(ports[0]), ports[0], folder, "tierflow", server_env(open_home))
    tierflow.home = open_home
    guarded = _start(tierflow_cmd(ports[1], "--confirm-plan", "--token", A2A_TOKEN), ports[1], folder, "guarded",
                     server_env(guarded_home))
    guarded.home = guarded_home
    received = folder / "echo-received.jsonl"
    echo = _start([sys.executable, "-m", "tests.a2a_echo", "--port", str(ports[2]), "--log",
                   str(received)], ports[2], folder, "echo", dict(os.environ))
    echo.received = received
    servers = A2AServers(tierflow, guarded, echo)
    try:
        for server in (tierflow, guarded, echo):
            _wait(server)
        yield servers
    finally:
        for server in (tierflow, guarded, echo):
            server.proc.terminate()
        for server in (tierflow, guarded, echo):
            try:
                server.proc.wait(10)
            except subprocess.TimeoutExpired:
                server.proc.kill()
