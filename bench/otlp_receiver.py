"""A span-counting stand-in for Langfuse's OTLP endpoint, run in its own process by the benchmarks.

Benchmarks only need the export to land somewhere that answers like Langfuse and to count what arrived, so this
is not the tests' decoding receiver (tests/fixtures_tracing.py), which benchmarks must not import.

    python bench/otlp_receiver.py   # prints a [tracing] settings block as JSON, then the span count per stdin line
"""

from __future__ import annotations

import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

TRACES_PATH = "/api/public/otel/v1/traces"


class SpanCounter(BaseHTTPRequestHandler):
    """Accepts the Langfuse SDK's OTLP/HTTP export (protobuf, gzip or not) and counts its spans."""

    spans: ClassVar[int] = 0
    lock: ClassVar[threading.Lock] = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.split("?")[0] != TRACES_PATH:
            self.send_error(404)
            return
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest.FromString(body)
        with SpanCounter.lock:
            SpanCounter.spans += sum(len(scope.spans) for res in export.resource_spans for scope in res.scope_spans)
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: Any) -> None:
        pass


def main() -> None:
    """Serve on a free 127.0.0.1 port until stdin closes, answering each stdin line with the spans received."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), SpanCounter)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings = {"public_key": "pk-lf-bench", "secret_key": "sk-lf-bench", "flush_timeout_s": 30,
                "base_url": f"http://127.0.0.1:{server.server_address[1]}"}
    print(json.dumps(settings), flush=True)
    for _ in sys.stdin:
        with SpanCounter.lock:
            print(SpanCounter.spans, flush=True)
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
