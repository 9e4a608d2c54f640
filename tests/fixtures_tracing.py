"""A local stand-in for Langfuse's ingestion endpoints, and a loopback proxy that records request headers.

``OtlpReceiver`` accepts the real SDK's OTLP/HTTP export (protobuf ``ExportTraceServiceRequest``,
gzip or not) on /api/public/otel/v1/traces and score batches (JSON) on /api/public/scores, decodes
them and keeps them for assertions. It can answer slowly to test bounded flushing. Dataset and dataset
item creations (JSON on /api/public/v2/datasets and /api/public/dataset-items) are recorded and answered
with the object Langfuse would return, so eval experiments can link their traces to dataset items.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

TRACES_PATH = "/api/public/otel/v1/traces"
SCORES_PATH = "/api/public/scores"
DATASETS_PATH = "/api/public/v2/datasets"
DATASET_ITEMS_PATH = "/api/public/dataset-items"
JSON_PATHS = (SCORES_PATH, DATASETS_PATH, DATASET_ITEMS_PATH)


def any_value(value: AnyValue) -> Any:
    """Plain Python value of an OTLP ``AnyValue``."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


@dataclass
class ReceivedSpan:
    """One decoded span of an export request."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    start_ns: int
    end_ns: int

    @property
    def type(self) -> str | None:
        return self.attributes.get("langfuse.observation.type")

    def metadata(self, key: str) -> Any:
        raw = self.attributes.get(f"langfuse.observation.metadata.{key}")
        try:
            return json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            return raw


@dataclass
class OtlpReceiver:
    """What was received so far; ``delay_s`` makes every answer that slow."""

    base_url: str = ""
    public_key: str = field(default_factory=lambda: f"pk-lf-test-{uuid.uuid4().hex[:12]}")
    secret_key: str = "sk-lf-test-secret"
    delay_s: float = 0.0
    spans: list[ReceivedSpan] = field(default_factory=list)
    scores: list[dict[str, Any]] = field(default_factory=list)
    datasets: list[dict[str, Any]] = field(default_factory=list)
    dataset_items: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def env(self, **extra: str) -> dict[str, str]:
        """``LANGFUSE_*`` variables pointing the SDK at this receiver."""
        return {"LANGFUSE_PUBLIC_KEY": self.public_key, "LANGFUSE_SECRET_KEY": self.secret_key,
                "LANGFUSE_BASE_URL": self.base_url, **extra}

    def settings(self, **extra: Any) -> dict[str, Any]:
        """A ``[tracing]`` settings block pointing at this receiver."""
        return {"public_key": self.public_key, "secret_key": self.secret_key, "base_url": self.base_url,
                "flush_timeout_s": 10, **extra}

    def wait_for(self, predicate: Any, timeout_s: float = 10.0) -> list[ReceivedSpan]:
        """Spans received once ``predicate(spans)`` holds (exports are asynchronous)."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self.lock:
                spans = list(self.spans)
            if predicate(spans) or time.monotonic() > deadline:
                return spans
            time.sleep(0.05)

    def record(self, body: bytes, headers: dict[str, str], path: str) -> dict[str, Any] | None:
        """Keep one request; for dataset requests, return the object Langfuse answers with."""
        with self.lock:
            self.requests.append({"path": path, "headers": headers, "bytes": len(body)})
            if path == SCORES_PATH:
                payload = json.loads(body)
                self.scores.extend(payload if isinstance(payload, list) else [payload])
                return None
            if path in (DATASETS_PATH, DATASET_ITEMS_PATH):
                return self._dataset_reply(path, json.loads(body))
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource_spans in request.resource_spans:
                resource = {kv.key: any_value(kv.value) for kv in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append(ReceivedSpan(
                            trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex() or None, name=span.name,
                            attributes={kv.key: any_value(kv.value) for kv in span.attributes},
                            resource=resource, start_ns=span.start_time_unix_nano, end_ns=span.end_time_unix_nano))


    def _dataset_reply(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        if path == DATASETS_PATH:
            self.datasets.append(payload)
            return {"id": f"ds-{payload['name']}", "name": payload["name"], "description": payload.get("description"),
                    "metadata": payload.get("metadata"), "projectId": "test-project", "createdAt": now,
                    "updatedAt": now}
        self.dataset_items.append(payload)
        return {"id": payload.get("id") or uuid.uuid4().hex, "status": payload.get("status") or "ACTIVE",
                "input": payload.get("input"), "expectedOutput": payload.get("expectedOutput"),
                "metadata": payload.get("metadata"), "datasetId": f"ds-{payload['datasetName']}",
                "datasetName": payload["datasetName"], "createdAt": now, "updatedAt": now, "mediaReferences": []}


def _handler(receiver: OtlpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if receiver.delay_s:
                time.sleep(receiver.delay_s)
            if self.headers.get("Content-Encoding", "").lower() == "gzip":
                body = gzip.decompress(body)
            path = self.path.split("?")[0]
            if path not in (TRACES_PATH, *JSON_PATHS):
                self.send_error(404)
                return
            try:
                answer = receiver.record(body, {k.lower(): v for k, v in self.headers.items()}, path)
            except Exception as exc:  # a malformed payload is the SDK's bug: answer 400 so the test sees it
                self.send_error(400, str(exc))
                return
            if answer is not None:
                reply, kind, status = json.dumps(answer).encode(), "application/json", 200
            elif path == SCORES_PATH:
                reply, kind, status = json.dumps({"message": "Accepted"}).encode(), "application/json", 202
            else:
                reply, kind, status = ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf", 200
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


class _Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """A fresh receiver on a random loopback port (unique Langfuse keys per test)."""
    receiver = OtlpReceiver()
    server = _Server(_handler(receiver))
    receiver.base_url = server.url
    try:
        yield receiver
    finally:
        server.stop()


@dataclass
class HeaderProxy:
    """Forwards every request to ``target`` and remembers the headers it saw."""

    target: str
    url: str = ""
    seen: list[dict[str, str]] = field(default_factory=list)


def _proxy_handler(proxy: HeaderProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            proxy.seen.append({k.lower(): v for k, v in self.headers.items()} | {":path": self.path})
            reply = httpx.request(self.command, proxy.target + self.path, content=body, headers=headers, timeout=120)
            self.send_response(reply.status_code)
            for key, value in reply.headers.items():
                if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(reply.content)))
            self.end_headers()
            self.wfile.write(reply.content)

        do_GET = do_POST = _forward

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def header_proxy(target: str) -> tuple[HeaderProxy, _Server]:
    """A started proxy in front of ``target`` (scheme://host:port); stop the server when done."""
    proxy = HeaderProxy(target=target.rstrip("/"))
    server = _Server(_proxy_handler(proxy))
    proxy.url = server.url
    return proxy, server
