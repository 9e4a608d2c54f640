"""The edge tier on the real SmolLM2-135M: GGUF converted once and cached, torch decoding, accounting, limits."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from langchain_core.messages import HumanMessage

from tierflow.runtimes.accounting import ModelCallRecorder
from tierflow.runtimes.config import TierConfig
from tierflow.runtimes.edge import EdgeChatModel, build_edge, converted_dir
from tierflow.runtimes.errors import ContextLengthExceeded, TierConfigError, TierTimeoutError
from tierflow.runtimes.mobile import shipped_model_path

pytestmark = pytest.mark.model

STORY = "Write a long story about a robot who learns to paint."


@pytest.fixture(scope="module")
def edge_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A throwaway cache root, handed to build_edge the way deployments do: through $TIERFLOW_CACHE.

    The tiers below declare ``n_threads=1`` (two intra-op threads crawl on a loaded two-core machine);
    torch's thread count is process-wide, so it is put back for the tests that follow.
    """
    root = tmp_path_factory.mktemp("tierflow-cache")
    previous, threads = os.environ.get("TIERFLOW_CACHE"), torch.get_num_threads()
    os.environ["TIERFLOW_CACHE"] = str(root)
    try:
        yield root
    finally:
        torch.set_num_threads(threads)
        if previous is None:
            os.environ.pop("TIERFLOW_CACHE", None)
        else:
            os.environ["TIERFLOW_CACHE"] = previous


@pytest.fixture(scope="module")
def edge_fp32(edge_cache: Path) -> EdgeChatModel:
    """The first build: converts the shipped GGUF into the cache; unquantized fp32 weights."""
    return build_edge("edge", TierConfig(kind="torch", quantize="none", max_tokens=16, n_threads=1))


@pytest.fixture(scope="module")
def edge_int8(edge_fp32: EdgeChatModel) -> EdgeChatModel:
    """A second build of the same GGUF, read from the cache; int8 on CPU (bf16 where CUDA is present)."""
    return build_edge("edge", TierConfig(kind="torch", quantize="int8", max_tokens=16, n_threads=1))


def test_the_first_build_caches_the_converted_weights(edge_fp32, edge_cache):
    directory = converted_dir(shipped_model_path())
    assert directory.parent == edge_cache / "edge"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "tierflow-edge.json"):
        assert (directory / name).is_file(), name
    manifest = json.loads((directory / "tierflow-edge.json").read_text())
    assert manifest["source"] == str(shipped_model_path()) and manifest["architecture"] == "llama"


def test_a_second_build_loads_from_the_cache_without_converting_again(edge_fp32, edge_cache):
    directory = converted_dir(shipped_model_path())
    written = (directory / "model.safetensors").stat().st_mtime_ns
    model = build_edge("edge", TierConfig(kind="torch", quantize="none", max_tokens=16))
    assert (directory / "model.safetensors").stat().st_mtime_ns == written
    assert [p.name for p in (edge_cache / "edge").iterdir()] == [directory.name]  # no temporary leftovers
    assert model.model_name == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_device_auto_picks_bf16_on_cuda_and_int8_on_cpu(edge_fp32, edge_int8):
    if torch.cuda.is_available():
        assert (edge_int8.device, edge_int8.dtype) == ("cuda", "bfloat16")
    else:
        assert (edge_int8.device, edge_int8.dtype, edge_int8.quantize) == ("cpu", "qint8-dynamic", "int8")
        assert isinstance(edge_int8.hf_model.lm_head, torch.ao.nn.quantized.dynamic.Linear)
        assert isinstance(edge_fp32.hf_model.lm_head, torch.nn.Linear)
        assert (edge_fp32.dtype, edge_fp32.quantize) == ("float32", "none")


