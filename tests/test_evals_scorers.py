"""Scorers on hand-made cases with known answers: right, partial and wrong outputs."""

from __future__ import annotations

import pytest

from tierflow.evals.datasets import EvalItem
from tierflow.evals.errors import SuiteError
from tierflow.evals.scorers import (
    pass_hat_k,
    resolve_scorer,
    score_contains,
    score_intent,
    score_item,
    score_json_schema,
    score_regex,
    score_tool_calls,
    score_usage,
)


def item(**expected) -> EvalItem:
    return EvalItem(id="x", input="question", expected=expected)


def test_intent_scores_accuracy_and_splits_in_scope_from_out_of_scope():
    assert score_intent(item(label="plan"), {"label": "plan"}) == {"accuracy": 1.0, "in_scope_accuracy": 1.0}
    assert score_intent(item(label="plan"), {"label": "write"}) == {"accuracy": 0.0, "in_scope_accuracy": 0.0}
    # an out-of-scope flag means "oos" whatever the best in-scope label was
    assert score_intent(item(label="oos"), {"label": "write", "out_of_scope": True}) == {"accuracy": 1.0,
                                                                                         "oos_recall": 1.0}
    assert score_intent(item(label="oos"), {"label": "write"}) == {"accuracy": 0.0, "oos_recall": 0.0}
    assert score_intent(item(contains="x"), {"label": "write"}) == {}  # not an intent item


def test_answer_checks_give_partial_credit_where_it_makes_sense():
    assert score_contains(item(contains=["391", "seventeen"]), {"answer": "It is 391."}) == {"answer_contains": 0.5}
    assert score_contains(item(contains="LIGHT"), {"answer": "blue light scatters"}) == {"answer_contains": 1.0}
    assert score_regex(item(regex=r"3\.1\d"), {"answer": "about 3.11 miles"}) == {"answer_regex": 1.0}
    assert score_regex(item(regex=r"^\d+$"), {"answer": "391 apples"}) == {"answer_regex": 0.0}
    schema = {"type": "object", "required": ["title"]}
    assert score_json_schema(item(json_schema=schema), {"answer": '{"title": "Rain"}'}) == {"answer_json_schema": 1.0}
    assert score_json_schema(item(json_schema=schema), {"answer": '{"name": "Rain"}'}) == {"answer_json_schema": 0.0}
    assert score_json_schema(item(json_schema=schema), {"answer": "Rain, a poem"}) == {"answer_json_schema": 0.0}


def test_broken_expectations_are_suite_errors_naming_the_item():
    with pytest.raises(SuiteError, match=r"item x: expected\.regex"):
        score_regex(item(regex="(unclosed"), {"answer": ""})
    with pytest.raises(SuiteError, match=r"item x: expected\.json_schema"):
        score_json_schema(item(json_schema={"type": "no-such-type"}), {"answer": "{}"})


def test_tool_calls_count_each_expected_call_once_and_match_argument_subsets():
    calls = [{"tool": "calculate", "args": {"expression": "17*23"}},
             {"tool": "convert_units", "args": {"value": "5", "from_unit": "km", "to_unit": "mi"}, "error": True}]
    expected = ["calculate", {"tool": "calculate", "args": {"expression": "17*23"}}]
    assert score_tool_calls(item(tool_calls=expected), {"tool_calls": calls}) == {"tool_recall": 0.5}
    # a failed call does not count as made
    assert score_tool_calls(item(tool_calls=["convert_units"]), {"tool_calls": calls}) == {"tool_recall": 0.0}
    wrong_args = [{"tool": "calculate", "args": {"expression": "1+1"}}]
    assert score_tool_calls(item(tool_calls=expected[1:]), {"tool_calls": wrong_args}) == {"tool_recall": 0.0}
    assert score_tool_calls(item(tool_calls=[]), {"tool_calls": []}) == {"tool_recall": 1.0}


def test_usage_sums_tokens_and_reports_the_tier_mix():
    calls = [{"tier": "mobile", "input_tokens": 10, "output_tokens": 4}, {"tier": "cloud", "input_tokens": 30,
             "output_tokens": 6}, {"tier": "mobile", "input_tokens": 5, "output_tokens": 1}]
    usage = score_usage(item(), {"model_calls": calls, "latency_ms": 12.5, "cost": 0.25})
    assert usage["input_tokens"] == 45 and usage["output_tokens"] == 11 and usage["model_calls"] == 3
    assert usage["tier_share.mobile"] == pytest.approx(2 / 3) and usage["tier_share.cloud"] == pytest.approx(1 / 3)
    assert usage["latency_ms"] == 12.5 and usage["cost"] == 0.25


def test_an_item_passes_only_when_every_quality_metric_is_perfect():
    scorers = [resolve_scorer("contains"), resolve_scorer("regex"), resolve_scorer("usage")]
    case = item(contains=["391"], regex="391")
    assert score_item(scorers, case, {"answer": "391", "latency_ms": 99999})[1] is True  # usage never fails
    metrics, passed = score_item(scorers, case, {"answer": "three hundred ninety-one"})
    assert passed is False and metrics["answer_contains"] == 0.0


def test_pass_hat_k_demands_every_repeat():
    assert pass_hat_k({"a": [True, True, True], "b": [True, False, True]}) == 0.5
    assert pass_hat_k({"a": [False], "b": [False]}) == 0.0
    assert pass_hat_k({}) == 0.0


def answer_length(case: EvalItem, output: dict) -> float:
    """A custom scorer: 1 when the answer is at most 10 characters."""
    return float(len(output.get("answer", "")) <= 10)


def test_custom_scorers_are_imported_by_module_path_and_unknown_names_fail():
    custom = resolve_scorer("tests.test_evals_scorers:answer_length")
    assert custom(item(), {"answer": "short"}) == {"answer_length": 1.0}
    assert custom(item(), {"answer": "a much longer answer"}) == {"answer_length": 0.0}
    with pytest.raises(SuiteError, match="unknown scorer 'bleu'"):
        resolve_scorer("bleu")
    with pytest.raises(SuiteError, match="cannot be imported"):
        resolve_scorer("tests.test_evals_scorers:nothing_here")
