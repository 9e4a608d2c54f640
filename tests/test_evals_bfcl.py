"""BFCL simple_python from the installed bfcl-eval package, and the AST-match scorer on known cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.scripted import ScriptedChatModel
from tierflow.evals.benchmarks.bfcl import FunctionCallTask, load_bfcl, match_call, parse_call, render_call
from tierflow.evals.datasets import EvalItem
from tierflow.evals.errors import DatasetError
from tierflow.evals.runner import run_suite
from tierflow.evals.scorers import resolve_scorer, score_item
from tierflow.evals.suite import DatasetSpec, Suite, TaskSpec

AREA = {"calculate_triangle_area": {"base": [10], "height": [5], "unit": ["units", ""]}}


def bfcl_item(truth=AREA) -> EvalItem:
    return EvalItem(id="t", input="area?", expected={"bfcl": {"ground_truth": truth}})


def test_loader_reads_simple_python_from_the_installed_package():
    items = load_bfcl("simple_python")
    assert len(items) > 0 and len({i.id for i in items}) == len(items)
    first = items[0].expected["bfcl"]
    assert items[0].input and first["function"]["name"] in first["ground_truth"]
    # each answer's first acceptable values, rendered as a call, match it exactly (scalar-valued answers)
    for item in items:
        (name, args), = item.expected["bfcl"]["ground_truth"].items()
        if any(isinstance(v[0], dict) for v in args.values()):
            continue  # nested answers: covered by the hand-made case below
        chosen = {k: v[0] for k, v in args.items() if v[0] != ""}
        assert match_call(render_call(name, chosen), {name: args}).exact, item.id


def write(path: Path, rows: list) -> None:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")


def tiny_category(tmp_path: Path, questions: list, answers: list) -> Path:
    (tmp_path / "possible_answer").mkdir(parents=True)
    write(tmp_path / "BFCL_v3_simple_python.json", questions)
    write(tmp_path / "possible_answer" / "BFCL_v3_simple_python.json", answers)
    return tmp_path


def question(qid: str) -> dict:
    return {"id": qid, "question": [[{"role": "user", "content": "Area of base 10, height 5?"}]],
            "function": [{"name": "calculate_triangle_area",
                          "parameters": {"type": "dict", "properties": {"base": {"type": "integer"}}}}]}


def answer(qid: str) -> dict:
    return {"id": qid, "ground_truth": [AREA]}


def test_bad_rows_are_reported_by_file_and_line(tmp_path):
    data = tiny_category(tmp_path, [question("a"), "", "{not json"], [answer("a")])
    with pytest.raises(DatasetError) as err:
        load_bfcl("simple_python", data_dir=data)
    assert err.value.line == 3 and err.value.path.name == "BFCL_v3_simple_python.json"
    assert "invalid JSON" in str(err.value)

    other = tmp_path / "other"
    other.mkdir()
    data = tiny_category(other, [question("a"), question("b")], [answer("a")])
    with pytest.raises(DatasetError, match="'b' has no row") as err:
        load_bfcl("simple_python", data_dir=data)
    assert err.value.line == 2

    third = tmp_path / "third"
    third.mkdir()
    data = tiny_category(third, [question("a")], [answer("a"), {"id": "b", "ground_truth": [{"f": {"x": []}}]}])
    with pytest.raises(DatasetError, match="non-empty list of values") as err:
        load_bfcl("simple_python", data_dir=data)
    assert err.value.line == 2 and err.value.path.parent.name == "possible_answer"

    with pytest.raises(DatasetError, match="no question file"):
        load_bfcl("simple_cobol", data_dir=data)
    assert [i.id for i in load_bfcl("simple_python", data_dir=tiny_category(tmp_path / "ok", [question("a")],
                                                                              [answer("a")]))] == ["a"]


def test_ast_scorer_on_known_cases():
    bfcl_ast = resolve_scorer("bfcl_ast")
    errors = resolve_scorer("bfcl_ast_errors")

    def scores(call: str) -> dict[str, float]:
        return {**bfcl_ast(bfcl_item(), {"call": call}), **errors(bfcl_item(), {"call": call})}

    exact = scores("calculate_triangle_area(base=10, height=5, unit='Units')")  # strings compare as BFCL does
    assert exact == {"bfcl_ast": 1.0, "name_match": 1.0, "args_match": 1.0, "call_parsed": 1.0,
                     "args_missing": 0.0, "args_extra": 0.0, "args_wrong": 0.0}
    assert scores("calculate_triangle_area(base=10.0, height=5)")["bfcl_ast"] == 1.0  # optional omitted, 10.0 == 10
    wrong = scores("calculate_triangle_area(base=12, height=5)")
    assert wrong["bfcl_ast"] == 0.0 and wrong["args_wrong"] == 1.0 and wrong["args_match"] == pytest.approx(2 / 3)
    extra = scores("calculate_triangle_area(base=10, height=5, colour='red')")
    assert extra["args_extra"] == 1.0 and extra["args_match"] == pytest.approx(3 / 4) and extra["bfcl_ast"] == 0.0
    missing = scores("calculate_triangle_area(base=10)")
    assert missing["args_missing"] == 1.0 and missing["bfcl_ast"] == 0.0
    other = scores("calculate_circle_area(radius=10)")
    assert other["name_match"] == 0.0 and other["args_match"] == 0.0 and other["call_parsed"] == 1.0
    for junk in ("the area is 25", "calculate_triangle_area(10, 5)", "calculate_triangle_area(base=__import__('os'))"):
        assert scores(junk)["call_parsed"] == 0.0 and scores(junk)["bfcl_ast"] == 0.0, junk
    wrong_call = {"call": "calculate_triangle_area(base=12, height=5)"}
    metrics, passed = score_item([bfcl_ast, errors], bfcl_item(), wrong_call)
    assert not passed and metrics["args_wrong"] == 1.0
    assert bfcl_ast(EvalItem(id="x", input="q"), {"call": "f()"}) == {}  # not a BFCL item
    nested = {"update_user_info": {"user_id": [7], "update_info": [{"name": ["John Doe"], "email": ["", "a@b.c"]}]}}
    assert match_call("update_user_info(user_id=7, update_info={'name': 'john doe'})", nested).exact
    assert match_call("update_user_info(user_id=7, update_info={'name': 'Jane'})", nested).wrong == ["update_info"]
    assert parse_call("[math.factorial(number=5)]") == ("math.factorial", {"number": 5})


def test_function_call_task_runs_two_items_with_a_scripted_model(tmp_path):
    items = load_bfcl("simple_python", limit=2)
    replies = []
    for item in items:  # the first item gets its own answer back, the second a wrong function name
        (name, args), = item.expected["bfcl"]["ground_truth"].items()
        replies.append({"name": name, "arguments": {k: v[0] for k, v in args.items() if v[0] != ""}})
    replies[1]["name"] = "not_" + replies[1]["name"]
    replies.append("{\"name\": \"truncated")  # a third item whose reply is cut off mid-JSON
    items.append(load_bfcl("simple_python", limit=3)[2])
    model = ScriptedChatModel.of(replies)
    suite = Suite(name="bfcl-two", dataset=DatasetSpec(kind="bfcl", limit=3), task=TaskSpec(kind="function_call"),
                  scorers=["bfcl_ast", "bfcl_ast_errors", "usage"])
    records = run_suite(suite, FunctionCallTask(lambda cell: model, costs={"scripted": (2.0, 4.0)}), items,
                        tmp_path / "results.jsonl", progress=False)
    by_item = {r["item"]: r for r in records}
    assert [by_item[i.id]["passed"] for i in items] == [True, False, False]
    assert by_item[items[1].id]["metrics"]["name_match"] == 0.0
    # unusable JSON is scored as an unparsed call, not dropped as an error
    cut = by_item[items[2].id]
    assert cut["error"] is None and cut["metrics"]["call_parsed"] == 0.0 and cut["metrics"]["bfcl_ast"] == 0.0
    assert "not JSON" in cut["output"]["output_error"]
    # tokens and cost of every call, per item: 10 in / 5 out at 2 and 4 per 1k
    assert all(r["metrics"]["input_tokens"] == 10 and r["metrics"]["tier_share.scripted"] == 1.0 for r in records)
    assert by_item[items[0].id]["metrics"]["cost"] == pytest.approx(10 / 1000 * 2.0 + 5 / 1000 * 4.0)
    fmt = model.seen_kwargs[0]["response_format"]["json_schema"]["schema"]
    assert fmt["properties"]["name"]["enum"] == [items[0].expected["bfcl"]["function"]["name"]]
    assert fmt["properties"]["arguments"]["type"] == "object"  # BFCL "dict" became JSON Schema "object"
