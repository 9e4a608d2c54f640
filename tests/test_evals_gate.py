"""Reports (JSON, Markdown, HTML with plots) and the regression gate, in code and through `tierflow eval`."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tierflow.cli import app
from tierflow.evals.datasets import EvalItem
from tierflow.evals.errors import BaselineError
from tierflow.evals.gate import compare, load_baseline
from tierflow.evals.report import summarize, write_reports
from tierflow.evals.runner import run_suite
from tierflow.evals.suite import Cell, DatasetSpec, Suite, TaskSpec

REPO = Path(__file__).resolve().parent.parent
BASELINE = REPO / "evals" / "baselines" / "intents-small.json"


def echo_task(item: EvalItem, cell: Cell) -> dict:
    return {"answer": item.input, "latency_ms": float(len(item.input)),
            "model_calls": [{"tier": "mobile", "input_tokens": 3, "output_tokens": 2}]}


def small_report(tmp_path: Path, answers_right: int) -> tuple[Suite, dict, list[dict]]:
    suite = Suite(name="echo", dataset=DatasetSpec(path=Path("unused")), task=TaskSpec(kind="run"),
                  scorers=["contains", "usage"])
    items = [EvalItem(id=str(i), input=f"say {i}", expected={"contains": str(i) if i < answers_right else "zzz"})
             for i in range(4)]
    records = run_suite(suite, echo_task, items, tmp_path / f"r{answers_right}.jsonl", progress=False)
    return suite, summarize(suite, records), records


def test_reports_are_written_and_valid(tmp_path):
    _, report, records = small_report(tmp_path, 3)
    paths = write_reports(report, records, tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    cell = data["cells"]["tier=default,pattern=auto"]
    assert cell["pass_rate"] == 0.75 and cell["metrics"]["answer_contains"] == 0.75
    assert cell["metrics"]["tier_share.mobile"] == 1.0 and cell["metrics"]["input_tokens"] == 3
    assert "| tier=default,pattern=auto | 4 | 0 | 0.750 (3/4) | 0.750 (4) |" in paths["markdown"].read_text()
    page = paths["html"].read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    # pass rate by tier × pattern and latency; no cost plot, since nothing cost anything
    assert len(images) == 2 and all(base64.b64decode(b).startswith(b"\x89PNG") for b in images)
    assert "http://" not in page and "https://" not in page  # opens offline


def test_gate_flags_drops_beyond_tolerance_only(tmp_path):
    _, good, _ = small_report(tmp_path, 4)
    _, worse, _ = small_report(tmp_path, 3)
    assert compare(good, good) == []
    assert compare(worse, worse) == []
    drops = compare(worse, good)
    assert {(r.metric, r.baseline, r.current) for r in drops} >= {("answer_contains", 1.0, 0.75),
                                                                  ("pass_rate", 1.0, 0.75)}
    assert compare(worse, good, tolerance=0.25) == []
    assert compare(good, worse) == []  # improvements are not regressions
    missing = dict(good, cells={})
    assert [str(r) for r in compare(missing, good, metrics=["pass_rate"])] == [
        "tier=default,pattern=auto: pass_rate 1.0000 -> missing"]


def test_baselines_must_exist_and_match_the_suite(tmp_path):
    with pytest.raises(BaselineError, match="not found"):
        load_baseline(tmp_path / "none.json", "x")
    (tmp_path / "b.json").write_text("[1, 2]")
    with pytest.raises(BaselineError, match="not an eval report"):
        load_baseline(tmp_path / "b.json", "x")
    with pytest.raises(BaselineError, match="is for suite 'intents-small', not 'x'"):
        load_baseline(BASELINE, "x")


def test_the_ci_suite_passes_its_committed_baseline_and_a_regression_fails_the_gate(tmp_path):
    """The gate as CI runs it: the shipped demo intent model on the CI suite, against the committed baseline."""
    runner = CliRunner()
    ok = runner.invoke(app, ["eval", "intents-small", "--out", str(tmp_path / "ok"), "--baseline", str(BASELINE),
                             "--fail-on-regression", "--no-progress", "--no-html", "--json"])
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.stdout.splitlines()[-1])
    assert report["regressions"] == [] and report["items"] == 30
    assert (tmp_path / "ok" / "report.json").is_file() and (tmp_path / "ok" / "results.jsonl").is_file()
    # the same suite with three items relabelled: the model's answers now score lower than the baseline
    rows = [json.loads(line) for line in (REPO / "evals" / "data" / "intents-small.jsonl").read_text().splitlines()]
    for row in rows[:3]:
        row["expected"]["label"] = "oos"
    data = tmp_path / "relabelled.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite = tmp_path / "intents-small.yaml"
    suite.write_text(f"name: intents-small\ndataset: {{path: {data}}}\ntask: {{kind: intent}}\n"
                     "scorers: [intent]\ngate: [accuracy, in_scope_accuracy]\n")
    args = ["eval", str(suite), "--baseline", str(BASELINE), "--fail-on-regression", "--no-progress", "--no-html"]
    bad = runner.invoke(app, [*args, "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 1, bad.output
    assert "regression: tier=default,pattern=auto: accuracy 1.0000 -> 0.9000" in bad.output
    tolerated = runner.invoke(app, [*args, "--out", str(tmp_path / "bad"), "--tolerance", "0.2"])
    assert tolerated.exit_code == 0, tolerated.output
    wrong = runner.invoke(app, ["eval", "no-such-suite"])
    assert wrong.exit_code == 2 and "suite 'no-such-suite' not found" in wrong.output
