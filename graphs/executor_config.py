"""Settings of the executor seam and the run spec workers receive: plain data, cheap to import (settings does)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tierflow.graphs.requests import RequestError

ExecutorKind = Literal["inprocess", "dbos"]
_URL = re.compile(r"^(sqlite:///.+|postgres(ql)?://.+)$")


class ExecutorConfig(BaseModel):
    """Settings ``[executor]``: where runs execute and, for DBOS, the database every worker shares."""

    model_config = ConfigDict(extra="forbid")

    kind: ExecutorKind = "inprocess"
    database_url: str | None = Field(None, description="DBOS system database: sqlite:///PATH (one host) or "
                                                       "postgresql://... (many); default sqlite under home")
    concurrency: int = Field(1, ge=1, le=256, description="runs (or eval units) each worker executes at once; "
                                                          "DBOS keeps it on the queue, so all workers share it")
    poll_s: float = Field(0.2, gt=0, le=10, description="how often workers look at their queues (each poll is a "
                                                       "few queries per queue; lower it for latency)")
    heartbeat_s: float = Field(2.0, gt=0, description="how often each worker says it is alive")
    dead_after_s: float = Field(20.0, gt=0, description="a worker silent this long is dead: its runs are "
                                                        "recovered by a live worker (and it stops if it wakes)")

    def url(self, home: Path) -> str:
        """The system database URL: ``database_url``, or a SQLite file in ``home`` for one host."""
        url = self.database_url or f"sqlite:///{home / 'dbos.sqlite'}"
        if not _URL.match(url):
            raise RequestError(f"executor database_url {url!r} is not sqlite:///PATH or postgresql://...")
        return url


class RunSpec(BaseModel):
    """A run as any worker receives it: enough to rebuild its graph and start, continue or answer it."""

    run_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    request: str | None = Field(None, description="the request of a new run; None when resuming")
    user_id: str = "local"
    private: bool = False
    graph: str | None = Field(None, description="package.module:function of a custom graph")
    pattern: str | None = None
    tier: str | None = Field(None, description="tier every agent prefers (--tier)")
    confirm_plan: bool = False
    answer: str | None = Field(None, description="the human's answer to a waiting run")
