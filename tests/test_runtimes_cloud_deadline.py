"""A cloud tier call is bounded as a whole by ``timeout_s``, whatever the server does and however many retries."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tierflow.runtimes.cloud import build_cloud
from tierflow.runtimes.config import TierConfig
from tierflow.runtimes.errors import TierTimeoutError


@pytest.fixture
def trickling_server() -> Iterator[str]:
    """A real HTTP server on loopback that answers 200 and then sends one byte every 0.5 s, for ever."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n")
            while not stop.is_set():
                try:
                    conn.sendall(b" ")
                except OSError:
                    return
                time.sleep(0.5)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    stop.set()
    listener.close()


@pytest.mark.server
@pytest.mark.parametrize("retries", [0, 3])
def test_a_trickling_server_cannot_hold_a_call_past_its_deadline(trickling_server, retries):
    model = build_cloud("cloud", TierConfig(kind="openai", base_url=trickling_server, model="m", timeout_s=2,
                                            max_retries=retries))
    started = time.monotonic()
    with pytest.raises(TierTimeoutError, match="did not finish within 2 s"):
        model.invoke("hello")
    assert time.monotonic() - started < 2 + 1.0
