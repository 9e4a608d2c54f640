"""Native tools: exact arithmetic with bounded inputs."""

import pytest

from tierflow.tools.errors import ToolInputError, UnknownToolError
from tierflow.tools.native import calculator, evaluate, native_tools, word_count
from tierflow.tools.registry import ToolRegistry


@pytest.mark.parametrize(("expression", "expected"), [
    ("17 * 23 + 5", "396"),
    ("0.1 + 0.2", "3/10 (≈ 0.3)"),
    ("2 ^ 100", "1267650600228229401496703205376"),
    ("(1 + 2) * -3 // 2", "-5"),
    ("7 % 3", "1"),
])
def test_calculator_is_exact(expression, expected):
    assert calculator.invoke({"expression": expression}) == expected


@pytest.mark.parametrize(("expression", "message"), [
    ("", "empty expression"),
    ("1/0", "division by zero"),
    ("2 ** 100000", "exponent larger than"),
    ("__import__('os')", "unsupported element"),
    ("x + 1", "unsupported element Name"),
    ("1 +", "not an arithmetic expression"),
    ("1" * 301, "longer than 300"),
    ("2 ** 0.5", "whole-number exponents"),
])
def test_calculator_refuses_bad_input_with_a_reason(expression, message):
    with pytest.raises(ToolInputError, match=message):
        evaluate(expression)


def test_word_count():
    assert word_count.invoke({"text": "One two. Three!"}) == "3 words, 2 sentences, 15 characters"


def test_registry_lookups():
    registry = ToolRegistry(native_tools())
    assert registry.names == ["calculator", "convert_units", "word_count"]
    with pytest.raises(UnknownToolError,
                       match="unknown tool 'browser'; available: calculator, convert_units, word_count"):
        registry.get("browser")
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(calculator)


def test_the_calculator_schema_admits_only_arithmetic():
    # what a schema-constrained model decodes under: no empty or wordy expressions
    import re

    schema = calculator.tool_call_schema.model_json_schema()["properties"]["expression"]
    assert schema["minLength"] == 1
    ok = re.compile(schema["pattern"])
    assert ok.match("17*23") and ok.match("(2 + 3) / 4") and ok.match("2^10")
    assert not ok.match("") and not ok.match("seventeen times 23") and not ok.match("()")
    with pytest.raises(ValueError, match="at least 1 character"):
        calculator.invoke({"expression": ""})


def test_convert_units_takes_the_value_as_a_number_or_as_text():
    from tierflow.tools.native import convert_units

    for value in (5, 5.0, "5"):
        assert convert_units.invoke({"value": value, "from_unit": "km", "to_unit": "m"}) == "5000 m"
    with pytest.raises(ValueError, match="valid string"):
        convert_units.invoke({"value": True, "from_unit": "km", "to_unit": "m"})
