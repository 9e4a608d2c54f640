"""Langfuse / OpenTelemetry tracing for tierflow runs; attaches to runs through LangChain callbacks.

Off unless configured. ``open_tracing(settings.tracing)`` returns a :class:`Tracing` (or None);
``tierflow.tracing.handler()`` is the callback for one run, ``tracing.score()`` sends eval results, and
``tracing.close()`` flushes within a bounded time.
"""

from tierflow.tracing.config import ResolvedTracing, TracingConfigError, TracingSettings, resolve
from tierflow.tracing.handler import TierflowCallbackHandler
from tierflow.tracing.masking import Masker
from tierflow.tracing.propagation import continue_trace, inject_traceparent, trace_context_from_headers
from tierflow.tracing.setup import Tracing, open_tracing
from tierflow.tracing.trace_file import JsonlSpanExporter, TraceFileError, read_spans
from tierflow.tracing.tree import RunNotFoundError, render, run_trees

__all__ = [
    "JsonlSpanExporter", "Masker", "ResolvedTracing", "RunNotFoundError", "TierflowCallbackHandler", "TraceFileError",
    "Tracing", "TracingConfigError", "TracingSettings", "continue_trace", "inject_traceparent", "open_tracing",
    "read_spans", "render", "resolve", "run_trees", "trace_context_from_headers",
]
