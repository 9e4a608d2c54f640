"""BFCL from the installed bfcl-eval package: exact categories, every AST category loaded and scored by BFCL's rules.

No model runs here: answers are written by hand or built from the possible answers, and the task is driven by a
scripted chat model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.scripted import ScriptedChatModel
from tierflow.evals.benchmarks.bfcl import (
    AST_CATEGORIES,
    FunctionCallTask,
    calls_schema,
    category_files,
    check_categories,
    judge,
    load_bfcl,
    parse_calls,
    reference_calls,
    render_calls,
)
from tierflow.evals.datasets import EvalItem
from tierflow.evals.errors import DatasetError
from tierflow.evals.runner import run_suite
from tierflow.evals.scorers import resolve_scorer, score_item
from tierflow.evals.suite import DatasetSpec, Suite, TaskSpec

BFCL_AST = resolve_scorer("bfcl_ast")
ERRORS = resolve_scorer("bfcl_ast_errors")


def scores(item: EvalItem, calls: list[dict]) -> dict[str, float]:
    return {**BFCL_AST(item, {"calls": calls}), **ERRORS(item, {"calls": calls})}


def call(name: str, **arguments) -> dict:
    return {"name": name, "arguments": arguments}


# -- categories and files ---------------------------------------------------------------------------------------

def test_categories_match_exactly_and_unknown_ones_list_the_valid(tmp_path):
    for name in ("multiple", "parallel", "parallel_multiple", "live_multiple", "simple_python", "live_simple"):
        questions, answers = category_files(name)
        assert questions.name == f"BFCL_v4_{name}.json" and answers is not None and answers.name == questions.name
    assert category_files("irrelevance")[1] is None  # no possible answers: the right reply is no call

    # newest version wins, and "multiple" never opens parallel_multiple (nor v3's file)
    for file in ("BFCL_v3_multiple.json", "BFCL_v4_multiple.json", "BFCL_v4_parallel_multiple.json"):
        (tmp_path / file).write_text("{}\n")
    assert category_files("multiple", tmp_path)[0].name == "BFCL_v4_multiple.json"

    hint = r"\(did you mean simple_python or simple_java or simple_javascript or live_simple\?\)"
    with pytest.raises(ValueError, match=r"unknown BFCL category 'simple' " + hint) as err:
        check_categories("simple")
    assert "valid: simple_python, simple_java, simple_javascript, multiple, parallel" in str(err.value)
    with pytest.raises(ValueError, match="'multi_turn_base' is not a single-turn AST category"):
        check_categories(["live_simple", "multi_turn_base"])
    with pytest.raises(DatasetError, match="unknown BFCL category 'exec_simple'"):
        load_bfcl("exec_simple")


def test_every_ast_category_loads_from_the_installed_package():
    for name, rule in AST_CATEGORIES.items():
        items = load_bfcl(name, limit=5)
        assert len(items) == 5 and all(i.group == name for i in items), name
        bfcl = items[0].expected["bfcl"]
        assert bfcl["rule"] == rule and bfcl["category"] == name and bfcl["messages"][-1]["role"] == "user"
        assert bool(bfcl["ground_truth"]) == (rule not in ("irrelevance", "relevance")), name
    assert load_bfcl("simple_java", limit=1)[0].expected["bfcl"]["language"] == "java"
    # several categories are interleaved, so a limit keeps each of them
    mixed = load_bfcl(["parallel", "parallel_multiple"], limit=4)
    assert [i.group for i in mixed] == ["parallel", "parallel_multiple"] * 2


def test_invalid_rows_are_skipped_and_counted_and_limit_comes_first():
    # bfcl-eval 2026.3.23's live_simple: two answers give a parameter an empty list of acceptable values
    items = load_bfcl("live_simple")
    assert len(items) + len(items.skipped) == 258 and len(items.skipped) == 2
    assert all("has no acceptable values" in str(e) and e.path.parent.name == "possible_answer"
               for e in items.skipped)
    # the first 30 rows hold no bad one: strict loading works on them, and nothing is skipped
    first = load_bfcl("live_simple", limit=30, skip_invalid=False)
    assert len(first) == 30 and first.skipped == []
    with pytest.raises(DatasetError, match="'auto_loan_payment_start' has no acceptable values") as err:
        load_bfcl("live_simple", skip_invalid=False)
    assert err.value.line == 107


def write(path: Path, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")


AREA_FN = {"name": "area", "parameters": {"type": "dict", "properties": {"base": {"type": "integer"}},
                                          "required": ["base"]}}


def question(qid: str, functions: list | None = None) -> dict:
    return {"id": qid, "question": [[{"role": "user", "content": "Area of base 10?"}]],
            "function": [AREA_FN] if functions is None else functions}


def answer(qid: str, truth: list | None = None) -> dict:
    return {"id": qid, "ground_truth": [{"area": {"base": [10]}}] if truth is None else truth}


def test_bad_rows_name_file_and_line_or_are_skipped(tmp_path):
    cases = {
        "invalid JSON": ("{not json", answer("b")),
        "offers exactly one function": (question("b", [AREA_FN, {**AREA_FN, "name": "other"}]), answer("b")),
        "has no row in BFCL_v4_simple_python.json": (question("b"), answer("zzz")),
        "calls 'volume', which the question does not offer": (question("b"), answer("b", [{"volume": {"x": [1]}}])),
        "'base' has no acceptable values": (question("b"), answer("b", [{"area": {"base": []}}])),
        "'area' requires 'base', which the answer gives no value for": (question("b"), answer("b", [{"area": {}}])),
        "[{function_name: {param: [acceptable values]}}, ...]": (question("b"), {"id": "b", "ground_truth": "x"}),
    }
    for number, (message, (bad_question, bad_answer)) in enumerate(cases.items()):
        data = tmp_path / str(number)
        write(data / "BFCL_v4_simple_python.json", [question("a"), bad_question])
        write(data / "possible_answer" / "BFCL_v4_simple_python.json", [answer("a"), bad_answer])
        with pytest.raises(DatasetError) as err:
            load_bfcl("simple_python", data_dir=data, skip_invalid=False)
        assert message in str(err.value) and err.value.line == 2, (message, str(err.value))
        kept = load_bfcl("simple_python", data_dir=data)  # the default skips the bad row and says why
        assert [i.id for i in kept] == ["a"] and message in str(kept.skipped[0])
        assert [i.id for i in load_bfcl("simple_python", data_dir=data, limit=1, skip_invalid=False)] == ["a"]


# -- scoring: BFCL's rules ----------------------------------------------------------------------------------------

def first_item(category: str) -> EvalItem:
    return load_bfcl(category, limit=1)[0]


def wrong_answer(item: EvalItem) -> list[dict]:
    """A reply each rule rejects: a call where none belongs, none where one does, one call short, or a bad value."""
    bfcl = item.expected["bfcl"]
    right = reference_calls(bfcl)
    if bfcl["rule"] == "irrelevance":
        return [call(bfcl["functions"][0]["name"])]
    if bfcl["rule"] == "relevance":
        return []
    if bfcl["rule"] == "parallel":
        return right[:-1]
    (name, args), = bfcl["ground_truth"][0].items()
    param = next(p for p, options in args.items() if "" not in options)
    return [call(name, **{**right[0]["arguments"], param: "certainly not this"})]


@pytest.mark.parametrize("category", list(AST_CATEGORIES))
def test_a_known_right_and_a_known_wrong_answer_per_category(category):
    item = first_item(category)
    right, wrong = reference_calls(item.expected["bfcl"]), wrong_answer(item)
    assert BFCL_AST(item, {"calls": right})["bfcl_ast"] == 1.0, (category, right)
    assert BFCL_AST(item, {"calls": wrong})["bfcl_ast"] == 0.0, (category, wrong)
    # the same replies as BFCL's own text form, [f(a=1), g(b=2)], score the same
    assert BFCL_AST(item, {"call": render_calls(right)})["bfcl_ast"] == 1.0


def test_every_possible_answer_satisfies_its_own_rule():
    """Each kept row has a reply BFCL's rules accept; rows no reply could pass are the invalid ones, skipped."""
    failed, skipped = [], {}
    for category in AST_CATEGORIES:
        items = load_bfcl(category)
        skipped[category] = len(items.skipped)
        for item in items:
            bfcl = item.expected["bfcl"]
            if not judge(bfcl, [(c["name"], c["arguments"]) for c in reference_calls(bfcl)]).passed:
                failed.append(item.id)
    assert failed == []
    # bfcl-eval 2026.3.23: simple_java_64's answer is a plain dict (BFCL reads it character by character);
    # live_simple: two empty answer lists; live_multiple: two undeclared parameters, one required one left out
    assert {k: v for k, v in skipped.items() if v} == {"simple_java": 1, "live_simple": 2, "live_multiple": 3}


