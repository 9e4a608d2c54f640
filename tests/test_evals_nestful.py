"""NESTFUL plans from the installed nestful-wrapper package: loader errors by line, the plan scorer on known cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.scripted import ScriptedChatModel
from tierflow.evals.benchmarks.nestful import PlanTask, load_nestful, match_plan, plan_schema
from tierflow.evals.datasets import EvalItem
from tierflow.evals.errors import DatasetError
from tierflow.evals.runner import run_suite
from tierflow.evals.scorers import resolve_scorer, score_item
from tierflow.evals.suite import DatasetSpec, Suite, TaskSpec

GOLD = [{"name": "search", "arguments": {"query": "London"}, "label": "var1"},
        {"name": "hotels", "arguments": {"geoId": "$var1.geoId$", "checkIn": "2024-08-15"}, "label": "var2"},
        {"name": "var_result", "arguments": {"hotels": "$var2$"}}]


RESULT = {"name": "var_result", "arguments": {}}


def call(name: str, label: str, **arguments) -> dict:
    return {"name": name, "label": label, "arguments": arguments}


def scores(predicted: list) -> dict[str, float]:
    item = EvalItem(id="t", input="hotels in London", expected={"nestful": {"calls": GOLD}})
    return {**resolve_scorer("plan")(item, {"calls": predicted}),
            **resolve_scorer("plan_counts")(item, {"calls": predicted})}


def test_loader_reads_the_executable_collection_with_gold_tools_and_distractors():
    items = load_nestful("executable", limit=5, distractors=2)
    assert len(items) == 5 and items[0].id == "executable-0" and items[0].line == 2  # row 0 starts on line 2
    for item in items:
        nestful = item.expected["nestful"]
        offered = [t["name"] for t in nestful["tools"]]
        gold = {c["name"] for c in nestful["calls"]}
        assert gold <= set(offered) and len(offered) == len(gold) + 2 and offered == sorted(offered)
        assert all(c["name"] != "var_result" for c in nestful["calls"])  # not an API call: not scored
        assert match_plan(nestful["calls"], nestful["calls"]).exact  # gold matches itself
    again = load_nestful("executable", limit=5, distractors=2)
    assert [i.expected for i in again] == [i.expected for i in items]  # same seed, same distractors
    assert len(load_nestful("executable")) == 85


def collection(tmp_path: Path, rows: list | str, tools: list | None = None) -> Path:
    folder = tmp_path / "executable"
    folder.mkdir(parents=True, exist_ok=True)
    text = rows if isinstance(rows, str) else json.dumps(rows, indent=2)
    (folder / "executable-data.json").write_text(text, encoding="utf-8")
    specs = tools or [{"name": n, "description": n, "query_parameters": {}} for n in ("search", "hotels")]
    (folder / "executable-spec.json").write_text(json.dumps(specs), encoding="utf-8")
    return tmp_path


def test_bad_rows_are_reported_by_file_line_and_row(tmp_path):
    good = {"input": "hotels in London", "output": GOLD}
    cases = [
        ({"input": "", "output": GOLD}, "row 1: field 'input' must be a non-empty string"),
        ({"input": "x", "output": [call("flights", "var1")]}, "row 1, call 0: function 'flights' is not in"),
        ({"input": "x", "output": [call("search", "var1"), call("hotels", "var1")]}, "label 'var1' repeats call 0"),
        ({"input": "x", "output": [call("hotels", "var1", geoId="$var7.geoId$")]}, "$var7$ refers to no earlier"),
        ({"input": "x", "output": [RESULT, call("search", "var1")]}, "must be the last"),
        ({"input": "x", "output": [RESULT]}, "has no API calls"),
    ]
    for number, (bad, message) in enumerate(cases):
        data = collection(tmp_path / str(number), [good, bad])
        with pytest.raises(DatasetError) as err:
            load_nestful("executable", data_dir=data, skip_invalid=False)
        assert message in str(err.value), (message, str(err.value))
        lines = (data / "executable" / "executable-data.json").read_text().splitlines()
        assert err.value.line is not None and lines[err.value.line - 1].strip() == "{", err.value.line  # row start
        assert err.value.path.name == "executable-data.json"
        kept = load_nestful("executable", data_dir=data)  # by default a bad row is skipped, and counted
        assert [i.id for i in kept] == ["executable-0"] and [str(e) for e in kept.skipped] == [str(err.value)]
        assert len(load_nestful("executable", data_dir=data, limit=1, skip_invalid=False)) == 1  # limit comes first

    broken = collection(tmp_path / "json", '[\n  {"input": "a", "output": []},\n  {"input": oops}\n]')
    with pytest.raises(DatasetError, match="invalid JSON in row 1") as err:
        load_nestful("executable", data_dir=broken)  # a file that is not JSON is never skipped
    assert err.value.line == 3
    with pytest.raises(DatasetError, match="expected a JSON array"):
        load_nestful("executable", data_dir=collection(tmp_path / "obj", '{"input": "a"}'))
    with pytest.raises(DatasetError, match="unknown NESTFUL collection"):
        load_nestful("complexfuncbench")  # type: ignore[arg-type]


def test_plan_scorer_on_exact_partial_and_wrong_plans():
    # exact: other labels, references follow them; strings compare trimmed and case-insensitively
    exact = scores([call("search", "a", query=" london "),
                    call("hotels", "b", geoId="$a.geoId$", checkIn="2024-08-15")])
    assert exact == {"plan_exact": 1.0, "plan_names": 1.0, "plan_partial": 1.0, "plan_args": 1.0, "plan_deps": 1.0,
                     "plan_calls": 2.0, "plan_gold_calls": 2.0, "plan_valid": 1.0}

    # one wrong date: first call right, second not; 2 of 3 arguments right on both sides; the reference is right
    date = scores([call("search", "var1", query="London"),
                   call("hotels", "var2", geoId="$var1.geoId$", checkIn="2024-08-16")])
    assert date["plan_exact"] == 0.0 and date["plan_names"] == 1.0 and date["plan_partial"] == 0.5
    assert date["plan_args"] == pytest.approx(2 / 3) and date["plan_deps"] == 1.0

    # a reference to the wrong field: the dependency is lost, the argument is wrong
    field = scores([call("search", "var1", query="London"),
                    call("hotels", "var2", geoId="$var1.id$", checkIn="2024-08-15")])
    assert field["plan_deps"] == 0.0 and field["plan_partial"] == 0.5 and field["plan_args"] == pytest.approx(2 / 3)

    # an extra call first: the alignment pairs the gold search with the matching one, and the reference
    # to var2 still points at it; names F1 = 2·(2/3·1)/(2/3+1) = 0.8, arguments F1 = 2·(3/4·1)/(3/4+1) = 6/7
    extra = scores([call("search", "var1", query="Paris"), call("search", "var2", query="London"),
                    call("hotels", "var3", geoId="$var2.geoId$", checkIn="2024-08-15")])
    assert extra["plan_exact"] == 0.0 and extra["plan_names"] == pytest.approx(0.8)
    assert extra["plan_partial"] == pytest.approx(2 / 3) and extra["plan_args"] == pytest.approx(6 / 7)
    assert extra["plan_deps"] == 1.0 and extra["plan_calls"] == 3.0

    # the same calls pointing at the wrong search: the dependency and that argument are wrong
    wrong_ref = scores([call("search", "var1", query="Paris"), call("search", "var2", query="London"),
                        call("hotels", "var3", geoId="$var1.geoId$", checkIn="2024-08-15")])
    assert wrong_ref["plan_deps"] == 0.0 and wrong_ref["plan_partial"] == pytest.approx(1 / 3)

    # out of order: only one call can be aligned in order
    swapped = scores([call("hotels", "var1", checkIn="2024-08-15"), call("search", "var2", query="London")])
    assert swapped["plan_names"] == 1.0 and swapped["plan_partial"] == 0.5 and swapped["plan_exact"] == 0.0

    wrong = scores([call("weather", "var1", city="London")])
    assert wrong == {"plan_exact": 0.0, "plan_names": 0.0, "plan_partial": 0.0, "plan_args": 0.0, "plan_deps": 0.0,
                     "plan_calls": 1.0, "plan_gold_calls": 2.0, "plan_valid": 1.0}
    assert scores([])["plan_args"] == 0.0 and scores(["junk", {"no": "name"}])["plan_calls"] == 0.0


def test_plan_scorer_values_references_inside_text_and_plans_without_dependencies():
    gold = [call("rate", "var1", base="USD"), call("convert", "var2", amount="5 * $var1.rate$", adults=2)]
    same = [call("rate", "r", base="usd"), call("convert", "c", amount="5 *  $r.Rate$", adults="2")]
    assert match_plan(same, gold).exact  # numeric strings equal numbers; references inside text follow labels
    other = [call("rate", "r", base="usd"), call("convert", "c", amount="6 * $r.rate$", adults=2)]
    assert match_plan(other, gold).deps_f1 == 1.0 and not match_plan(other, gold).exact
    flat = [call("search", "var1", query="x")]
    item = EvalItem(id="f", input="x", expected={"nestful": {"calls": flat}})
    assert "plan_deps" not in resolve_scorer("plan")(item, {"calls": flat})  # no references on either side
    assert resolve_scorer("plan")(EvalItem(id="n", input="x"), {"calls": flat}) == {}  # not a NESTFUL item


def test_plan_task_asks_under_a_schema_of_the_offered_tools_and_scores_unusable_json_as_empty(tmp_path):
    items = load_nestful("executable", limit=2, distractors=1)
    gold = items[0].expected["nestful"]["calls"]
    model = ScriptedChatModel.of([{"calls": gold}, "not json at all"])
    suite = Suite(name="plans", dataset=DatasetSpec(kind="nestful", limit=2), task=TaskSpec(kind="plan"),
                  scorers=["plan", "plan_counts", "usage"])
    records = run_suite(suite, PlanTask(lambda cell: model, costs={"scripted": (1.0, 2.0)}, max_calls=6), items,
                        tmp_path / "r.jsonl", progress=False)
    first, second = records
    assert first["passed"] and first["metrics"]["plan_exact"] == 1.0 and first["error"] is None
    assert first["metrics"]["input_tokens"] == 10 and first["metrics"]["cost"] == pytest.approx(0.01 + 0.01)
    assert second["error"] is None and not second["passed"] and "not JSON" in second["output"]["output_error"]
    assert second["metrics"]["plan_valid"] == 0.0 and second["metrics"]["plan_names"] == 0.0
    fmt = model.seen_kwargs[0]["response_format"]["json_schema"]["schema"]
    tools = items[0].expected["nestful"]["tools"]
    offered = [t["name"] for t in tools]
    assert fmt == plan_schema(tools, 6)
    variants = fmt["properties"]["calls"]["items"]["anyOf"]  # one per offered tool, with its own parameters
    assert [v["properties"]["name"]["enum"] for v in variants] == [[name] for name in offered]
    for variant, tool in zip(variants, tools, strict=True):
        arguments = variant["properties"]["arguments"]
        assert set(arguments["properties"]) == set(tool["parameters"]) and not arguments["additionalProperties"]
        assert set(arguments["required"]) == {k for k, v in tool["parameters"].items() if v.endswith("*")}
    prompt = model.seen[0][0].content
    assert all(name in prompt for name in offered) and "$var1.field$" in prompt
    metrics, passed = score_item(suite.resolved_scorers(), items[1], {"calls": gold})
    assert not passed and metrics["plan_exact"] == 0.0  # the first item's plan does not answer the second
