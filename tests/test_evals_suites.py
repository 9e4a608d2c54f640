"""Shipped BFCL and NESTFUL suites through ``tierflow eval`` on the real tiny tier, and suites that cannot work.

The shipped suites name the default ``mobile`` tier; these runs pick ``tiny`` (SmolLM2-135M) with ``--tier``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tierflow.cli import app
from tierflow.evals.errors import SuiteError
from tierflow.evals.scorers import resolve_scorer
from tierflow.evals.suite import load_suite

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()


def write_suite(tmp_path: Path, **fields) -> Path:
    raw = {"name": "s", "dataset": {"kind": "bfcl"}, "task": {"kind": "function_call"}, "scorers": ["bfcl_ast"],
           **fields}
    path = tmp_path / f"suite-{len(list(tmp_path.glob('*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_shipped_suites_load_and_bad_combinations_are_named(tmp_path):
    bfcl, nestful = load_suite("bfcl-simple"), load_suite("nestful-plans")
    assert (bfcl.task.kind, bfcl.dataset.kind, bfcl.matrix.tiers) == ("function_call", "bfcl", ["mobile"])
    assert (nestful.task.kind, nestful.dataset.kind) == ("plan", "nestful") and nestful.dataset.limit == 10
    assert len(bfcl.dataset.load()) == 50
    bad = {
        "a plan task needs a nestful dataset, not bfcl": {"task": {"kind": "plan"}},
        "a function_call task needs a bfcl dataset, not nestful": {"dataset": {"kind": "nestful"}},
        "a run task needs a jsonl dataset, not bfcl": {"task": {"kind": "run"}},
        "matrix.patterns apply to run tasks only, not function_call": {"matrix": {"patterns": ["parallel"]}},
        "dataset.collection applies to kind nestful, not bfcl": {"dataset": {"kind": "bfcl", "collection": "sgd"}},
        "task.max_calls applies to kind function_call or plan, not run": {"task": {"kind": "run", "max_calls": 3},
                                                                          "dataset": {"kind": "jsonl", "path": "x"}},
        "unknown BFCL category 'simple' (did you mean simple_python": {"dataset": {"kind": "bfcl",
                                                                                  "category": "simple"}},
        "valid: simple_python, simple_java, simple_javascript, multiple": {"dataset": {"kind": "bfcl",
                                                                                       "category": ["exec"]}},
        "task.model applies to kind intent, not plan": {"task": {"kind": "plan", "model": "x"},
                                                        "dataset": {"kind": "nestful"}},
        "a jsonl dataset needs a path": {"dataset": {"kind": "jsonl"}, "task": {"kind": "run"}},
        "dataset.collection: Input should be 'executable', 'glaive' or 'sgd'": {
            "dataset": {"kind": "nestful", "collection": "complexfuncbench"}, "task": {"kind": "plan"}},
    }
    for message, fields in bad.items():
        with pytest.raises(SuiteError, match=message.replace("(", r"\(")):
            load_suite(write_suite(tmp_path, **fields))
    both = runner.invoke(app, ["eval", "bfcl-simple", "--limit", "3", "--all", "--out", str(tmp_path)])
    assert both.exit_code == 2 and "--limit and --all contradict" in both.output
    for name in ("bfcl-multiple", "bfcl-parallel", "bfcl-irrelevance", "bfcl-live"):
        shipped = load_suite(name)
        assert shipped.dataset.kind == "bfcl" and shipped.matrix.tiers == ["mobile"], name
        assert (REPO / "evals" / "baselines" / f"{name}.mobile.json").is_file(), name
    live = load_suite("bfcl-live").dataset.load()
    assert len(live) == 36 and len({i.group for i in live}) == 6


def test_cli_errors_are_printed_as_written(tmp_path):
    """Text in square brackets (rich markup syntax) reaches the terminal literally, on one line, exit status 2."""
    data = tmp_path / "data"
    (data / "possible_answer").mkdir(parents=True)
    row = {"id": "a", "question": [[{"role": "user", "content": "hi"}]],
           "function": [{"name": "f", "parameters": {"type": "dict", "properties": {}}}]}
    (data / "BFCL_v4_simple_python.json").write_text(json.dumps(row) + "\n")
    (data / "possible_answer" / "BFCL_v4_simple_python.json").write_text('{"id": "a", "ground_truth": "[bold]"}\n')
    suite = write_suite(tmp_path, dataset={"kind": "bfcl", "path": str(data), "skip_invalid": False})
    result = runner.invoke(app, ["eval", str(suite), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "must be [{function_name: {param: [acceptable values]}}, ...]" in result.output
    missing = runner.invoke(app, ["eval", "no-[bold]such[/bold]-suite"])
    assert missing.exit_code == 2 and "suite 'no-[bold]such[/bold]-suite' not found" in missing.output


def eval_json(*args: str) -> dict:
    result = runner.invoke(app, ["eval", *args, "--json", "--no-html"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_scored_from_output(suite: str | Path, records: list[dict], scorers: list[str]) -> None:
    """Each record's stored metrics are what ``scorers`` give its output on the item the suite loads."""
    spec = load_suite(suite)
    items = {item.id: item for item in spec.dataset.load(seed=spec.seed)}
    for record in records:
        again = {k: v for name in scorers for k, v in resolve_scorer(name)(items[record["item"]],
                                                                            record["output"]).items()}
        assert again and {k: record["metrics"].get(k) for k in again} == again, record