def rule_item(rule: str, truth: list, functions: list) -> EvalItem:
    return EvalItem(id=rule, input="q", expected={"bfcl": {"rule": rule, "language": "python", "functions": functions,
                                                           "ground_truth": truth}})


WEATHER = {"name": "weather", "parameters": {"type": "dict", "properties": {
    "city": {"type": "string"}, "days": {"type": "integer"}, "scale": {"type": "float"},
    "units": {"type": "string"}}, "required": ["city"]}}
TIME = {"name": "time", "parameters": {"type": "dict", "properties": {"city": {"type": "string"}}}}


def test_rules_by_example():
    # multiple: exactly one call, of the right function among those offered
    multiple = rule_item("multiple", [{"time": {"city": ["Paris"]}}], [WEATHER, TIME])
    assert scores(multiple, [call("time", city="paris")])["bfcl_ast"] == 1.0  # strings ignore case and spaces
    wrong_function = scores(multiple, [call("weather", city="Paris")])
    assert wrong_function == {"bfcl_ast": 0.0, "name_match": 0.0, "args_match": 0.0, "call_parsed": 1.0,
                              "calls_made": 1.0, "args_missing": 1.0, "args_extra": 1.0, "args_wrong": 0.0}
    assert scores(multiple, [call("time", city="Paris")] * 2)["bfcl_ast"] == 0.0  # one call, not two

    # parallel: the expected set of calls in any order, nothing more, nothing less
    truth = [{"weather": {"city": ["Paris"], "days": [3], "units": ["metric", ""]}},
             {"weather": {"city": ["Rome"], "days": [3], "units": ["metric", ""]}}]
    parallel = rule_item("parallel", truth, [WEATHER])
    reversed_order = [call("weather", city="Rome", days=3), call("weather", city="Paris", days=3, units="Metric")]
    assert scores(parallel, reversed_order)["bfcl_ast"] == 1.0  # "units" is optional ("" among its answers)
    one_short = scores(parallel, reversed_order[:1])
    assert one_short["bfcl_ast"] == 0.0 and one_short["args_match"] == 0.5 and one_short["name_match"] == 0.0
    one_wrong = scores(parallel, [call("weather", city="Rome", days=4), call("weather", city="Paris", days=3)])
    assert one_wrong["bfcl_ast"] == 0.0 and one_wrong["args_wrong"] == 1.0 and one_wrong["name_match"] == 1.0

    # types as BFCL checks them: an int is a fine float, a float is not an int, a bool is not a number
    typed = rule_item("simple", [{"weather": {"city": ["Oslo"], "scale": [2.0], "days": [1, ""]}}], [WEATHER])
    assert scores(typed, [call("weather", city="Oslo", scale=2)])["bfcl_ast"] == 1.0
    assert scores(typed, [call("weather", city="Oslo", scale=2.0, days=1.0)])["bfcl_ast"] == 0.0
    assert scores(typed, [call("weather", city="Oslo", scale=True)])["bfcl_ast"] == 0.0
    assert scores(typed, [call("weather", city="Oslo", scale=2.0, colour="red")])["args_extra"] == 1.0

    # irrelevance: no call is right; relevance: some call is right
    irrelevant = rule_item("irrelevance", [], [TIME])
    assert scores(irrelevant, [])["bfcl_ast"] == 1.0 and scores(irrelevant, [call("time")])["bfcl_ast"] == 0.0
    assert "name_match" not in scores(irrelevant, [])  # nothing to name: only the verdict
    relevant = rule_item("relevance", [], [TIME])
    assert scores(relevant, [call("time", city="x")])["bfcl_ast"] == 1.0 and scores(relevant, [])["bfcl_ast"] == 0.0
    # a reply that was not usable JSON fails every rule, irrelevance included (it was a call cut off)
    assert BFCL_AST(irrelevant, {"calls": [], "output_error": "not JSON"}) == {"bfcl_ast": 0.0}


