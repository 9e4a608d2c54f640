"""The cloud tier: any OpenAI-compatible endpoint (vLLM, llama.cpp server, Ollama, hosted APIs)."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from langchain_openai import ChatOpenAI
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import Field

from tierflow.runtimes.config import TierConfig
from tierflow.runtimes.errors import TierTimeoutError
from tierflow.runtimes.schema import json_object_format

# The absolute deadline (time.monotonic) of the tier call in flight on this context; read by the transport.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("tierflow_cloud_deadline", default=None)


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
        wire = json_object_format(fmt) if self.json_mode == "json_object" and fmt is not None else fmt
        if wire is not fmt:
            kwargs = {k: v for k, v in kwargs.items() if k != "response_format"}
            payload = super()._get_request_payload(input_, stop=stop, **kwargs)
            payload["response_format"] = wire
            return payload
        return super()._get_request_payload(input_, stop=stop, **kwargs)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        """One call bounded as a whole by ``timeout_s``: connect, every read and every retry included.

        httpx's timeouts bound each read, so a server trickling a byte at a time could hold a call for ever,
        and ``max_retries`` multiplies them. The call runs on a helper thread; at the deadline this raises
        TierTimeoutError, and the transport ends the helper's request at its next read.
        """
        timeout_s = float(self.request_timeout or 60.0) if not isinstance(self.request_timeout, tuple) \
            else float(sum(t for t in self.request_timeout if t))
        deadline = time.monotonic() + timeout_s
        box: dict[str, Any] = {}
        context = contextvars.copy_context()

        def call() -> None:
            _DEADLINE.set(deadline)
            try:
                box["result"] = super(CloudChatModel, self)._generate(messages, stop, run_manager, **kwargs)
            except BaseException as exc:  # handed to the caller's thread
                box["error"] = exc

        worker = threading.Thread(target=context.run, args=(call,), daemon=True, name=f"tierflow-{self.tier}")
        worker.start()
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive() or ("error" in box and time.monotonic() >= deadline):
            raise TierTimeoutError(self.tier, timeout_s)
        if "error" in box:
            raise box["error"]
        return box["result"]

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


class DeadlineTransport(httpx.BaseTransport):
    """Ends a request at the call's deadline: every timeout is cut to the time left, and the body stops
    at the first chunk after the deadline (a trickling server cannot outlast it)."""

    def __init__(self, inner: httpx.BaseTransport | None = None) -> None:
        self.inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline = _DEADLINE.get()
        if deadline is None:
            return self.inner.handle_request(request)
        left = deadline - time.monotonic()
        if left <= 0:
            raise httpx.ConnectTimeout("the tier call's deadline passed before this request", request=request)
        limits = dict(request.extensions.get("timeout") or {})
        request.extensions["timeout"] = {k: min(left, v) if v else left for k, v in
                                         {"connect": None, "read": None, "write": None, "pool": None,
                                          **limits}.items()}
        response = self.inner.handle_request(request)
        response.stream = _DeadlineStream(response.stream, deadline, request)  # type: ignore[arg-type]
        return response

    def close(self) -> None:
        self.inner.close()


class _DeadlineStream(httpx.SyncByteStream):
    def __init__(self, inner: Any, deadline: float, request: httpx.Request) -> None:
        self.inner, self.deadline, self.request = inner, deadline, request

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.inner:
            if time.monotonic() > self.deadline:
                raise httpx.ReadTimeout("the tier call's deadline passed while reading", request=self.request)
            yield chunk

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()


def build_cloud(name: str, config: TierConfig) -> CloudChatModel:
    """Client for the tier's endpoint; timeouts and retries come from the tier declaration."""
    return CloudChatModel(
        http_client=httpx.Client(event_hooks={"request": [_inject_traceparent]}, transport=DeadlineTransport()),
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
