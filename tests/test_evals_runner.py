"""The runner: resume after a real kill, per-item errors, timeouts, concurrency, pass^k over repeats."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tierflow.evals.datasets import EvalItem
from tierflow.evals.report import summarize
from tierflow.evals.runner import read_results, run_suite
from tierflow.evals.suite import Cell, DatasetSpec, Matrix, Suite, TaskSpec

REPO = Path(__file__).resolve().parent.parent
ITEMS = [EvalItem(id=f"q{i}", input=f"what is {i} + {i}", expected={"contains": [str(2 * i)]}) for i in range(8)]


def suite(**kw) -> Suite:
    return Suite(name="arith", dataset=DatasetSpec(path=Path("unused.jsonl")), task=TaskSpec(kind="run"),
                 scorers=["contains", "usage"], **kw)


class Adder:
    """A deterministic task that answers arithmetic exactly and records what it was asked."""

    def __init__(self, delay_s: float = 0.0, fail_on: str | None = None) -> None:
        self.delay_s, self.fail_on = delay_s, fail_on
        self.seen: list[tuple[str, str]] = []
        self.active = self.peak = 0
        self.lock = threading.Lock()

    def __call__(self, item: EvalItem, cell: Cell) -> dict:
        with self.lock:
            self.seen.append((cell.key, item.id))
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(self.delay_s)
            if item.id == self.fail_on:
                raise ConnectionError("tier went away")
            n = int(item.input.split()[2])
            return {"answer": str(n + n), "latency_ms": self.delay_s * 1000}
        finally:
            with self.lock:
                self.active -= 1


KILLED_RUN = """
import sys, time
sys.path.insert(0, {repo!r})
from tests.test_evals_runner import ITEMS, Adder, suite
from tierflow.evals.runner import run_suite
from pathlib import Path
run_suite(suite(), Adder(delay_s=0.4), ITEMS, Path({path!r}), progress=False)
"""


def test_a_killed_run_resumes_without_rerunning_finished_items(tmp_path):
    results = tmp_path / "results.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN.format(repo=str(REPO), path=str(results))],
                            cwd=REPO, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while len(read_results(results)) < 3:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run wrote no results in 60 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    before = read_results(results)
    assert 3 <= len(before) < len(ITEMS)
    task = Adder()
    records = run_suite(suite(), task, ITEMS, results, progress=False)
    assert sorted(i for _, i in task.seen) == sorted(i.id for i in ITEMS[len(before):])  # only what was missing
    assert len(records) == len(ITEMS) and all(r["passed"] for r in records)
    assert read_results(results)[: len(before)] == before  # finished records are kept as they were
    # a third run has nothing left to do
    again = Adder()
    assert len(run_suite(suite(), again, ITEMS, results, progress=False)) == len(ITEMS) and again.seen == []


def test_a_torn_last_line_is_ignored_and_rerun(tmp_path):
    results = tmp_path / "results.jsonl"
    run_suite(suite(), Adder(), ITEMS[:2], results, progress=False)
    with results.open("a") as handle:
        handle.write('{"key": "tier=default,pattern=auto|q2|0", "cell"')  # killed mid-write
    task = Adder()
    records = run_suite(suite(), task, ITEMS[:3], results, progress=False)
    assert [i for _, i in task.seen] == ["q2"] and len(records) == 3
    assert [json.loads(line)["item"] for line in results.read_text().splitlines()] == ["q0", "q1", "q2"]


def test_item_errors_are_recorded_and_the_run_goes_on(tmp_path):
    records = run_suite(suite(concurrency=3), Adder(fail_on="q3"), ITEMS, tmp_path / "r.jsonl", progress=False)
    failed = [r for r in records if r["error"]]
    assert [r["item"] for r in failed] == ["q3"] and "ConnectionError: tier went away" in failed[0]["error"]
    report = summarize(suite(), records)
    cell = report["cells"]["tier=default,pattern=auto"]
    assert cell["errors"] == 1 and cell["pass_rate"] == 7 / 8 and cell["error_samples"][0].startswith("q3: ")


def test_slow_items_time_out_without_stopping_the_run(tmp_path):
    slow = Adder(delay_s=2.5)
    records = run_suite(suite(timeout_s=0.5), slow, ITEMS[:1], tmp_path / "r.jsonl", progress=False)
    assert records[0]["error"] == "timed out after 0.5 s" and records[0]["passed"] is False


def test_concurrency_limit_matrix_and_repeats(tmp_path):
    task = Adder(delay_s=0.05)
    matrix = Matrix(tiers=["mobile", "cloud"], patterns=["sequential"])
    s = suite(concurrency=2, repeats=3, matrix=matrix)
    records = run_suite(s, task, ITEMS[:2], tmp_path / "r.jsonl", progress=False)
    assert len(records) == 2 * 2 * 3 and task.peak == 2
    report = summarize(s, records)
    assert set(report["cells"]) == {"tier=mobile,pattern=sequential", "tier=cloud,pattern=sequential"}
    assert all(c["pass^3"] == 1.0 and c["n"] == 6 for c in report["cells"].values())
