"""Spans as JSON lines on disk, for offline review with ``tierflow traces show RUN_ID``.

Each line is one finished span: ids, parent, name, observation type, timings, the trace's session
(= run id), user and tags, and Langfuse's observation attributes (already masked by the SDK).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import format_span_id, format_trace_id

from tierflow.runtimes.errors import TierflowError
from tierflow.tracing.masking import Masker

_PREFIX = "langfuse.observation."
_JSON_ATTRIBUTES = {"usage_details", "cost_details", "model.parameters", "input", "output"}


class TraceFileError(TierflowError, ValueError):
    """A trace file that cannot be written or read; the message names the file."""


class JsonlSpanExporter(SpanExporter):
    """Appends every exported span to ``path`` as one JSON object per line (thread-safe)."""

    def __init__(self, path: Path, masker: Masker | None = None, max_chars: int = 4000) -> None:
        self.path = Path(path)
        self.masker = masker
        self.max_chars = max_chars
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise TraceFileError(f"trace file {self.path} cannot be opened for writing: {exc}") from exc
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = [json.dumps(self.record(span), default=str, ensure_ascii=False) + "\n" for span in spans]
        with self._lock:
            if self._file.closed:
                return SpanExportResult.FAILURE
            self._file.writelines(lines)
            self._file.flush()
        return SpanExportResult.SUCCESS

    def record(self, span: ReadableSpan) -> dict[str, Any]:
        """The JSON object written for ``span``."""
        attrs = dict(span.attributes or {})
        ctx = span.get_span_context()
        parent = span.parent
        observation: dict[str, Any] = {}
        metadata: dict[str, Any] = {}
        for key, value in attrs.items():
            if key.startswith(_PREFIX + "metadata."):
                metadata[key[len(_PREFIX + "metadata."):]] = _loads(value)
            elif key.startswith(_PREFIX) and key != _PREFIX + "type":
                name = key[len(_PREFIX):]
                observation[name] = _loads(value) if name in _JSON_ATTRIBUTES else value
        for name in ("input", "output"):
            if name in observation:
                text = observation[name] if isinstance(observation[name], str) else json.dumps(observation[name],
                                                                                               default=str)
                if len(text) > self.max_chars:
                    observation[name] = text[: self.max_chars] + f"… [{len(text) - self.max_chars} more]"
        start, end = span.start_time or 0, span.end_time or span.start_time or 0
        record = {
            "trace_id": format_trace_id(ctx.trace_id),
            "span_id": format_span_id(ctx.span_id),
            "parent_id": format_span_id(parent.span_id) if parent is not None else None,
            "name": span.name,
            "type": attrs.get(_PREFIX + "type", "span"),
            "start_ns": start,
            "duration_ms": round((end - start) / 1e6, 3),
            "status": span.status.status_code.name,
            "session_id": attrs.get("session.id"),
            "user_id": attrs.get("user.id"),
            "tags": list(attrs.get("langfuse.trace.tags") or []),
            "metadata": metadata,
            **observation,
        }
        if self.masker is not None:  # spans from outside Langfuse's SDK were not masked by it
            record = self.masker(data=record)
        return record

    def shutdown(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _loads(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def read_spans(path: Path) -> Iterator[dict[str, Any]]:
    """Every span record in a trace file; a missing file or a corrupt line raises TraceFileError."""
    path = Path(path)
    if not path.is_file():
        raise TraceFileError(f"trace file {path} does not exist (run with --trace-file {path} first)")
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise TraceFileError(f"trace file {path} line {number} is not JSON: {exc}") from exc
            if not isinstance(record, dict) or "span_id" not in record:
                raise TraceFileError(f"trace file {path} line {number} is not a span record")
            yield record
