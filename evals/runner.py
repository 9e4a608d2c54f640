"""The runner: every (cell, item, repeat) once, concurrently up to a limit, resumable from a JSONL results file."""

from __future__ import annotations

import json
import os
import threading
import traceback
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Protocol

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tierflow.evals.datasets import EvalItem
from tierflow.evals.errors import EvalError
from tierflow.evals.scorers import Scorer, score_item
from tierflow.evals.suite import Cell, Suite
from tierflow.evals.tasks import Task


def record_key(cell: Cell, item_id: str, repeat: int) -> str:
    """The identity of one unit of work in a results file."""
    return f"{cell.key}|{item_id}|{repeat}"


def read_results(path: Path) -> list[dict[str, Any]]:
    """Records of a results file; a torn last line (a kill mid-write) is ignored, other bad lines are errors."""
    if not path.exists():
        return []
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise EvalError(f"{path}:{number}: corrupt line in the results file; delete it or use --fresh") from None
    return records


def _record(cell: Cell, item: EvalItem, repeat: int) -> dict[str, Any]:
    """The identity fields of one unit's record; ``group`` (e.g. a BFCL category) only when the item has one."""
    record: dict[str, Any] = {"key": record_key(cell, item.id, repeat), "cell": cell.key, "tier": cell.tier,
                              "pattern": cell.pattern, "item": item.id, "repeat": repeat}
    if item.group is not None:
        record["group"] = item.group
    return record


class Observer(Protocol):
    """Watches each unit of work (e.g. :class:`tierflow.evals.experiment.LangfuseExperiment`); it must never raise.

    ``unit`` wraps the task call; what it yields, when not None, gets ``finish(record)`` once the unit is scored.
    """

    def unit(self, item: EvalItem, cell: Cell, repeat: int) -> AbstractContextManager[Any]: ...


def _run_one(task: Task, scorers: list[Scorer], item: EvalItem, cell: Cell, repeat: int,
             observer: Observer | None = None) -> dict[str, Any]:
    record = _record(cell, item, repeat)
    with observer.unit(item, cell, repeat) if observer is not None else nullcontext() as watched:
        try:
            output = task(item, cell)
            metrics, passed = score_item(scorers, item, output)
            record.update(output=output, metrics=metrics, passed=passed, error=None)
        except EvalError:
            raise  # a broken suite (bad regex, bad schema) stops the run instead of failing every item
        except Exception as exc:  # per-item capture: one failing item must not end the run
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            record.update(output=None, metrics={}, passed=False, error=detail)
        if watched is not None:
            watched.finish(record)
    return record


class _Writer:
    """Appends one JSON line per finished unit and syncs it, so a kill loses at most the unit in flight."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        if path.exists():
            data = path.read_bytes()
            if data and not data.endswith(b"\n"):  # drop a torn last line left by a kill; that unit is re-run
                with path.open("r+b") as handle:
                    handle.truncate(data.rfind(b"\n") + 1)
        self._handle = path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._handle.write(json.dumps(record, default=str) + "\n")
            self._handle.flush()
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()


def run_suite(suite: Suite, task: Task, items: list[EvalItem], results_path: Path, *,
              progress: bool = True, limit: int | None = None,
              observer: Observer | None = None) -> list[dict[str, Any]]:
    """Run what ``results_path`` does not hold yet and return every record for this suite's work.

    Units already in the file (same cell, item and repeat) are not re-run; failed ones are kept as failed.
    ``limit`` stops after that many new units (for tests of resumption and for partial runs); ``observer``
    (e.g. a Langfuse experiment) sees every unit run now, not the ones resumed from the file.
    """
    scorers = suite.resolved_scorers()
    done = {r["key"]: r for r in read_results(results_path)}
    todo = [(cell, item, rep) for cell in suite.matrix.cells() for item in items for rep in range(suite.repeats)
            if record_key(cell, item.id, rep) not in done]
    if limit is not None:
        todo = todo[:limit]
    writer = _Writer(results_path)
    new: list[dict[str, Any]] = []
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, disable=not progress, transient=False) as bar:
            tracker = bar.add_task(suite.name, total=len(todo))
            for record in _execute(task, scorers, todo, suite.concurrency, suite.timeout_s, observer):
                writer.write(record)
                new.append(record)
                bar.advance(tracker)
    finally:
        writer.close()
    wanted = {record_key(c, i.id, r) for c in suite.matrix.cells() for i in items for r in range(suite.repeats)}
    merged = {**done, **{r["key"]: r for r in new}}
    return [merged[k] for k in merged if k in wanted]


def _execute(task: Task, scorers: list[Scorer], todo: list[tuple[Cell, EvalItem, int]], concurrency: int,
             timeout_s: float, observer: Observer | None = None) -> Iterator[dict[str, Any]]:
    """Yield records as units finish, at most ``concurrency`` in flight; a unit over ``timeout_s`` is recorded as
    timed out (its thread is abandoned, not killed: Python cannot stop a thread)."""
    import time

    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="eval")
    pending: dict[Future, tuple[Cell, EvalItem, int, float]] = {}
    queue = list(todo)
    try:
        while queue or pending:
            while queue and len(pending) < concurrency:
                cell, item, rep = queue.pop(0)
                future = pool.submit(_run_one, task, scorers, item, cell, rep, observer)
                pending[future] = (cell, item, rep, time.monotonic())
            finished, _ = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
            for future in finished:
                pending.pop(future)
                yield future.result()
            now = time.monotonic()
            for future, (cell, item, rep, started) in list(pending.items()):
                if now - started > timeout_s:
                    future.cancel()
                    pending.pop(future)
                    yield _record(cell, item, rep) | {"output": None, "metrics": {}, "passed": False,
                                                      "error": f"timed out after {timeout_s:g} s"}
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
