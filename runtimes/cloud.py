"""The cloud tier: any OpenAI-compatible endpoint (vLLM, llama.cpp server, Ollama, hosted APIs)."""

from __future__ import annotations

from typing import Any

import httpx
from langchain_core.outputs import ChatResult
from langchain_openai import ChatOpenAI
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import Field

from runtimes.config import TierConfig


class CloudChatModel(ChatOpenAI):
    """LangChain's ChatOpenAI, tagging each result with the tier that served it."""

    tier: str = Field("cloud")

    json_mode: str = Field("json_schema")

    def _get_invocation_params(self, stop: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        return {**super()._get_invocation_params(stop=stop, **kwargs), "tier": self.tier}

    def _get_request_payload(self, input_: Any, *, stop: list[str] | None = None, **kwargs: Any) -> dict:
        payload = self._payload(input_, stop=stop, **kwargs)
        # ChatOpenAI sends OpenAI's newer ``max_completion_tokens``; llama.cpp's server, Ollama and
        # older vLLM only honour ``max_tokens``, which OpenAI itself still accepts.
        if "max_completion_tokens" in payload:
            payload["max_tokens"] = payload.pop("max_completion_tokens")
        return payload

    def _payload(self, input_: Any, *, stop: list[str] | None = None, **kwargs: Any) -> dict:
        # Servers such as llama.cpp's take a schema under ``json_object``; send it in that form when
        # the tier is declared so, otherwise pass OpenAI's ``json_schema`` through untouched.
        fmt = kwargs.get("response_format")
        if self.json_mode == "json_object" and isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            schema = (fmt.get("json_schema") or {}).get("schema") or {}
            kwargs = {k: v for k, v in kwargs.items() if k != "response_format"}
            payload = super()._get_request_payload(input_, stop=stop, **kwargs)
            payload["response_format"] = {"type": "json_object", "schema": schema}
            return payload
        return super()._get_request_payload(input_, stop=stop, **kwargs)

    def _create_chat_result(self, response: Any, generation_info: dict | None = None) -> ChatResult:
        result = super()._create_chat_result(response, generation_info)
        for generation in result.generations:
            generation.message.response_metadata["tier"] = self.tier
        return result


_TRACE_CONTEXT = TraceContextTextMapPropagator()


def _inject_traceparent(request: httpx.Request) -> None:
    # W3C trace context of the current span (a traced run's generation), so the server's spans join
    # the run's trace; outside a span nothing is added. Only traceparent: baggage stays in-process.
    _TRACE_CONTEXT.inject(request.headers)


async def _ainject_traceparent(request: httpx.Request) -> None:
    _inject_traceparent(request)


def build_cloud(name: str, config: TierConfig) -> CloudChatModel:
    """Client for the tier's endpoint; timeouts and retries come from the tier declaration."""
    return CloudChatModel(
        http_client=httpx.Client(event_hooks={"request": [_inject_traceparent]}),
        http_async_client=httpx.AsyncClient(event_hooks={"request": [_ainject_traceparent]}),
        tier=name,
        model=config.model,
        base_url=config.base_url,
        api_key=config.api_key,
        timeout=config.timeout_s,
        max_retries=config.max_retries,
        max_tokens=config.max_tokens,
        temperature=config.temperature,
        seed=config.seed,
        json_mode=config.json_mode,
    )
