"""A scripted OpenAI-compatible model server on loopback with a fixed latency (tests and benchmarks only).

It answers after ``latency_ms`` with a reply chosen from the request, so the whole orchestrator runs against it:
a ``plan`` call gets a three-subtask parallel plan (``a`` calls the ``record`` tool, ``b`` answers, ``c`` needs
both), an ``action`` call gets a ``record`` tool call until the tool has answered and then a finish, any other
call gets text. Requests are tagged by the ``[tag]`` in the run's request, so calls are counted per run. The
server counts calls in flight (``/stats``: the most at once) and logs every call (``log`` JSON lines).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TAG = re.compile(r"\[([A-Za-z0-9_-]+)\]")
TASK = re.compile(r"Your task: (.+)")


def plan_for(tag: str) -> dict[str, Any]:
    """The plan every run gets: a and b in parallel (a with the record tool), c after both."""
    return {"pattern": "parallel", "subtasks": [
        {"id": "a", "goal": f"record [{tag}] part a", "role": "researcher", "tools": ["record"], "depends_on": []},
        {"id": "b", "goal": f"describe [{tag}] part b", "role": "writer", "tools": [], "depends_on": []},
        {"id": "c", "goal": f"combine [{tag}] part c", "role": "writer", "tools": [], "depends_on": ["a", "b"]}]}


class ScriptedModelServer:
    """``with ScriptedModelServer(latency_ms=200) as server: server.base_url`` — stopped on exit."""

    def __init__(self, latency_ms: float = 200.0, log: Path | None = None, port: int = 0) -> None:
        self.latency_s = latency_ms / 1000
        self.log = log
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def _send(self, payload: dict[str, Any]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path.endswith("/models"):
                    self._send({"object": "list", "data": [{"id": "scripted", "object": "model"}]})
                else:
                    self._send(outer.stats())

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.path.endswith("/reset"):
                    outer.reset()
                    self._send(outer.stats())
                    return
                self._send(outer.complete(body))

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> ScriptedModelServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def stats(self) -> dict[str, int]:
        with self.lock:
            return {"requests": self.requests, "in_flight": self.in_flight, "max_in_flight": self.max_in_flight}

    def reset(self) -> None:
        with self.lock:
            self.requests = self.max_in_flight = 0

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """Wait the latency, then answer by script; counts the call in flight meanwhile."""
        started = time.time()
        with self.lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.latency_s)
            kind, text, tag, task = self.reply(body)
        finally:
            with self.lock:
                self.in_flight -= 1
        if self.log is not None:
            with self.lock, self.log.open("a") as sink:
                digest = hashlib.sha256(json.dumps(body.get("messages"), sort_keys=True).encode()).hexdigest()[:16]
                sink.write(json.dumps({"tag": tag, "kind": kind, "task": task, "digest": digest, "start": started,
                                       "end": time.time()}) + "\n")
        return {"id": "scripted", "object": "chat.completion", "created": int(started), "model": "scripted",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}

    @staticmethod
    def reply(body: dict[str, Any]) -> tuple[str, str, str, str]:
        """(kind, reply text, run tag, task) for one chat request."""
        prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        found = TAG.search(prompt)
        tag = found.group(1) if found else "-"
        task_match = TASK.search(prompt)
        task = task_match.group(1).strip() if task_match else ""
        fmt = body.get("response_format") or {}
        name = (fmt.get("json_schema") or {}).get("name") if isinstance(fmt, dict) else None
        if name == "plan":
            return "plan", json.dumps(plan_for(tag)), tag, ""
        if name == "action":
            if "Tool record returned" in prompt:
                return "action", json.dumps({"action": "finish", "answer": f"recorded {task}"}), tag, task
            return "action", json.dumps({"action": "call_tool", "tool": "record", "args": {"note": task}}), tag, task
        if task:
            return "text", f"done: {task}", tag, task
        return "synthesis", f"final answer for [{tag}]", tag, ""