def test_java_and_javascript_arguments_may_come_as_source_text():
    item = first_item("simple_java")  # GeometryPresentation.createPresentation(controller=mapController, ...)
    java = {**item.expected["bfcl"], "ground_truth": [{"f": {"flag": [True], "count": [5], "size": [2.5]}}],
            "functions": [{"name": "f", "parameters": {"type": "dict", "properties": {
                "flag": {"type": "boolean"}, "count": {"type": "long"}, "size": {"type": "float"}}}}]}
    assert judge(java, [("f", {"flag": "true", "count": "5L", "size": "2.5f"})]).passed
    assert judge(java, [("f", {"flag": True, "count": 5, "size": 2.5})]).passed
    assert not judge(java, [("f", {"flag": "yes", "count": 5, "size": 2.5})]).passed


def test_parse_calls_reads_bfcl_text_without_evaluating_it():
    assert parse_calls("[math.factorial(number=5), f(x='a')]") == [("math.factorial", {"number": 5}),
                                                                   ("f", {"x": "a"})]
    assert parse_calls("") == []
    item = rule_item("simple", [{"time": {"city": ["Paris"]}}], [TIME])
    for junk in ("the time is 5", "time('Paris')", "time(city=__import__('os'))"):
        assert scores(item, [])["bfcl_ast"] == 0.0
        assert ERRORS(item, {"call": junk})["call_parsed"] == 0.0, junk
    metrics, passed = score_item([BFCL_AST, ERRORS], item, {"call": "time(city='Rome')"})
    assert not passed and metrics["args_wrong"] == 1.0
    assert BFCL_AST(EvalItem(id="x", input="q"), {"call": "f()"}) == {}  # not a BFCL item


