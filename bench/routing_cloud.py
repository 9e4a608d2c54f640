"""The routing benchmark with a remote ``cloud`` tier: Qwen2.5-Coder-1.5B behind llama.cpp's OpenAI-compatible
server on loopback, so the remote path (HTTP, privacy clearance, per-token prices) is part of the curves.

Starts the server on a free loopback port, writes a settings file that declares the ``cloud`` tier (public data only,
priced per token like a hosted API) beside the benchmark's own settings, and runs
``tierflow eval routing --tier tiny --tier mobile --tier edge --tier cloud`` into ``--out``. Rerunning resumes:
tiers already measured there are not run again, so this adds the cloud outcomes to an earlier run.

Usage: python bench/routing_cloud.py [--out evals-out/routing] [--limit N] [--port 0]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
# A declared price, like a small hosted model's per-token rate (USD per 1k tokens); local tiers are priced per
# CPU-second (tierflow.runtimes.config.LOCAL_CPU_SECOND_PRICE).
CLOUD_PRICE = (0.0005, 0.0015)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(port: int, log: Path, timeout_s: float = 180) -> subprocess.Popen[bytes]:
    """llama-cpp-python's server with the shipped Qwen2.5-Coder-1.5B; returns once it answers /v1/models."""
    from tierflow.runtimes.models import model_path

    with log.open("ab") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model",
                                 str(model_path("qwen2.5-coder-1.5b")), "--host", "127.0.0.1", "--port", str(port),
                                 "--n_ctx", "4096", "--n_threads", "2", "--model_alias", "qwen2.5-coder-1.5b"],
                                stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama.cpp server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"llama.cpp server did not answer within {timeout_s} s")


def settings_with_cloud(base_url: str, folder: Path) -> Path:
    """The routing benchmark's settings plus the cloud tier."""
    path = folder / "routing-cloud.toml"
    own = (ROOT / "evals" / "suites" / "routing.toml").read_text(encoding="utf-8")
    path.write_text(own + f'''
[tiers.cloud]
kind = "openai"
base_url = "{base_url}"
model = "qwen2.5-coder-1.5b"
json_mode = "json_object"
max_tokens = 384
n_ctx = 4096
timeout_s = 120
max_retries = 0
strength = 3
cost_per_1k_input = {CLOUD_PRICE[0]}
cost_per_1k_output = {CLOUD_PRICE[1]}
''', encoding="utf-8")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("evals-out/routing"))
    parser.add_argument("--limit", type=int, default=None, help="items of each suite (default: the benchmark's)")
    parser.add_argument("--port", type=int, default=0, help="server port (0: a free one)")
    args = parser.parse_args()
    port = args.port or free_port()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        server = start_server(port, folder / "server.log")
        try:
            config = settings_with_cloud(f"http://127.0.0.1:{port}/v1", folder)
            command = [sys.executable, "-m", "tierflow.cli", "eval", "routing", "--out", str(args.out),
                       "--config", str(config), "--no-progress",
                       *(f"--tier={t}" for t in ("tiny", "mobile", "edge", "cloud")),
                       *(["--limit", str(args.limit)] if args.limit else [])]
            return subprocess.run(command, cwd=ROOT, env={**os.environ, "TIERFLOW_NO_TRACING": "1"}).returncode
        finally:
            server.kill()
            server.wait(10)


if __name__ == "__main__":
    sys.exit(main())
