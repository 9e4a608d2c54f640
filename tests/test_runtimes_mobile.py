"""The in-process llama.cpp runtime (runtimes/mobile.py) on real shipped models.

Most tests use the ``tiny`` tier (SmolLM2-135M): chat, schema-constrained JSON, accounting, limits. One
test loads the default ``mobile`` tier (Qwen2.5-Coder-0.5B) to show the default install answers.
"""

import threading

import pytest
from langchain_core.messages import HumanMessage

from tierflow.runtimes.accounting import ModelCallRecorder
from tierflow.runtimes.config import TierConfig, default_tiers
from tierflow.runtimes.errors import ContextLengthExceeded, TierConfigError, UnknownTierError
from tierflow.runtimes.mobile import shipped_model_path
from tierflow.runtimes.registry import TierRegistry
from tierflow.runtimes.structured import invoke_json

pytestmark = pytest.mark.model


def test_the_offline_model_ships_as_a_gguf_file():
    path = shipped_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.read_bytes()[:4] == b"GGUF"


def test_a_chat_call_reports_tier_model_and_tokens(tiny_registry):
    recorder = ModelCallRecorder()
    reply = tiny_registry.chat_model("tiny").invoke("Say hello.", {"callbacks": [recorder]})
    assert reply.response_metadata["tier"] == "tiny"
    assert reply.usage_metadata["input_tokens"] > 0 and reply.usage_metadata["output_tokens"] > 0
    [call] = recorder.calls
    assert (call.tier, call.model) == ("tiny", "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert call.input_tokens == reply.usage_metadata["input_tokens"] and call.latency_ms > 0


def test_json_output_is_constrained_by_the_schema(tiny_registry):
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "rating": {"type": "integer"},
                                               "kind": {"type": "string", "enum": ["big", "small"]}},
              "required": ["city", "rating", "kind"]}
    value = invoke_json(tiny_registry.chat_model(), "Describe Paris as JSON.", schema)
    assert isinstance(value["city"], str) and isinstance(value["rating"], int) and value["kind"] in ("big", "small")


def test_streaming_yields_tokens_and_ends_with_usage(tiny_registry):
    chunks = list(tiny_registry.chat_model().stream("Count to three."))
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert len(chunks) > 2 and total.text
    usage = total.usage_metadata
    assert usage["input_tokens"] > 0 and usage["output_tokens"] >= len([c for c in chunks if c.text]) // 2


def test_a_prompt_longer_than_the_context_fails_before_decoding(tiny_registry):
    with pytest.raises(ContextLengthExceeded) as info:
        tiny_registry.chat_model().invoke([HumanMessage("word " * 3000)])
    assert info.value.tier == "tiny" and info.value.prompt_tokens > info.value.limit


def test_concurrent_calls_share_the_model_safely(tiny_registry):
    model, replies, errors = tiny_registry.chat_model(), [], []

    def call() -> None:
        try:
            replies.append(model.bind(max_tokens=8).invoke("Hi"))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [] and len(replies) == 2


def test_registry_errors_name_the_problem(tmp_path):
    registry = TierRegistry({"mobile": TierConfig(kind="llamacpp", model_path=str(tmp_path / "none.gguf"))}, "mobile")
    with pytest.raises(TierConfigError, match=r"none\.gguf does not exist"):
        registry.chat_model()
    with pytest.raises(UnknownTierError, match="unknown tier 'edge'; declared tiers: mobile"):
        registry.chat_model("edge")
    health = registry.check("mobile")
    assert not health.usable and "does not exist" in health.detail


def test_the_default_mobile_tier_answers_json_on_qwen():
    """The default install's ``mobile`` tier: Qwen2.5-Coder-0.5B joined from its packages, loaded on first use."""
    registry = TierRegistry(default_tiers(), "mobile")
    recorder = ModelCallRecorder()
    schema = {"type": "object", "properties": {"sum": {"type": "integer"}}, "required": ["sum"]}
    value = invoke_json(registry.chat_model().bind(max_tokens=16), "What is 2 + 3? Answer as JSON.", schema,
                        {"callbacks": [recorder]})
    assert isinstance(value["sum"], int)
    [call] = recorder.calls
    assert (call.tier, call.model) == ("mobile", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
    assert call.input_tokens > 0 and 0 < call.output_tokens <= 16 and call.error is None
