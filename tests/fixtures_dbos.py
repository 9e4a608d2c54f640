"""A private PostgreSQL 15 cluster for the scale-out tests, and worker processes started against it.

The suite's shared server (fixtures_postgres) allows 20 connections; several DBOS workers need more, so these
tests start their own cluster (same binaries, free 127.0.0.1 port, throwaway folder, ``max_connections=200``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.paths import REPO, missing_server


@contextmanager
def private_postgres(max_connections: int = 200) -> Iterator[str]:
    """Start a throwaway PostgreSQL cluster; yields ``postgresql://tierflow@127.0.0.1:PORT`` (DBOS makes databases)."""
    from tests.fixtures_postgres import _bin_dir, _free_port, _run_as  # a plugin too: imported once it is loaded

    bindir = _bin_dir()
    if bindir is None:
        missing_server("PostgreSQL is not installed (run infra/setup.sh)")
    prefix = _run_as()
    data = Path(tempfile.mkdtemp(prefix="tierflow-dbos-pg-"))
    if prefix:
        user = pwd.getpwnam(prefix[2])
        os.chown(data, user.pw_uid, user.pw_gid)
    port = _free_port()
    cluster = data / "cluster"
    subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(cluster), "-U", "tierflow", "--auth=trust", "-E",
                    "UTF8", "--no-sync"], check=True, capture_output=True, timeout=120)
    options = (f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
               f"-c max_connections={max_connections}")
    started = subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(cluster), "-o", options, "-l",
                              str(data / "server.log"), "-w", "-t", "60", "start"], capture_output=True, text=True,
                             timeout=90)
    if started.returncode != 0:
        shutil.rmtree(data, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {started.stderr}")
    try:
        yield f"postgresql://tierflow@127.0.0.1:{port}"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(cluster), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def dbos_postgres() -> Iterator[str]:
    """A private cluster for one test module (see :func:`private_postgres`)."""
    with private_postgres() as url:
        yield url


class Workers:
    """``tierflow worker`` processes on one settings file; stopped (SIGTERM, then SIGKILL) at the end."""

    def __init__(self, config: Path, home: Path, env: dict[str, str]) -> None:
        self.config, self.home, self.env = config, home, env
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, *worker_ids: str, concurrency: int = 2, queues: str | None = None, timeout_s: float = 240) -> None:
        """Start the workers and wait until each has launched DBOS and registered its queues."""
        for worker_id in worker_ids:
            log = (self.home / f"{worker_id}.log").open("w")
            self.procs[worker_id] = subprocess.Popen(
                [sys.executable, "-m", "tierflow.cli", "worker", "--config", str(self.config), "--worker-id",
                 worker_id, "--concurrency", str(concurrency), *(["--queues", queues] if queues else [])],
                cwd=REPO, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout_s
        for worker_id in worker_ids:
            while f"worker {worker_id} on" not in self.log(worker_id):
                assert self.procs[worker_id].poll() is None, self.log(worker_id)[-3000:]
                assert time.monotonic() < deadline, f"worker {worker_id} did not start: {self.log(worker_id)}"
                time.sleep(0.2)

    def log(self, worker_id: str) -> str:
        path = self.home / f"{worker_id}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, worker_id: str) -> None:
        """``kill -9``: no goodbye, no cleanup; the others must notice."""
        self.procs[worker_id].send_signal(signal.SIGKILL)
        self.procs[worker_id].wait()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def worker_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a test's worker: no TIERFLOW_* from the test session (its settings file rules)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERFLOW_")}
    return {**env, "TIERFLOW_HOME": str(home), "PYTHONPATH": str(REPO), **extra}
