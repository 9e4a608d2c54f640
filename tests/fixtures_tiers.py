"""Servers for router tests: a llama.cpp OpenAI-compatible server a test may kill, and one that hangs."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tierflow.runtimes.mobile import shipped_model_path


class LlamaServer:
    """llama-cpp-python's server on a fixed loopback port, startable and killable by the test."""

    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout_s: float = 90) -> None:
        with self.log.open("ab") as sink:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "llama_cpp.server", "--model", str(shipped_model_path()), "--host",
                 "127.0.0.1", "--port", str(self.port), "--n_ctx", "2048", "--n_threads", "1",
                 "--model_alias", "smollm2"], stdout=sink, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise RuntimeError(f"server did not start in {timeout_s} s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def killable_server(tmp_path: Path) -> Iterator[LlamaServer]:
    """A cloud-tier server this test owns; it may kill and restart it on the same port."""
    from tests.conftest import free_port

    server = LlamaServer(free_port(), tmp_path / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def hanging_server() -> Iterator[str]:
    """A real TCP server on 127.0.0.1 that accepts connections and never answers; yields a base URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                accepted.append(conn)  # hold it open, read nothing, answer nothing
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        stop.set()
        thread.join(2)
        for conn in accepted:
            conn.close()
        listener.close()
