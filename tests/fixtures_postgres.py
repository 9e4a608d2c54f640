"""A real PostgreSQL 15 server for the durable-run tests: private data folder, free 127.0.0.1 port.

PostgreSQL refuses to run as root, so under root (CI) the server runs as the ``postgres`` system user
(or ``nobody``) in a folder that user owns. Installed by infra/setup.d/20-postgres.sh.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.paths import missing_server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bin_dir() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(Path(candidate) / "initdb", os.X_OK):
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def _run_as() -> list[str]:
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        return ["runuser", "-u", user, "--"]
    raise RuntimeError("running as root and there is no postgres or nobody user to run PostgreSQL as")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """``postgresql://tierflow@127.0.0.1:PORT/postgres`` of a server started for this test session."""
    bindir = _bin_dir()
    if bindir is None:
        missing_server("PostgreSQL is not installed (run infra/setup.sh)")
    prefix = _run_as()
    data = Path(tempfile.mkdtemp(prefix="tierflow-pg-"))
    if prefix:
        user = pwd.getpwnam(prefix[2])
        os.chown(data, user.pw_uid, user.pw_gid)
    port = _free_port()
    log = data / "server.log"
    cluster = data / "cluster"
    subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(cluster), "-U", "tierflow", "--auth=trust",
                    "-E", "UTF8", "--no-sync"], check=True, capture_output=True, timeout=120)
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=20"
    started = subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(cluster), "-o", options, "-l", str(log),
                              "-w", "-t", "60", "start"], capture_output=True, text=True, timeout=90)
    if started.returncode != 0:
        detail = log.read_text()[-2000:] if log.exists() else started.stderr
        shutil.rmtree(data, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {detail}")
    try:
        yield f"postgresql://tierflow@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(cluster), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(data, ignore_errors=True)
