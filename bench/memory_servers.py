"""Neo4j 5.26 (Bolt on 127.0.0.1) and Weaviate (in a private network namespace) started on free ports.

They run what infra/setup.d/40-neo4j.sh and 50-weaviate.sh installed under ~/.cache/tierflow, with throwaway data
folders; a server that is not installed raises :class:`ServerMissing`, naming the script that installs it.

Why here: bench/memory.py and the memory tests both start these servers, and benchmarks must not import test code.
This module has no pytest in it; tests/fixtures_memory.py wraps it in fixtures (a missing server skips a test, or
fails it in CI). It is the one copy of this start-up knowledge: change it here, not in a fixture.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

CACHE = Path(os.environ.get("TIERFLOW_CACHE", Path.home() / ".cache" / "tierflow"))
NEO4J_VERSION = "5.26.30"
WEAVIATE_VERSION = "v1.38.8"
NEO4J_LIB = CACHE / "neo4j" / NEO4J_VERSION / "lib"
WEAVIATE_BIN = CACHE / "weaviate" / WEAVIATE_VERSION / "weaviate-server"
REPO = Path(__file__).resolve().parent.parent


class ServerMissing(RuntimeError):
    """A server is not installed here, or cannot run here; the message says why and how to install it."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen[bytes], group: bool = False) -> None:
    """SIGTERM the process (its whole process group with ``group``), then SIGKILL it after 30 s."""
    if proc.poll() is None:
        if group:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL) if group else proc.kill()
            proc.wait(timeout=10)


@dataclass
class Neo4jServer:
    """A running Neo4j; ``kill()`` stops it hard (SIGKILL) and ``start()`` brings it back on the same data."""

    home: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"bolt://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 240) -> None:
        """Start the JVM and wait until Bolt answers."""
        from neo4j import GraphDatabase
        from neo4j.exceptions import DriverError

        log = (self.home / "console.log").open("ab")
        self.proc = subprocess.Popen(
            ["java", "-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp",
             f"{NEO4J_LIB}/*", "org.neo4j.server.CommunityEntryPoint", f"--home-dir={self.home}",
             f"--config-dir={self.home / 'conf'}"], stdout=log, stderr=subprocess.STDOUT, cwd=self.home)
        log.close()  # the child keeps its own descriptor
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Neo4j exited: {(self.home / 'console.log').read_text()[-2000:]}")
            try:
                with GraphDatabase.driver(self.url, auth=None, connection_timeout=2) as driver:
                    driver.verify_connectivity()
                return
            except (DriverError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Neo4j did not start in {timeout_s:.0f} s") from None
                time.sleep(1)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


def start_neo4j(home: Path) -> Neo4jServer:
    """Neo4j with auth and HTTP off and Bolt on a free 127.0.0.1 port; data under ``home``."""
    if not (NEO4J_LIB.is_dir() and any(NEO4J_LIB.glob("neo4j-server-*.jar"))) or not shutil.which("java"):
        raise ServerMissing(f"Neo4j {NEO4J_VERSION} is not installed in {NEO4J_LIB} (run infra/setup.d/40-neo4j.sh)")
    (home / "conf").mkdir(parents=True, exist_ok=True)
    server = Neo4jServer(home, free_port())
    (home / "conf" / "neo4j.conf").write_text("\n".join([
        "dbms.security.auth_enabled=false", "server.http.enabled=false", "server.https.enabled=false",
        "server.bolt.enabled=true", f"server.bolt.listen_address=127.0.0.1:{server.port}",
        "server.default_listen_address=127.0.0.1", f"server.directories.data={home / 'data'}",
        f"server.directories.logs={home / 'logs'}", "server.memory.pagecache.size=64m",
        "db.tx_log.rotation.retention_policy=1 files", "dbms.usage_report.enabled=false", ""]))
    server.start()
    return server


@dataclass
class WeaviateServer:
    """A running Weaviate: REST at ``url`` and gRPC on ``grpc_port``, both only on this host's 127.0.0.1."""

    url: str
    grpc_port: int
    proc: subprocess.Popen[bytes]

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        stop_process(self.proc, group=True)


def start_weaviate(data: Path, timeout_s: float = 120) -> WeaviateServer:
    """Weaviate (anonymous access, no modules) inside ``unshare -rn`` behind loopback relays."""
    if not WEAVIATE_BIN.is_file():
        raise ServerMissing(f"Weaviate {WEAVIATE_VERSION} is not installed at {WEAVIATE_BIN} "
                            "(run infra/setup.d/50-weaviate.sh)")
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True)
    if probe.returncode != 0:
        raise ServerMissing(f"cannot create a private network namespace for Weaviate: {probe.stderr.decode().strip()}")
    http_port, grpc_port = free_port(), free_port()
    env = {**os.environ, "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "true", "PERSISTENCE_DATA_PATH": str(data),
           "DEFAULT_VECTORIZER_MODULE": "none", "ENABLE_MODULES": "", "CLUSTER_HOSTNAME": "node1",
           "CLUSTER_ADVERTISE_ADDR": "127.0.0.1", "GRPC_PORT": str(grpc_port), "DISABLE_TELEMETRY": "true",
           "LOG_LEVEL": "warning", "QUERY_DEFAULTS_LIMIT": "25", "GOMAXPROCS": "2", "LIMIT_RESOURCES": "true"}
    log = (data.parent / f"{data.name}.log").open("ab")
    sock_dir = data.parent / f"{data.name}.sockets"
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "infra" / "weaviate" / "netns.py"), "--sock-dir", str(sock_dir),
         f"--port={http_port}", f"--port={grpc_port}", "--", str(WEAVIATE_BIN), "--host", "0.0.0.0",
         "--port", str(http_port), "--scheme", "http"], env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    log.close()
    url = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"Weaviate exited: {(data.parent / f'{data.name}.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/v1/.well-known/ready", timeout=2).status_code == 200:
                return WeaviateServer(url, grpc_port, proc)
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop_process(proc, group=True)
            raise RuntimeError(f"Weaviate did not start in {timeout_s:.0f} s")
        time.sleep(0.5)
