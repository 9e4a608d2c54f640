"""Native Python tools of the default install: exact arithmetic and text statistics."""

from __future__ import annotations

import ast
import operator
from fractions import Fraction

from langchain_core.tools import BaseTool, tool
from pydantic import BaseModel, Field, field_validator

from tierflow.tools.errors import ToolInputError
from tierflow.tools.grounding import DISTINCT, GROUNDED
from tierflow.tools.units import convert, parse_value, unit_name, unit_names

MAX_EXPRESSION_CHARS = 300
MAX_EXPONENT = 1000
MAX_RESULT_DIGITS = 4000

_BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def evaluate(expression: str) -> Fraction:
    """Evaluate + - * / // % ** and parentheses exactly (rational arithmetic, no floats, no names).

    Written by hand because ``eval`` is unsafe and float arithmetic is inexact; inputs are bounded
    so a request cannot make the process compute a number with millions of digits.
    """
    text = expression.strip().replace("^", "**").replace("×", "*").replace("÷", "/")
    if not text:
        raise ToolInputError("empty expression")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ToolInputError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ToolInputError(f"not an arithmetic expression: {expression!r}") from exc
    return _eval(tree.body)


def _eval(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return Fraction(str(node.value))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) is ast.Pow:
        base, exponent = _eval(node.left), _eval(node.right)
        if exponent.denominator != 1:
            raise ToolInputError("only whole-number exponents are exact")
        if abs(exponent) > MAX_EXPONENT:
            raise ToolInputError(f"exponent larger than {MAX_EXPONENT}")
        if base == 0 and exponent < 0:
            raise ToolInputError("division by zero")
        return base ** int(exponent)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if type(node.op) in (ast.Div, ast.FloorDiv, ast.Mod) and right == 0:
            raise ToolInputError("division by zero")
        result = _BINARY[type(node.op)](left, right)
        return Fraction(result)
    raise ToolInputError(f"unsupported element {type(node).__name__} in expression")


def format_number(value: Fraction) -> str:
    """Integers as integers; other rationals as a fraction plus a 12-digit decimal."""
    if value.denominator == 1:
        text = str(value.numerator)
    else:
        text = f"{value.numerator}/{value.denominator} (≈ {float(value):.12g})"
    if len(text) > MAX_RESULT_DIGITS:
        raise ToolInputError(f"result has more than {MAX_RESULT_DIGITS} digits")
    return text


# Digits, operators, parentheses and spaces, with at least one digit. In the tool's JSON schema this keeps a
# schema-constrained small model from sending an empty or wordy expression.
ARITHMETIC = r"^[0-9 .+*/%()^×÷-]*[0-9][0-9 .+*/%()^×÷-]*$"


class CalculatorArgs(BaseModel):
    """Arguments of ``calculator``; the expression is grounded: its numbers must come from the context."""

    expression: str = Field(min_length=1, max_length=MAX_EXPRESSION_CHARS, pattern=ARITHMETIC,
                            description="arithmetic only, e.g. 17*23 or (2+3)/4",
                            json_schema_extra={GROUNDED: "expression"})


class ConvertArgs(BaseModel):
    """Arguments of ``convert_units``; the value is grounded, the units are the known names."""

    value: str = Field(max_length=60, description="the number to convert, e.g. 5 or 2.5",
                       json_schema_extra={GROUNDED: "number"})

    @field_validator("value", mode="before")
    @classmethod
    def _number_as_text(cls, value: object) -> object:
        """A plain number (``5``, ``2.5``) is as good as its text: callers other than the grammar send numbers."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            return repr(value) if isinstance(value, float) else str(value)
        return value
    from_unit: str = Field(description="unit of the value",
                           json_schema_extra={"enum": unit_names(), GROUNDED: "mention"})
    to_unit: str = Field(description="unit wanted", json_schema_extra={"enum": unit_names(), GROUNDED: "mention",
                                                                       DISTINCT: "from_unit"})


# Explicit argument models: LangChain's signature inference drops ``json_schema_extra`` (the grounding keys).
@tool(args_schema=CalculatorArgs)
def calculator(expression: str) -> str:
    """Exact arithmetic: evaluate an expression with + - * / // % ** and parentheses."""
    return format_number(evaluate(expression))


@tool(args_schema=ConvertArgs)
def convert_units(value: str, from_unit: str, to_unit: str) -> str:
    """Convert a value exactly between units of length, mass, time, area, volume, data, speed, temperature."""
    return f"{format_number(convert(parse_value(value), from_unit, to_unit))} {unit_name(to_unit)}"


@tool
def word_count(text: str) -> str:
    """Count the words, sentences and characters of a text."""
    words = len(text.split())
    sentences = sum(text.count(mark) for mark in ".!?") or (1 if text.strip() else 0)
    return f"{words} words, {sentences} sentences, {len(text)} characters"


def native_tools() -> list[BaseTool]:
    """The tools every default install registers."""
    return [calculator, convert_units, word_count]
