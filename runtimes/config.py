"""Declarations of device tiers: what runtime serves a tier and with which limits and prices."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

TierKind = Literal["llamacpp", "torch", "openai"]
DataClass = Literal["public", "private"]


class RateLimit(BaseModel):
    """At most ``calls`` calls start within any window of ``period_s`` seconds."""

    model_config = ConfigDict(extra="forbid")

    calls: int = Field(ge=1)
    period_s: float = Field(gt=0)


class TierConfig(BaseModel):
    """One device tier.

    ``llamacpp`` runs a GGUF in-process; ``torch`` runs transformers weights in-process (converted
    from a GGUF once and cached); ``openai`` calls a compatible HTTP server (vLLM, Ollama, llama.cpp).
    """

    model_config = ConfigDict(extra="forbid")

    kind: TierKind
    model: str = Field("", description="model name sent to an OpenAI-compatible server; label for llamacpp")
    model_path: str | None = Field(None, description="GGUF file for llamacpp/torch; empty means the shipped model")
    shipped: str = Field("smollm2-135m", description="shipped model used when model_path is empty "
                                                    "(see tierflow.runtimes.models.SHIPPED)")
    base_url: str | None = Field(None, description="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    api_key: SecretStr = SecretStr("not-needed")
    n_ctx: int = Field(2048, ge=256, le=1_048_576)
    n_threads: int = Field(1, ge=1, le=256)
    max_tokens: int = Field(256, ge=1, le=65_536)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    seed: int = 0
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(1, ge=0, le=10)
    # How the tier is asked for JSON that follows a schema: OpenAI's ``json_schema`` response format,
    # or ``json_object`` with a ``schema`` key (llama.cpp's grammar-constrained form).
    json_mode: Literal["json_schema", "json_object"] = "json_schema"
    cost_per_1k_input: float = Field(0.0, ge=0)
    cost_per_1k_output: float = Field(0.0, ge=0)
    cost_per_cpu_s: float = Field(0.0, ge=0, description="price of one CPU-second on a local tier (a call's wall "
                                                         "time times n_threads); on a remote tier, per second")
    # What the router may send here and what the tier can do.
    data_classes: list[DataClass] = Field(default_factory=lambda: ["public", "private"],
                                          description="data this tier is cleared to see")
    strength: int = Field(1, ge=0, le=100, description="rank for escalation: a failed schema goes to a stronger tier")
    json_schema: bool = Field(True, description="can decode under a JSON schema")
    tool_calling: bool = Field(False, description="native tool calling (tierflow's agents do not need it)")
    expected_latency_ms: float = Field(1000.0, gt=0)
    # Capacity of the tier for all of tierflow: calls in flight at once and calls started per period. The DBOS
    # executor enforces both across every worker (a DBOS queue per limited tier); None means no limit.
    max_concurrency: int | None = Field(None, ge=1, description="calls in flight at once, across all workers")
    rate_limit: RateLimit | None = Field(None, description="at most `calls` call starts per `period_s` seconds")
    # torch tier only: weights to convert (GGUF; empty = the shipped SmolLM2), quantization, device.
    quantize: Literal["none", "int8"] = "int8"
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @model_validator(mode="after")
    def _check_kind_fields(self) -> TierConfig:
        if self.kind == "openai" and "data_classes" not in self.model_fields_set:
            self.data_classes = ["public"]  # data leaves the device: cleared for public data unless declared
        if self.kind == "torch" and "json_schema" not in self.model_fields_set:
            self.json_schema = False  # transformers decoding is not grammar-constrained here
        if self.kind == "openai":
            if not self.base_url:
                raise ValueError("an 'openai' tier needs base_url")
            if not self.model:
                raise ValueError("an 'openai' tier needs model")
        if self.max_tokens >= self.n_ctx:
            raise ValueError(f"max_tokens ({self.max_tokens}) must be smaller than n_ctx ({self.n_ctx})")
        return self

    def cleared_for(self, private: bool) -> bool:
        """Whether this tier may see a call's data: public data goes anywhere, private only where declared."""
        return not private or "private" in self.data_classes


# Declared price of a CPU-second on the offline tiers: 0.036 $ per CPU-hour, about an on-demand cloud vCPU-hour,
# so local and remote tiers share one currency (the routing benchmark compares them).
LOCAL_CPU_SECOND_PRICE = 0.00001
# Tokens each shipped model reads (prefill) and writes (decode) per CPU-second on a 2-core x86 box with llama.cpp
# (measured; ../shared/NOTES.md). The offline tiers are priced per token at LOCAL_CPU_SECOND_PRICE through these
# rates rather than by each call's wall time, so a benchmark on a busy machine prices the same tokens the same.
SHIPPED_TOKENS_PER_CPU_S = {"smollm2-135m": (130.0, 60.0), "qwen2.5-coder-0.5b": (100.0, 23.0),
                            "qwen2.5-coder-1.5b": (45.0, 14.0)}


def local_token_prices(shipped: str, rate: float = LOCAL_CPU_SECOND_PRICE) -> dict[str, float]:
    """Per-1k input and output token prices of a shipped model: its CPU-seconds per 1k tokens times ``rate``."""
    prefill, decode = SHIPPED_TOKENS_PER_CPU_S[shipped]
    return {"cost_per_1k_input": round(1000 / prefill * rate, 9), "cost_per_1k_output": round(1000 / decode * rate, 9)}


def default_threads() -> int:
    """Threads of the in-process tiers: two on a machine with two or more cores (more oversubscribes llama.cpp)."""
    return max(1, min(2, os.cpu_count() or 1))


def default_tiers() -> dict[str, TierConfig]:
    """The offline tiers, all in-process through llama.cpp on models shipped by PyPI packages.

    ``tiny`` SmolLM2-135M (fast tests, the cheapest rung), ``mobile`` Qwen2.5-Coder-0.5B (the default),
    ``edge`` Qwen2.5-Coder-1.5B. Each loads only when a call is routed to it. Each is priced per token at what its
    tokens take in CPU-seconds (local_token_prices), so a bigger model costs more by the CPU time it needs.
    """
    threads = default_threads()
    return {
        "tiny": TierConfig(kind="llamacpp", model="smollm2-135m-instruct-q4_1", shipped="smollm2-135m",
                           n_ctx=2048, n_threads=1, max_tokens=256, json_mode="json_object", strength=0,
                           expected_latency_ms=3000, **local_token_prices("smollm2-135m")),
        "mobile": TierConfig(kind="llamacpp", model="qwen2.5-coder-0.5b-instruct-q4_k_m", shipped="qwen2.5-coder-0.5b",
                             n_ctx=4096, n_threads=threads, max_tokens=384, json_mode="json_object", strength=1,
                             expected_latency_ms=4000, **local_token_prices("qwen2.5-coder-0.5b")),
        "edge": TierConfig(kind="llamacpp", model="qwen2.5-coder-1.5b-instruct-q4_k_m", shipped="qwen2.5-coder-1.5b",
                           n_ctx=4096, n_threads=threads, max_tokens=384, json_mode="json_object", strength=2,
                           expected_latency_ms=10000, **local_token_prices("qwen2.5-coder-1.5b")),
    }
