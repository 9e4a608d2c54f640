"""Shared fixtures: the real tiny tier and a real OpenAI-compatible server on 127.0.0.1.

Most tests run on the ``tiny`` tier (SmolLM2-135M, the fastest shipped model): the default tier of the
settings (``mobile``, Qwen2.5-Coder-0.5B) is set to ``tiny`` here through ``TIERFLOW_DEFAULT_TIER``, which
``load_settings()`` and every ``tierflow`` subprocess read. Tests about another tier name it explicitly.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tierflow.runtimes.config import TierConfig, default_tiers
from tierflow.runtimes.registry import TierRegistry

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TIERFLOW_DEFAULT_TIER", "tiny")
REPO = Path(__file__).resolve().parent.parent
# Each area keeps its server fixtures in tests/fixtures_<area>.py; they are loaded for every test.
pytest_plugins = sorted(f"tests.{p.stem}" for p in Path(__file__).parent.glob("fixtures_*.py"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_registry() -> TierRegistry:
    """The default install's tiers with ``tiny`` (SmolLM2-135M in-process through llama.cpp) as the default."""
    return TierRegistry(default_tiers(), "tiny")


@pytest.fixture(scope="session")
def cloud_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server serving the shipped GGUF; yields its base URL."""
    from tests.fixtures_tiers import LlamaServer

    server = LlamaServer(free_port(), tmp_path_factory.mktemp("cloud") / "server.log")
    server.start()
    try:
        yield server.base_url
    finally:
        server.kill()


def cloud_tier(base_url: str, **overrides: object) -> TierConfig:
    """A cloud tier on the test server; llama.cpp's server takes schemas in the json_object form."""
    settings: dict[str, object] = {"json_mode": "json_object", "timeout_s": 60, "max_retries": 0, **overrides}
    return TierConfig(kind="openai", base_url=base_url, model="smollm2", **settings)