@pytest.mark.model
def test_bfcl_simple_through_the_cli_on_the_tiny_tier(tmp_path):
    report = eval_json("bfcl-simple", "--limit", "2", "--tier", "tiny", "--out", str(tmp_path))
    assert list(report["cells"]) == ["tier=tiny,pattern=auto"]  # --tier replaces the suite's matrix.tiers
    cell = report["cells"]["tier=tiny,pattern=auto"]
    assert report["suite"] == "bfcl-simple" and report["task"] == "function_call" and report["items"] == 2
    assert cell["n"] == 2 and cell["errors"] == 0
    assert cell["metrics"]["tier_share.tiny"] == 1.0 and cell["metrics"]["model_calls"] == 1.0
    assert cell["metrics"]["input_tokens"] > 50 and cell["metrics"]["output_tokens"] > 0
    assert "args_missing" in report["report_only"] and "args_missing" in cell["metrics"]
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["item"] for r in records] == ["simple_python_0", "simple_python_1"]
    # each item scores 0 or 1 (an AST match or not) and the cell reports their mean
    per_item = [r["metrics"]["bfcl_ast"] for r in records]
    assert set(per_item) <= {0.0, 1.0} and cell["metrics"]["bfcl_ast"] == pytest.approx(sum(per_item) / 2)
    assert all(r["passed"] == (r["metrics"]["bfcl_ast"] == 1.0) for r in records)
    assert all(r["output"]["model_calls"][0]["model"] == "SmolLM2-135M-Instruct.Q4_1.gguf" for r in records)
    # the stored metrics are those of the call the model made, and its name is the one the schema allows
    assert_scored_from_output("bfcl-simple", records, ["bfcl_ast", "bfcl_ast_errors"])
    items = {i.id: i for i in load_suite("bfcl-simple").dataset.load()}
    for r in records:  # calls only of the function offered, or none; or an unusable reply, said so
        name = items[r["item"]].expected["bfcl"]["functions"][0]["name"]
        assert {c["name"] for c in r["output"]["calls"]} <= {name} or r["output"].get("output_error"), r["output"]
    assert "tier mix" in (tmp_path / "report.md").read_text() and "tiny 100%" in (tmp_path / "report.md").read_text()
    # a rerun resumes: nothing is asked again, the report is the same
    assert eval_json("bfcl-simple", "--limit", "2", "--tier", "tiny", "--out", str(tmp_path))["cells"] == \
        report["cells"]

    failed = runner.invoke(app, ["eval", "bfcl-simple", "--limit", "1", "--tier", "moon", "--out", str(tmp_path)])
    assert failed.exit_code == 2 and "unknown tier 'moon'" in failed.output


@pytest.mark.model
def test_nestful_plans_end_to_end_on_the_tiny_tier(tmp_path):
    # glaive's tools are described briefly: short prompts keep the small model quick
    suite = write_suite(tmp_path, name="nestful-two", dataset={"kind": "nestful", "collection": "glaive",
                                                               "distractors": 1, "limit": 2},
                        task={"kind": "plan", "max_tokens": 96, "max_calls": 4},
                        scorers=["plan", "plan_counts", "usage"], matrix={"tiers": ["tiny"]})
    report = eval_json(str(suite), "--out", str(tmp_path / "out"))
    items = {i.id: i for i in load_suite(suite).dataset.load()}
    cell = report["cells"]["tier=tiny,pattern=auto"]
    assert report["task"] == "plan" and cell["n"] == 2 and cell["errors"] == 0
    records = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(r["error"] is None for r in records)
    # the stored metrics are those of the plan the model wrote, scored against the same items again
    assert_scored_from_output(suite, records, ["plan", "plan_counts"])
    for metric in ("plan_exact", "plan_names", "plan_partial", "plan_args"):  # the cell is the items' mean
        assert cell["metrics"][metric] == pytest.approx(sum(r["metrics"][metric] for r in records) / 2)
    # an exact plan gets full partial credit
    assert all(r["metrics"]["plan_exact"] <= r["metrics"]["plan_partial"] for r in records)
    assert cell["metrics"]["plan_gold_calls"] > 1 and cell["metrics"]["tier_share.tiny"] == 1.0
    assert cell["metrics"]["input_tokens"] > 50 and 0 < cell["metrics"]["output_tokens"] <= 96
    for record in records:  # a valid plan, or an unusable reply that was scored as an empty one
        output = record["output"]
        assert isinstance(output["calls"], list) and (output["calls"] or output["output_error"])
        assert len(output["calls"]) <= 4
        # the schema admits only the tools the item offers, labelled var1..var4
        offered = {t["name"] for t in items[record["item"]].expected["nestful"]["tools"]}
        assert {c["name"] for c in output["calls"]} <= offered
        assert {c["label"] for c in output["calls"]} <= {"var1", "var2", "var3", "var4"}


def test_the_readme_set_up_installs_the_eval_data_it_pins():
    """`bash infra/setup.sh` (the README's set-up) runs the eval-data step, which pins what is installed here."""
    import importlib.metadata
    import re

    assert "bash infra/setup.d/60-eval-data.sh" in (REPO / "infra" / "setup.sh").read_text()
    step = (REPO / "infra" / "setup.d" / "60-eval-data.sh").read_text()
    pinned = dict(re.findall(r"^(BFCL_EVAL|NESTFUL_WRAPPER)=(\S+)$", step, re.MULTILINE))
    assert importlib.metadata.version("bfcl-eval") == pinned["BFCL_EVAL"]
    assert importlib.metadata.version("nestful-wrapper") == pinned["NESTFUL_WRAPPER"]
