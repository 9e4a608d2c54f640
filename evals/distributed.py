"""Distributed evals: every (cell, item, repeat) is a DBOS workflow that any ``tierflow worker`` may execute.

``tierflow eval SUITE --executor dbos`` enqueues each unit the results file does not hold yet, under an id made of
the suite's digest and the unit's key, then writes records to ``results.jsonl`` as units finish. Stored results
stay in the database: rerunning (even after the coordinator was killed) attaches to the units already enqueued or
finished instead of running them again. Workers run a unit with :func:`run_unit`.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tierflow.evals.datasets import EvalItem
from tierflow.evals.runner import _run_one, _Writer, read_results, record_key
from tierflow.evals.suite import Cell, Suite
from tierflow.evals.tasks import Task
from tierflow.graphs.dbos_executor import DbosClient

UNIT_JOB = "eval-unit"


def suite_digest(suite: Suite, context: dict[str, Any]) -> str:
    """Identifies a suite as run: its whole spec and the settings around it; a change gets fresh units."""
    text = json.dumps([_spec(suite), context], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _spec(suite: Suite) -> dict[str, Any]:
    """The suite as sent to workers: what was set (kind-specific defaults are left to validation there)."""
    return suite.model_dump(mode="json", exclude_unset=True)


def run_suite_distributed(suite: Suite, items: list[EvalItem], results_path: Path, client: DbosClient,
                          context: dict[str, Any], *, progress: bool = True,
                          poll_s: float = 0.2) -> list[dict[str, Any]]:
    """Like ``run_suite``, with the units executed by workers; ``context`` (settings file, folder, intent model)
    travels to them. Returns every record of this suite's work, in the results file's order."""
    digest = suite_digest(suite, context)
    done = {r["key"]: r for r in read_results(results_path)}
    todo = [(cell, item, rep) for cell in suite.matrix.cells() for item in items for rep in range(suite.repeats)
            if record_key(cell, item.id, rep) not in done]
    pending: dict[str, tuple[str, float]] = {}
    for cell, item, rep in todo:
        key = record_key(cell, item.id, rep)
        workflow_id = f"eval:{suite.name}:{digest}:{key}"
        client.enqueue_job(UNIT_JOB, {"suite": _spec(suite), "context": context,
                                      "cell": cell.model_dump(), "item": item.id, "repeat": rep},
                           workflow_id)
        pending[workflow_id] = (key, time.monotonic())
    writer = _Writer(results_path)
    new: list[dict[str, Any]] = []
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, disable=not progress, transient=False) as bar:
            tracker = bar.add_task(f"{suite.name} (dbos)", total=len(pending))
            while pending:
                for workflow_id, record in _finished(client, pending, suite.timeout_s):
                    pending.pop(workflow_id)
                    writer.write(record)
                    new.append(record)
                    bar.advance(tracker)
                if pending:
                    time.sleep(poll_s)
    finally:
        writer.close()
    wanted = {record_key(c, i.id, r) for c in suite.matrix.cells() for i in items for r in range(suite.repeats)}
    merged = {**done, **{r["key"]: r for r in new}}
    return [merged[k] for k in merged if k in wanted]


def _finished(client: DbosClient, pending: dict[str, tuple[str, float]],
              timeout_s: float) -> list[tuple[str, dict[str, Any]]]:
    """Records of the pending units that ended (a unit failing in the worker, or timing out, is a failed record)."""
    statuses = client.client.list_workflows(workflow_ids=list(pending), load_input=False, load_output=True)
    out = []
    for status in statuses:
        key, started = pending[status.workflow_id]
        if status.status == "SUCCESS":
            out.append((status.workflow_id, status.output))
        elif status.status in ("ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"):
            out.append((status.workflow_id, _failed(key, f"{status.status}: {status.error}")))
        elif status.status == "ENQUEUED":
            pending[status.workflow_id] = (key, time.monotonic())  # waiting for a worker is not running late
        elif time.monotonic() - started > timeout_s:
            client.client.cancel_workflow(status.workflow_id)
            out.append((status.workflow_id, _failed(key, f"timed out after {timeout_s:g} s")))
    return out


def _failed(key: str, error: str) -> dict[str, Any]:
    cell_key, item, repeat = key.rsplit("|", 2)
    tier, pattern = (part.split("=", 1)[1] for part in cell_key.split(","))
    return {"key": key, "cell": cell_key, "tier": None if tier == "default" else tier,
            "pattern": None if pattern == "auto" else pattern, "item": item, "repeat": int(repeat), "output": None,
            "metrics": {}, "passed": False, "error": error}


def run_unit(payload: dict[str, Any], task_for: Callable[[Suite, dict[str, Any]], Task], cache: dict[str, Any],
             lock: threading.Lock) -> dict[str, Any]:
    """Execute one unit in a worker: the suite's items and task are built once per suite digest (under ``lock``),
    then units run concurrently."""
    suite = Suite.model_validate(payload["suite"])
    digest = suite_digest(suite, payload["context"])
    with lock:
        if digest not in cache:
            items = {item.id: item for item in suite.dataset.load(seed=suite.seed)}
            cache[digest] = (items, task_for(suite, payload["context"]), suite.resolved_scorers())
        items, task, scorers = cache[digest]
    cell = Cell.model_validate(payload["cell"])
    return _run_one(task, scorers, items[payload["item"]], cell, int(payload["repeat"]))
