"""Langfuse SDK setup for tierflow runs: one tracer per process, one callback handler per run.

The SDK (v5, OpenTelemetry based) gets a private TracerProvider, so tierflow never replaces an
application's global one; Langfuse export and the JSON-lines trace file are span processors on it.
Flushing and shutdown are bounded: a receiver that is down or slow costs at most ``flush_timeout_s``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from langfuse import Langfuse
from langfuse._client.resource_manager import LangfuseResourceManager
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

from tierflow.tracing.config import ResolvedTracing, TracingSettings, resolve
from tierflow.tracing.deferred import DeferredHandler, ReplayClock, Replayer
from tierflow.tracing.handler import TierflowCallbackHandler
from tierflow.tracing.masking import Masker
from tierflow.tracing.trace_file import JsonlSpanExporter

log = logging.getLogger("tierflow.tracing")
# Only for the SDK's object model when no Langfuse is configured (trace file only); nothing is sent there.
_LOCAL_BASE_URL = "http://127.0.0.1:9"


class Tracing:
    """Tracing for this process: ``handler()`` per run, ``score()`` for eval results, ``close()`` at the end."""

    def __init__(self, config: ResolvedTracing) -> None:
        if not config.active:
            raise ValueError("tracing is not configured (no Langfuse keys and no trace file)")
        self.config = config
        self.masker = Masker(config.mask)
        mask = self.masker if config.mask.enabled else None
        attributes = {"service.name": "tierflow", "langfuse.release": config.release,
                      "service.version": config.release, "langfuse.environment": config.environment}
        self.provider = TracerProvider(
            resource=Resource.create({k: v for k, v in attributes.items() if v}),
            sampler=TraceIdRatioBased(config.sample_rate) if config.sample_rate < 1 else None,
            id_generator=(clock := ReplayClock()), shutdown_on_exit=False)
        self.provider.add_span_processor(clock)  # first: replayed spans get their recorded times before export
        self.replayer = Replayer(clock)
        self.trace_file = JsonlSpanExporter(config.trace_file) if config.trace_file else None
        common: dict[str, Any] = {"release": config.release, "environment": config.environment,
                                  "timeout": config.export_timeout_s, "tracer_provider": self.provider,
                                  "mask": mask, "flush_interval": 1.0}
        if config.langfuse:
            assert config.public_key and config.secret_key
            self.public_key = config.public_key
            if self.trace_file is not None:
                self.provider.add_span_processor(BatchSpanProcessor(self.trace_file, schedule_delay_millis=500))
            self.client = Langfuse(public_key=config.public_key, secret_key=config.secret_key.get_secret_value(),
                                   base_url=config.base_url, otel_compression=config.compression, **common)
        else:  # trace file only: the SDK's processor writes to the file instead of a server
            self.public_key = f"tierflow-local-{uuid.uuid4().hex}"
            self.client = Langfuse(public_key=self.public_key, secret_key="unused", base_url=_LOCAL_BASE_URL,
                                   span_exporter=self.trace_file, **common)
        self._closed = False

    def handler(self, *, tags: Iterable[str] = (), costs: Mapping[str, tuple[float, float]] | None = None,
                trace_context: Any = None) -> DeferredHandler | TierflowCallbackHandler:
        """A LangChain callback handler for one run; session and user come from the run's config metadata.

        Both kinds expose ``trace_ids``; the deferred one (the default) builds the spans after the run.
        """
        inner = TierflowCallbackHandler(public_key=self.public_key, tags=tags, release=self.config.release,
                                        costs=costs, node_types=self.config.node_types,
                                        trace_context=trace_context,
                                        masker=self.masker if self.config.mask.enabled else None)
        if not self.config.defer:
            return inner
        return DeferredHandler(inner, self.replayer, trace_context, self.provider.sampler)

    def score(self, trace_id: str, name: str, value: float | bool | str, *, comment: str | None = None,
              observation_id: str | None = None, metadata: Mapping[str, Any] | None = None) -> None:
        """Send one eval result as a Langfuse score on its trace (numeric, boolean or categorical)."""
        if not isinstance(trace_id, str) or len(trace_id) != 32:
            raise ValueError(f"trace_id must be the 32-hex-digit Langfuse trace id, got {trace_id!r}")
        if not name:
            raise ValueError("a score needs a name")
        kwargs: dict[str, Any] = {"name": name, "trace_id": trace_id, "comment": comment,
                                  "observation_id": observation_id, "metadata": dict(metadata or {}) or None}
        if isinstance(value, bool):
            kwargs.update(value=1.0 if value else 0.0, data_type="BOOLEAN")
        elif isinstance(value, int | float):
            kwargs.update(value=float(value), data_type="NUMERIC")
        elif isinstance(value, str):
            kwargs.update(value=value, data_type="CATEGORICAL")
        else:
            raise ValueError(f"score {name!r}: value must be a number, bool or string, got {type(value).__name__}")
        if self.config.langfuse:
            self.client.create_score(**kwargs)

    def flush(self, timeout_s: float | None = None) -> bool:
        """Export what is pending within ``timeout_s`` (default flush_timeout_s); False if it did not finish."""
        timeout = self.config.flush_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        built = self.replayer.drain(timeout)
        return _bounded(self.client.flush, max(0.0, deadline - time.monotonic())) and built

    def close(self, timeout_s: float | None = None) -> bool:
        """Flush and stop within ``timeout_s``; never raises, never waits longer."""
        if self._closed:
            return True
        self._closed = True
        timeout = self.config.flush_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        built = self.replayer.drain(timeout)
        self.replayer.stop()

        def stop() -> None:
            self.provider.force_flush(int(timeout * 1000))
            self.client.shutdown()
            self.provider.shutdown()

        done = _bounded(stop, max(0.0, deadline - time.monotonic())) and built
        # The SDK keeps one resource manager per public key; drop ours so a later Tracing with the same
        # key gets fresh exporters instead of this closed one.
        with LangfuseResourceManager._lock:
            LangfuseResourceManager._instances.pop(self.public_key, None)
        if not done:
            log.warning("tracing: export did not finish within %.1f s; the rest of this trace is dropped", timeout)
        if self.trace_file is not None:
            _bounded(self.trace_file.shutdown, max(0.1, deadline - time.monotonic()))
        return done

    def __enter__(self) -> Tracing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _bounded(fn: Callable[[], object], timeout_s: float) -> bool:
    """Run ``fn`` in a daemon thread and wait at most ``timeout_s``; True if it finished without error."""
    outcome: list[bool] = []

    def target() -> None:
        try:
            fn()
            outcome.append(True)
        except Exception as exc:  # an exporter failure must not reach the run
            log.warning("tracing: %s failed: %s", getattr(fn, "__name__", "flush"), exc)
            outcome.append(False)

    worker = threading.Thread(target=target, name="tierflow-tracing-flush", daemon=True)
    worker.start()
    worker.join(max(0.0, timeout_s))
    return bool(outcome and outcome[0])


def open_tracing(settings: TracingSettings | Mapping[str, object] | None = None,
                 env: Mapping[str, str] | None = None, *, trace_file: Path | None = None,
                 release: str | None = None) -> Tracing | None:
    """Tracing as configured, or None when it is off (the default). Malformed config raises TracingConfigError."""
    config = resolve(settings, env, trace_file=trace_file, release=release)
    return Tracing(config) if config.active else None
