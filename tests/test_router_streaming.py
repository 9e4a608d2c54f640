"""The router streams chunk by chunk: the first token reaches the caller when the tier yields it."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from tierflow.runtimes.config import default_tiers
from tierflow.runtimes.registry import TierRegistry
from tierflow.runtimes.router import TierRouter

PAUSE_S = 0.4


class SlowStreamingModel(BaseChatModel):
    """A scripted tier that yields four words, one every PAUSE_S seconds."""

    tier: str = "tiny"

    @property
    def _llm_type(self) -> str:
        return "slow-scripted"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage("one two three four"))])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        for word in ["one ", "two ", "three ", "four"]:
            yield ChatGenerationChunk(message=AIMessageChunk(content=word))
            time.sleep(PAUSE_S)


def test_chunks_arrive_as_the_tier_yields_them():
    registry = TierRegistry(default_tiers(), "tiny")
    registry._models["tiny"] = SlowStreamingModel()  # the tier's model, scripted: only the timing matters here
    router = TierRouter(registry=registry)
    router.invoke("count", tier="tiny")  # warm up: the first routing reads the tiers' tokenizers
    started = time.monotonic()
    arrivals: list[tuple[float, str]] = []
    for chunk in router.stream("count", tier="tiny"):
        if chunk.text:
            arrivals.append((time.monotonic() - started, chunk.text))
    assert [text for _, text in arrivals] == ["one ", "two ", "three ", "four"]
    # the first word arrives before the tier has finished (it used to come only after all four, at ~1.6 s)
    assert arrivals[0][0] < PAUSE_S
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(arrivals)]
    assert all(gap > PAUSE_S * 0.5 for gap in gaps), gaps
