"""Grounded tool arguments: numbers come only from the context, and answers are held to the tools."""

import re

import pytest

from tierflow.agents.worker import action_schema
from tierflow.tools.grounding import (
    claimed_numbers,
    expression_pattern,
    ground_schema,
    mentioned,
    numbers_in,
    ungrounded,
)
from tierflow.tools.native import native_tools
from tierflow.tools.registry import ToolRegistry, args_json_schema


@pytest.mark.parametrize(("text", "numbers"), [
    ("What is 17 times 23?", ["17", "23"]),
    ("how much is 20 percent of 85", ["20", "85", "100"]),
    ("add 1,024 and 2.50", ["1024", "2.5"]),
    ("what's seven squared minus 9", ["9", "7", "2"]),
    ("half of 300", ["300", "2", "0.5"]),
    ("no numbers here", []),
])
def test_numbers_in_reads_digits_and_number_words(text, numbers):
    assert numbers_in(text) == numbers


def test_the_expression_pattern_admits_only_context_numbers():
    pattern = re.compile(expression_pattern(["17", "23", "100"]))
    for ok in ["17*23", "17 * 23", "(17+23)/100", "-17*23", "17**23", "17^23"]:
        assert pattern.fullmatch(ok), ok
    for bad in ["17*24", "1723", "17*", "x*17", "17*23.0", "", "391", "17", "17% 23"]:
        assert not pattern.fullmatch(bad), bad


def test_a_longer_literal_is_not_shadowed_by_its_prefix():
    pattern = re.compile(expression_pattern(["1", "17"]))
    assert pattern.fullmatch("17+1") and not pattern.fullmatch("171")


def test_ground_schema_rewrites_declared_arguments_only():
    tools = ToolRegistry(native_tools())
    schema = args_json_schema(tools.get("calculator"))
    grounded = ground_schema(schema, ["17", "23"])
    prop = grounded["properties"]["expression"]
    assert "x-tierflow-grounded" not in prop and "x-tierflow-constants" not in prop
    assert re.fullmatch(prop["pattern"], "17*23") and not re.fullmatch(prop["pattern"], "17*391")
    # no 100 unless the request says "percent" or "%": a free 100 lured the model into "4*90/100" for 90/4
    assert not re.fullmatch(prop["pattern"], "17/100")
    assert re.fullmatch(ground_schema(schema, numbers_in("17 percent of 23"))["properties"]["expression"]["pattern"],
                        "17/100*23")
    declared = {"type": "object", "properties": {"minutes": {"type": "string", "x-tierflow-grounded": "expression",
                                                             "x-tierflow-constants": ["60"]}}}
    assert re.fullmatch(ground_schema(declared, ["3"])["properties"]["minutes"]["pattern"], "3*60")
    units = ground_schema(args_json_schema(tools.get("convert_units")), ["5"], "convert 5 km to miles")
    assert [(b["properties"]["value"]["enum"], b["properties"]["from_unit"]["const"], b["properties"]["to_unit"][
        "const"]) for b in units["anyOf"]] == [(["5"], "km", "miles"), (["5"], "miles", "km")]


def test_a_grounded_tool_without_numbers_to_use_leaves_the_action_schema():
    tools = ToolRegistry(native_tools())
    schema = action_schema(tools, ["convert_units", "word_count"], context_numbers=[])
    offered = [b["properties"].get("tool", {}).get("const") for b in schema["anyOf"]]
    assert offered == ["word_count", None]  # convert_units needs a number; the last branch is finish


def test_ungrounded_finds_invented_numbers_but_not_list_markers_or_rounding():
    sources = ["What is 17 times 23?", "391"]
    assert ungrounded("17 times 23 is 391.", sources) == []
    assert ungrounded("The answer is 419.", sources) == ["419"]
    assert ungrounded("1. Multiply\n2. Report 391", sources) == []
    assert ungrounded("about 3.11 miles", ["5 km", "3.10685596118667 mi"]) == []
    assert claimed_numbers("It costs 1,000 dollars") == ["1000"]


def test_an_unknown_grounding_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown x-tierflow-grounded kind 'digits'"):
        ground_schema({"properties": {"n": {"type": "string", "x-tierflow-grounded": "digits"}}}, ["1"])


@pytest.mark.parametrize(("text", "units"), [
    ("convert 8 km to miles", ["km", "miles"]),
    ("how many grams are in 2.5 kg", ["grams", "kg"]),  # 'in' the preposition is not inches
    ("it's 12 in long; in cm?", ["cm", "in"]),  # after a number it is
    ("speed of 100 km/h in mph", ["km/h", "mph"]),
    ("what is 30 C in F", ["C", "F"]),
])
def test_mention_grounding_keeps_the_units_the_request_names(text, units):
    tools = ToolRegistry(native_tools())
    grounded = ground_schema(args_json_schema(tools.get("convert_units")), numbers_in(text), text)
    # two units named: one alternative per (from, to) pair of them, never the same unit twice
    offered = {b["properties"]["to_unit"]["const"] for b in grounded["anyOf"]}
    assert sorted(offered) == sorted(units)
    assert mentioned(["m", "s"], "it's a long way") == []  # one-letter units need a word of their own


def test_a_request_naming_no_unit_leaves_convert_units_out():
    # Qwen 1.5B once answered "35 percent of 140" by converting 140 kg to pounds.
    tools = ToolRegistry(native_tools())
    text = "how much is 35 percent of 140"
    schema = action_schema(tools, ["calculator", "convert_units"], numbers_in(text), text)
    assert [b["properties"].get("tool", {}).get("const") for b in schema["anyOf"]] == ["calculator", None]


def test_a_conversion_never_goes_into_the_unit_it_starts_from():
    # '100 °F in celsius' was called as °F -> °F by the 0.5B model; the grammar now offers only distinct pairs
    tools = ToolRegistry(native_tools())
    text = "100 °F in celsius"
    schema = action_schema(tools, ["convert_units"], context_numbers=numbers_in(text), context_text=text)
    pairs = [(b["properties"]["args"]["properties"]["from_unit"]["const"],
              b["properties"]["args"]["properties"]["to_unit"]["const"])
             for b in schema["anyOf"] if b["properties"]["action"] == {"const": "call_tool"}]
    assert sorted(pairs) == [("celsius", "°F"), ("°F", "celsius")]
    # one unit mentioned: nothing to tell apart, the enum stays (the tool's own check refuses F -> F)
    one = ground_schema(args_json_schema(tools.get("convert_units")), ["5"], "convert 5 km")
    assert one["properties"]["to_unit"]["enum"] == ["km"] and "x-tierflow-distinct-from" not in one["properties"][
        "to_unit"]