def test_a_chat_call_reports_tier_model_and_tokens(edge_int8):
    recorder = ModelCallRecorder()
    reply = edge_int8.bind(max_tokens=6).invoke("Say hello.", {"callbacks": [recorder]})
    assert reply.text and reply.response_metadata["tier"] == "edge"
    assert reply.response_metadata["model_name"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    usage = reply.usage_metadata
    assert usage["input_tokens"] > 0 and 0 < usage["output_tokens"] <= 6
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    [call] = recorder.calls
    assert (call.tier, call.model) == ("edge", "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert (call.input_tokens, call.output_tokens) == (usage["input_tokens"], usage["output_tokens"])


def test_fp32_and_int8_both_generate_under_greedy_decoding(edge_fp32, edge_int8):
    for model in (edge_fp32, edge_int8):
        first = model.invoke("What is the capital of France?", max_tokens=6)
        again = model.invoke("What is the capital of France?", max_tokens=6)
        assert first.text and first.text == again.text  # temperature 0 is greedy, hence repeatable


def test_max_tokens_is_honoured_per_call(edge_int8):
    reply = edge_int8.bind(max_tokens=3).invoke(STORY)
    assert reply.usage_metadata["output_tokens"] == 3
    assert reply.response_metadata["finish_reason"] == "length"


def test_streaming_yields_pieces_and_closes_with_usage(edge_int8):
    chunks = list(edge_int8.stream(STORY, max_tokens=8))
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert len([c for c in chunks if c.text]) >= 2 and total.text
    closing = chunks[-1]
    assert closing.text == "" and closing.usage_metadata["output_tokens"] == 8
    assert closing.response_metadata["tier"] == "edge"
    assert total.usage_metadata["input_tokens"] > 0
    assert total.text == edge_int8.invoke(STORY, max_tokens=8).text


def test_stop_sequences_cut_the_answer(edge_int8):
    full = edge_int8.invoke(STORY, max_tokens=8).text
    words = full.split()
    assert len(words) >= 3
    stop = words[2]
    cut = edge_int8.invoke(STORY, max_tokens=8, stop=[stop])
    assert cut.text == full[: full.index(stop)] and cut.response_metadata["finish_reason"] == "stop"
    streamed = "".join(c.text for c in edge_int8.stream(STORY, max_tokens=8, stop=[stop]))
    assert streamed == cut.text


def test_a_prompt_longer_than_the_context_fails_before_decoding(edge_int8):
    with pytest.raises(ContextLengthExceeded) as info:
        edge_int8.invoke([HumanMessage("word " * 3000)])
    assert info.value.tier == "edge" and info.value.prompt_tokens > info.value.limit
    assert info.value.limit == 2048 - 16


def test_a_call_past_its_deadline_is_stopped_with_a_typed_error(edge_int8):
    with pytest.raises(TierTimeoutError) as info:
        edge_int8.invoke(STORY, max_tokens=200, timeout_s=0.05)
    assert info.value.tier == "edge" and info.value.timeout_s == 0.05 and isinstance(info.value, TimeoutError)
    # The tier's own timeout applies when the call names none; streaming is cut off the same way.
    hasty = edge_int8.model_copy(update={"timeout_s": 0.05})
    with pytest.raises(TierTimeoutError):
        list(hasty.stream(STORY, max_tokens=200))
    assert edge_int8.invoke("Hi", max_tokens=2).usage_metadata["output_tokens"] > 0  # the model was released


def test_a_response_format_becomes_an_instruction_in_the_prompt(edge_int8):
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    plain = edge_int8.invoke("Name a city.", max_tokens=2)
    asked = edge_int8.invoke("Name a city.", max_tokens=2, response_format={
        "type": "json_schema", "json_schema": {"name": "city", "schema": schema}})
    extra = asked.usage_metadata["input_tokens"] - plain.usage_metadata["input_tokens"]
    assert extra >= edge_int8.get_num_tokens(json.dumps(schema, separators=(",", ":")))
    assert isinstance(asked.text, str)  # no constrained decoding here: the router validates the text


def test_concurrent_calls_share_the_model_safely(edge_int8):
    replies, errors = [], []

    def call() -> None:
        try:
            replies.append(edge_int8.invoke("Hi", max_tokens=4))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [] and len(replies) == 2 and replies[0].text == replies[1].text


def test_token_counts_use_the_models_own_tokenizer(edge_int8):
    assert edge_int8.get_num_tokens("hello world") == len(edge_int8.tokenizer.encode("hello world"))
    assert edge_int8.get_num_tokens("hello world") < len("hello world")


def test_bad_model_paths_name_the_problem(tmp_path):
    with pytest.raises(TierConfigError, match=r"none\.gguf does not exist"):
        build_edge("edge", TierConfig(kind="torch", model_path=str(tmp_path / "none.gguf")))
    text = tmp_path / "notes.gguf"
    text.write_text("not a model")
    with pytest.raises(TierConfigError, match=r"notes\.gguf is not a GGUF file"):
        build_edge("edge", TierConfig(kind="torch", model_path=str(text)))
    truncated = tmp_path / "truncated.gguf"
    with shipped_model_path().open("rb") as handle:
        truncated.write_bytes(handle.read(1 << 20))
    with pytest.raises(TierConfigError, match=r"truncated\.gguf is not a GGUF that transformers can convert"):
        build_edge("edge", TierConfig(kind="torch", model_path=str(truncated)), cache=tmp_path / "cache")
    assert not list((tmp_path / "cache" / "edge").iterdir())  # a failed conversion leaves nothing behind
