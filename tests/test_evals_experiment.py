"""A suite run as a Langfuse experiment: dataset items, one trace per item, every metric a score on it.

The real SDK exports to the local receiver of tests/fixtures_tracing.py; the model is the real tiny tier (SmolLM2-135M).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tierflow.cli import app
from tierflow.evals.benchmarks.bfcl import FunctionCallTask, load_bfcl
from tierflow.evals.datasets import EvalItem
from tierflow.evals.experiment import LangfuseExperiment
from tierflow.evals.runner import run_suite
from tierflow.evals.suite import DatasetSpec, Matrix, Suite, TaskSpec
from tierflow.evals.tasks import RunTask
from tierflow.tracing import open_tracing


def bfcl_suite() -> Suite:
    return Suite(name="bfcl-two", dataset=DatasetSpec(kind="bfcl", limit=2), task=TaskSpec(kind="function_call"),
                 scorers=["bfcl_ast", "usage"], matrix=Matrix(tiers=["tiny"]))


@pytest.mark.model
@pytest.mark.server
def test_each_item_is_a_trace_with_its_metrics_as_scores(otlp_receiver, tiny_registry, tmp_path: Path):
    suite = bfcl_suite()
    items = load_bfcl("simple_python", limit=2)
    tracing = open_tracing(otlp_receiver.settings(), env={})
    experiment = LangfuseExperiment(tracing, suite, items, run_name="bfcl-two-20250101T000000Z")
    task = FunctionCallTask(lambda cell: tiny_registry.chat_model(cell.tier))
    records = run_suite(suite, task, items, tmp_path / "r.jsonl", progress=False, observer=experiment)
    assert experiment.close() is True
    assert [r["error"] for r in records] == [None, None]

    # the dataset and its items were created, each item with its gold answer
    assert [d["name"] for d in otlp_receiver.datasets] == ["tierflow-bfcl-two"]
    assert sorted(i["metadata"]["item"] for i in otlp_receiver.dataset_items) == sorted(i.id for i in items)
    assert all("ground_truth" in i["expectedOutput"] for i in otlp_receiver.dataset_items)

    spans = otlp_receiver.wait_for(lambda s: sum(x.name == "eval bfcl-two" for x in s) == 2
                                   and sum(x.type == "generation" for x in s) == 2)
    roots = [s for s in spans if s.name == "eval bfcl-two"]
    assert len({r.trace_id for r in roots}) == 2 and all(r.parent_id is None for r in roots)
    # each item's model call is a generation inside that item's trace
    generations = [s for s in spans if s.type == "generation"]
    assert {g.trace_id for g in generations} == {r.trace_id for r in roots}
    for root in roots:
        assert root.attributes["langfuse.experiment.name"] == "bfcl-two-20250101T000000Z"
        assert root.attributes["langfuse.experiment.dataset.id"] == "ds-tierflow-bfcl-two"
        assert root.attributes["langfuse.experiment.item.id"] in experiment.item_ids.values()
        assert root.attributes["session.id"] == "bfcl-two-20250101T000000Z"

    # every metric of every record is a score on its item's trace, with the run name in its metadata
    by_trace: dict[str, dict[str, float]] = {}
    for score in otlp_receiver.scores:
        assert score["metadata"]["run_name"] == "bfcl-two-20250101T000000Z"
        by_trace.setdefault(score["traceId"], {})[score["name"]] = score["value"]
    assert set(by_trace) == {r.trace_id for r in roots}
    for record in records:
        sent = next(v for v in by_trace.values() if v.get("input_tokens") == record["metrics"]["input_tokens"])
        assert sent["bfcl_ast"] == record["metrics"]["bfcl_ast"] and sent["passed"] == float(record["passed"])
        assert record["metrics"]["input_tokens"] > 0 and record["metrics"]["tier_share.tiny"] == 1.0
    assert experiment.summary()["traces"] == 2 and experiment.summary()["failures"] == []



@pytest.mark.model
@pytest.mark.server
def test_tierflow_eval_with_langfuse_configured_is_an_experiment(otlp_receiver, tmp_path: Path):
    env = otlp_receiver.env()
    result = CliRunner().invoke(app, ["eval", "bfcl-simple", "--limit", "2", "--tier", "tiny", "--json", "--no-html",
                                      "--out", str(tmp_path)], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    langfuse = report["langfuse"]
    assert langfuse["traces"] == 2 and langfuse["dataset_items"] == 2 and langfuse["failures"] == []
    assert langfuse["flushed"] is True
    assert langfuse["run_name"].startswith("bfcl-simple-") and langfuse["dataset"] == "tierflow-bfcl-simple"
    metrics = report["cells"]["tier=tiny,pattern=auto"]["metrics"]
    names = {s["name"] for s in otlp_receiver.scores}
    assert set(metrics) | {"passed"} == names  # every metric of the report, plus pass/fail
    assert len(otlp_receiver.scores) == langfuse["scores"] == 2 * len(names)
    assert {s["metadata"]["run_name"] for s in otlp_receiver.scores} == {langfuse["run_name"]}


def test_a_dead_langfuse_never_fails_the_eval(tmp_path: Path):
    """Datasets, spans and scores all fail to leave; the run and its records are unaffected."""
    from tests.conftest import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    tracing = open_tracing({"public_key": "pk-lf-x", "secret_key": "sk-lf-x", "base_url": dead,
                            "flush_timeout_s": 2}, env={})
    suite = Suite(name="echo", dataset=DatasetSpec(path=Path("unused.jsonl")), task=TaskSpec(kind="run"),
                  scorers=["contains"])
    items = [EvalItem(id=str(i), input=f"say {i}", expected={"contains": str(i)}) for i in range(3)]
    experiment = LangfuseExperiment(tracing, suite, items)
    records = run_suite(suite, lambda item, cell: {"answer": item.input}, items, tmp_path / "r.jsonl",
                        progress=False, observer=experiment)
    started = time.monotonic()
    # Whether the exporter gives up before the 2 s bound or is cut off by it depends on its retry jitter; either
    # way closing must not wait longer than the bound, and must not raise.
    flushed = experiment.close()
    assert time.monotonic() - started < 2 + 3  # flush_timeout_s, plus slack for a busy machine
    assert [r["passed"] for r in records] == [True, True, True] and all(r["error"] is None for r in records)
    summary = experiment.summary()
    assert summary["dataset"] is None and summary["traces"] == 3
    assert "dataset upload" in summary["failures"][0] and summary["flushed"] is flushed
    assert experiment.close() is flushed and experiment.summary()["failures"] == summary["failures"]  # closes once


@pytest.mark.server
def test_whole_runs_nest_under_their_item_trace(otlp_receiver, tmp_path: Path):
    """A RunTask's graph run (scripted models) becomes part of the item's trace, and its metrics scores on it."""
    from tests.test_evals_runs import scripted_graph

    suite = Suite(name="e2e", dataset=DatasetSpec(path=Path("unused.jsonl")), task=TaskSpec(kind="run"),
                  scorers=["contains", "usage"], matrix=Matrix(patterns=["sequential"]))
    items = [EvalItem(id="calc", input="what is 17*23?", expected={"contains": ["391"]})]
    tracing = open_tracing(otlp_receiver.settings(), env={})
    experiment = LangfuseExperiment(tracing, suite, items, run_name="e2e-run")
    records = run_suite(suite, RunTask(scripted_graph), items, tmp_path / "r.jsonl", progress=False,
                        observer=experiment)
    assert experiment.close() is True and records[0]["passed"] is True
    spans = otlp_receiver.wait_for(lambda s: any(x.name == "tierflow.run" for x in s)
                                   and any(x.name == "eval e2e" for x in s))
    root = next(s for s in spans if s.name == "eval e2e")
    run = next(s for s in spans if s.name == "tierflow.run")
    assert run.parent_id == root.span_id and run.trace_id == root.trace_id
    assert {s.trace_id for s in spans} == {root.trace_id}  # planner, workers, tools: all in the item's trace
    assert sum(s.type == "generation" for s in spans) == records[0]["metrics"]["model_calls"] == 5
    scores = {s["name"]: s["value"] for s in otlp_receiver.scores if s["traceId"] == root.trace_id}
    assert scores["answer_contains"] == 1.0 and scores["passed"] == 1.0 and scores["model_calls"] == 5.0
