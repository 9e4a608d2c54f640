"""W3C trace context across process boundaries (HTTP calls out, MCP servers continuing a caller's trace).

Only ``traceparent``/``tracestate`` are propagated, never baggage: user ids and other trace
attributes stay inside the process.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()


def inject_traceparent(headers: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Add the current span's ``traceparent`` to ``headers`` (no-op outside a span); returns them."""
    _PROPAGATOR.inject(headers)
    return headers


def trace_context_from_headers(headers: Mapping[str, str]) -> dict[str, str] | None:
    """Langfuse ``TraceContext`` (trace_id, parent_span_id) from an incoming ``traceparent``, or None."""
    lowered = {k.lower(): v for k, v in headers.items()}
    span = trace.get_current_span(_PROPAGATOR.extract(lowered))
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return {"trace_id": trace.format_trace_id(ctx.trace_id), "parent_span_id": trace.format_span_id(ctx.span_id)}


@contextmanager
def continue_trace(headers: Mapping[str, str]) -> Iterator[dict[str, str] | None]:
    """Make the caller's span (from ``traceparent``) current, so spans started inside become its children."""
    lowered = {k.lower(): v for k, v in headers.items()}
    token = otel_context.attach(_PROPAGATOR.extract(lowered))
    try:
        yield trace_context_from_headers(lowered)
    finally:
        otel_context.detach(token)