# -- the task ----------------------------------------------------------------------------------------------------

def test_the_reply_schema_offers_each_function_and_any_number_of_calls():
    schema = calls_schema([WEATHER, TIME], max_calls=4)["properties"]["calls"]
    assert (schema["minItems"], schema["maxItems"]) == (0, 4)
    weather, time = schema["items"]["anyOf"]
    assert weather["properties"]["name"]["enum"] == ["weather"] and time["properties"]["name"]["enum"] == ["time"]
    arguments = weather["properties"]["arguments"]
    assert arguments["required"] == ["city"] and arguments["additionalProperties"] is False
    assert arguments["properties"]["scale"] == {"type": "number"}  # BFCL "float" as JSON Schema
    java = calls_schema(first_item("simple_java").expected["bfcl"]["functions"], "java")
    controller = java["properties"]["calls"]["items"]["properties"]["arguments"]["properties"]["controller"]
    assert controller == {"type": "string"}  # Java "any": a variable name or source text


def test_function_call_task_with_a_scripted_model(tmp_path):
    items = load_bfcl(["parallel", "irrelevance", "live_irrelevance"], limit=3)
    parallel = items[0]
    no_functions = next(i for i in load_bfcl("live_irrelevance") if not i.expected["bfcl"]["functions"])
    items = [parallel, items[1], no_functions, load_bfcl("multiple", limit=1)[0]]
    model = ScriptedChatModel.of([
        {"calls": reference_calls(parallel.expected["bfcl"])[::-1]},  # right calls, other order
        {"calls": []},  # irrelevance: no call, right
        # (no_functions: nothing to call, so the model is not asked)
        '{"calls": [{"name": "trunc',  # cut off mid-JSON: scored as a failure, not dropped
    ])
    suite = Suite(name="bfcl-mixed", dataset=DatasetSpec(kind="bfcl"), task=TaskSpec(kind="function_call"),
                  scorers=["bfcl_ast", "bfcl_ast_errors", "usage"])
    records = run_suite(suite, FunctionCallTask(lambda cell: model, costs={"scripted": (2.0, 4.0)}), items,
                        tmp_path / "results.jsonl", progress=False)
    assert [r["passed"] for r in records] == [True, True, True, False]
    assert [r["group"] for r in records] == ["parallel", "irrelevance", "live_irrelevance", "multiple"]
    assert records[0]["output"]["call"].startswith("[spotify.play(artist='Maroon 5', duration=15), spotify.play(")
    assert records[2]["output"]["model_calls"] == [] and len(model.seen) == 3
    cut = records[3]
    assert cut["error"] is None and cut["metrics"]["call_parsed"] == 0.0 and "not JSON" in cut["output"]["output_error"]
    # BFCL's prompt: the functions in the system message, then the question
    system, user = model.seen[0]
    assert "make no call" in system.content and '"name": "spotify.play"' in system.content
    assert user.content == parallel.input
    schema = model.seen_kwargs[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["calls"]["maxItems"] == 8
    assert records[0]["metrics"]["cost"] == pytest.approx(10 / 1000 * 2.0 + 5 / 1000 * 4.0)
