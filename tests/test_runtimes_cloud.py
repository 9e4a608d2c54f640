"""The cloud tier against a real OpenAI-compatible server on 127.0.0.1 (llama-cpp-python's own)."""

import pytest

from tests.conftest import cloud_tier, free_port
from tierflow.runtimes.accounting import ModelCallRecorder
from tierflow.runtimes.registry import TierRegistry
from tierflow.runtimes.structured import invoke_json

pytestmark = [pytest.mark.model, pytest.mark.server]


def test_a_chat_call_over_http_is_accounted_to_the_cloud_tier(cloud_server):
    registry = TierRegistry({"cloud": cloud_tier(cloud_server, max_tokens=16)}, "cloud")
    recorder = ModelCallRecorder()
    reply = registry.chat_model().invoke("Say hello.", {"callbacks": [recorder]})
    assert reply.response_metadata["tier"] == "cloud"
    [call] = recorder.calls
    assert (call.tier, call.model) == ("cloud", "smollm2")
    assert call.input_tokens == reply.usage_metadata["input_tokens"] > 0
    assert 0 < call.output_tokens <= 16


def test_json_schema_output_over_http(cloud_server):
    registry = TierRegistry({"cloud": cloud_tier(cloud_server, max_tokens=64)}, "cloud")
    schema = {"type": "object", "properties": {"n": {"type": "integer"}, "ok": {"type": "boolean"}},
              "required": ["n", "ok"]}
    value = invoke_json(registry.chat_model(), "Give a number and a flag as JSON.", schema)
    assert isinstance(value["n"], int) and isinstance(value["ok"], bool)


def test_health_check_is_truthful(cloud_server):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    registry = TierRegistry({"cloud": cloud_tier(cloud_server), "dead": cloud_tier(dead)}, "cloud")
    assert registry.check("cloud").usable
    health = registry.check("dead")
    assert not health.usable and "ConnectError" in health.detail and dead in health.detail
