"""Tracing off the run's hot path: record callback events while a run executes, build its spans afterwards.

Langfuse's CallbackHandler builds, serializes and masks an OpenTelemetry span inside every callback,
about 1 ms per graph node here, which more than doubles a run of fast nodes (``bench/tracing.py``).
:class:`DeferredHandler` only records each event (a tuple append, plus a context attach so W3C
``traceparent`` still reaches HTTP calls) and hands the finished run to one background thread per
process, where the same :class:`~tierflow.tracing.handler.TierflowCallbackHandler` replays it. The replayed
spans keep the ids the run already propagated and the times the events really happened. Written here
because neither Langfuse nor OpenTelemetry offers it: both defer only the export, not span building.

Inputs and outputs are serialized at replay: an object a step changes in place after handing it on
shows its later value. ``tracing.defer = false`` builds and serializes each span as it happens.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Sampler
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from tierflow.tracing.handler import TierflowCallbackHandler

log = logging.getLogger("tierflow.tracing")

START_EVENTS = frozenset({"on_chain_start", "on_chat_model_start", "on_llm_start", "on_tool_start",
                          "on_retriever_start"})
END_EVENTS = frozenset({"on_chain_end", "on_chain_error", "on_llm_end", "on_llm_error", "on_tool_end",
                        "on_tool_error", "on_retriever_end", "on_retriever_error"})
OTHER_EVENTS = frozenset({"on_llm_new_token", "on_agent_action", "on_agent_finish"})

# (event name, positional args, keyword args incl. run_id, wall-clock ns, span id and trace id of the run or 0)
Event = tuple[str, tuple[Any, ...], dict[str, Any], int, int, int]


class ReplayClock(IdGenerator, SpanProcessor):
    """Gives replayed spans their recorded ids (as the provider's id generator) and times (as its first processor).

    Only the replay thread sets forced ids; every other span keeps random ids and real times.
    """

    def __init__(self) -> None:
        self._random = RandomIdGenerator()
        self._forced = threading.local()
        self.starts: dict[int, int] = {}
        self.ends: dict[int, int] = {}

    def force(self, span_id: int, trace_id: int) -> None:
        self._forced.span_id, self._forced.trace_id = span_id, trace_id

    def unforce(self) -> None:
        self._forced.span_id = self._forced.trace_id = 0

    def generate_span_id(self) -> int:
        forced = getattr(self._forced, "span_id", 0)
        if forced:
            self._forced.span_id = 0  # one event starts at most one span
            return forced
        return self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        return getattr(self._forced, "trace_id", 0) or self._random.generate_trace_id()

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        started = self.starts.pop(span.context.span_id, None)
        if started is not None:
            span._start_time = started  # the SDK has no public setter for a past start

    def on_end(self, span: ReadableSpan) -> None:
        ended = self.ends.pop(span.context.span_id, None) if span.context else None
        if ended is not None and span.start_time is not None:
            span._end_time = max(ended, span.start_time)  # every processor gets this same object

    def shutdown(self) -> None:
        self.starts.clear()
        self.ends.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class Replayer:
    """One daemon thread that replays finished runs into their Langfuse handlers, in the order they finished."""

    def __init__(self, clock: ReplayClock) -> None:
        self.clock = clock
        self._queue: queue.Queue[tuple[TierflowCallbackHandler, list[Event], otel_context.Context | None] | None] = (
            queue.Queue())
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, handler: TierflowCallbackHandler, events: list[Event],
               parent: otel_context.Context | None) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="tierflow-tracing-replay", daemon=True)
                self._thread.start()
        self._queue.put((handler, events, parent))

    def drain(self, timeout_s: float) -> bool:
        """Wait until every submitted run is replayed, at most ``timeout_s``; True if it finished."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.002)
        return True

    def stop(self) -> None:
        """End the replay thread once it has replayed what was submitted; a later submit starts a new one."""
        with self._start_lock:
            if self._thread is not None and self._thread.is_alive():
                self._queue.put(None)
            self._thread = None

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                self._queue.task_done()
                return
            handler, events, parent = job
            try:
                self.replay(handler, events, parent)
            except Exception:  # tracing must never take the process down
                log.warning("tracing: replaying a run failed", exc_info=True)
            finally:
                self._queue.task_done()

    def replay(self, handler: TierflowCallbackHandler, events: list[Event],
               parent: otel_context.Context | None) -> None:
        """Feed ``events`` to ``handler`` as if they happened now, with the recorded ids and times."""
        token = otel_context.attach(parent) if parent is not None else None
        first_tokens: set[UUID] = set()
        try:
            for name, args, kwargs, at, span_id, trace_id in events:
                if name in START_EVENTS:
                    self.clock.starts[span_id] = at
                    self.clock.force(span_id, trace_id)
                elif name in END_EVENTS and span_id:
                    self.clock.ends[span_id] = at
                try:
                    getattr(handler, name)(*args, **kwargs)
                except Exception:
                    log.debug("tracing: %s replay failed", name, exc_info=True)
                finally:
                    self.clock.unforce()
                if name == "on_llm_new_token" and kwargs["run_id"] not in first_tokens:
                    first_tokens.add(kwargs["run_id"])
                    _set_completion_start(handler, kwargs["run_id"], at)
        finally:
            for _, _, _, _, span_id, _ in events:  # spans the handler chose not to create
                self.clock.starts.pop(span_id, None)
                self.clock.ends.pop(span_id, None)
            if token is not None:
                otel_context.detach(token)


def _set_completion_start(handler: TierflowCallbackHandler, run_id: UUID, at_ns: int) -> None:
    generation = handler._runs.get(run_id)  # the SDK stamps the first token with "now"
    if generation is not None:
        generation.update(completion_start_time=datetime.fromtimestamp(at_ns / 1e9, tz=UTC))


@dataclass
class _Trace:
    """One root run being recorded: its trace id and sampling flag, the context it started in, its events."""

    trace_id: int
    flags: TraceFlags
    parent: otel_context.Context
    events: list[Event] = field(default_factory=list)


class DeferredHandler(BaseCallbackHandler):
    """The callback for one traced run: records events now, replays them into ``inner`` when the run ends.

    ``trace_ids`` are known as soon as a run starts (the replayed trace uses them), so a caller can
    score or link a trace before its spans are built.
    """

    run_inline = True  # recording is cheap and thread-safe; inline keeps the context attach in the run's context
    raise_error = False

    def __init__(self, inner: TierflowCallbackHandler, replayer: Replayer, trace_context: Any = None,
                 sampler: Sampler | None = None) -> None:
        self.inner = inner
        self.replayer = replayer
        self.sampler = sampler  # the provider's: traceparent says "sampled" only for traces that are exported
        self.trace_ids: list[str] = []
        self._fixed_trace_id = int(trace_context["trace_id"], 16) if trace_context else 0
        self._traces: dict[UUID, _Trace] = {}  # root run id -> what is recorded so far
        self._root_of: dict[UUID, UUID] = {}  # run id -> its root run id
        self._span_ids: dict[UUID, int] = {}  # run id -> the span id its replayed span gets
        self._tokens: dict[UUID, object] = {}
        self._lock = threading.Lock()

    def _trace_flags(self, trace_id: int) -> TraceFlags:
        if self.sampler is None:
            return TraceFlags(TraceFlags.SAMPLED)
        decision = self.sampler.should_sample(None, trace_id, "tierflow.run").decision
        return TraceFlags(TraceFlags.SAMPLED if decision.is_sampled() else TraceFlags.DEFAULT)

    def _start(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        at = time.time_ns()
        run_id, parent_run_id = kwargs["run_id"], kwargs.get("parent_run_id")
        span_id = self.replayer.clock.generate_span_id()
        with self._lock:
            root = self._root_of.get(parent_run_id) if parent_run_id is not None else None
            if root is None:  # a new trace, or a run whose parent this handler never saw
                root = run_id
                current = trace.get_current_span().get_span_context()
                trace_id = self._fixed_trace_id or (current.trace_id if current.is_valid else 0)
                trace_id = trace_id or self.replayer.clock.generate_trace_id()
                self._traces[root] = _Trace(trace_id, self._trace_flags(trace_id), otel_context.get_current())
                self.trace_ids.append(f"{trace_id:032x}")
            recorded = self._traces[root]
            self._root_of[run_id] = root
            self._span_ids[run_id] = span_id
            recorded.events.append((name, args, kwargs, at, span_id, recorded.trace_id))
        # what HTTP calls inside this run propagate; the replayed span gets exactly these ids
        span = NonRecordingSpan(SpanContext(recorded.trace_id, span_id, is_remote=False, trace_flags=recorded.flags))
        self._tokens[run_id] = otel_context.attach(trace.set_span_in_context(span))

    def _end(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        at = time.time_ns()
        run_id = kwargs["run_id"]
        token = self._tokens.pop(run_id, None)
        if token is not None:
            try:
                otel_context.detach(token)  # type: ignore[arg-type]
            except Exception:  # ended in another context (async); the run's own context is unaffected
                pass
        with self._lock:
            root = self._root_of.pop(run_id, None)
            span_id = self._span_ids.pop(run_id, 0)
            if root is None:
                return
            recorded = self._traces[root]
            recorded.events.append((name, args, kwargs, at, span_id, 0))
            if run_id != root:
                return
            del self._traces[root]
        self.replayer.submit(self.inner, recorded.events, recorded.parent)

    def _other(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        with self._lock:
            root = self._root_of.get(kwargs["run_id"])
            if root is not None:
                self._traces[root].events.append((name, args, kwargs, time.time_ns(), 0, 0))


def _recorder(name: str, kind: Callable[[DeferredHandler, str, tuple[Any, ...], dict[str, Any]], None]) -> Any:
    def record(self: DeferredHandler, *args: Any, **kwargs: Any) -> None:
        kind(self, name, args, kwargs)

    record.__name__ = name
    return record


for _name in START_EVENTS:
    setattr(DeferredHandler, _name, _recorder(_name, DeferredHandler._start))
for _name in END_EVENTS:
    setattr(DeferredHandler, _name, _recorder(_name, DeferredHandler._end))
for _name in OTHER_EVENTS:
    setattr(DeferredHandler, _name, _recorder(_name, DeferredHandler._other))
