"""Shared fixtures: the real mobile tier and a real OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runtimes.config import TierConfig, default_tiers
from runtimes.mobile import shipped_model_path
from runtimes.registry import TierRegistry

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
# Each area keeps its server fixtures in tests/fixtures_<area>.py; they are loaded for every test.
pytest_plugins = sorted(f"tests.{p.stem}" for p in Path(__file__).parent.glob("fixtures_*.py"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mobile_registry() -> TierRegistry:
    """The default install's tiers: SmolLM2-135M in-process through llama.cpp."""
    return TierRegistry(default_tiers(), "mobile")


@pytest.fixture(scope="session")
def cloud_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server serving the shipped GGUF; yields its base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("cloud") / "server.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(shipped_model_path()), "--host", "127.0.0.1",
             "--port", str(port), "--n_ctx", "2048", "--n_threads", "1", "--model_alias", "smollm2"],
            stdout=sink, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the test server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the test server did not start in 90 s: {log.read_text()[-2000:]}")
            time.sleep(0.3)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def cloud_tier(base_url: str, **overrides: object) -> TierConfig:
    """A cloud tier on the test server; llama.cpp's server takes schemas in the json_object form."""
    settings: dict[str, object] = {"json_mode": "json_object", "timeout_s": 60, "max_retries": 0, **overrides}
    return TierConfig(kind="openai", base_url=base_url, model="smollm2", **settings)
