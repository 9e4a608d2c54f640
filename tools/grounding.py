"""Grounded tool arguments and answers: numbers may come only from the request and from tool results.

A tool declares which of its arguments are grounded in its JSON schema, so any tool can use it:

- ``"x-tierflow-grounded": "expression"`` on a string: arithmetic whose every literal is a context number;
- ``"x-tierflow-grounded": "number"`` on a string or number: exactly one context number;
- ``"x-tierflow-constants": ["60"]`` on the same field: numbers always allowed (a conversion factor, say);
  percentages need none: "percent" and "%" in the request stand for 100;
- ``"x-tierflow-grounded": "mention"`` on a field with an ``enum``: only the values the context mentions
  (unit names, say); a context that mentions none leaves the tool out;
- ``"x-tierflow-distinct-from": "other_field"`` on a ``mention`` field: never the same value as that field
  (a conversion into the unit it starts from is never what a request means).

:func:`ground_schema` rewrites such a schema for one call, so schema-constrained decoding cannot produce an
operand that is not in the context: a small model can pick the wrong operation, never invent a number.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

GROUNDED = "x-tierflow-grounded"
CONSTANTS = "x-tierflow-constants"
DISTINCT = "x-tierflow-distinct-from"
MAX_DISTINCT_PAIRS = 12  # more mentioned values than this: leave the pair unconstrained
MAX_CONTEXT_NUMBERS = 40

# Digits with optional thousands separators and decimals; a leading sign is an operator, not part of the number.
_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?:[eE][+-]?\d+)?(?![\w])")
# List markers ("1." or "2)" at the start of a line) are structure, not claims.
_LIST_MARKER = re.compile(r"(?m)^\s*\d{1,2}[.)]\s")
_WORDS: dict[str, tuple[str, ...]] = {
    "zero": ("0",), "one": ("1",), "two": ("2",), "three": ("3",), "four": ("4",), "five": ("5",), "six": ("6",),
    "seven": ("7",), "eight": ("8",), "nine": ("9",), "ten": ("10",), "eleven": ("11",), "twelve": ("12",),
    "thirteen": ("13",), "fourteen": ("14",), "fifteen": ("15",), "sixteen": ("16",), "seventeen": ("17",),
    "eighteen": ("18",), "nineteen": ("19",), "twenty": ("20",), "thirty": ("30",), "forty": ("40",),
    "fifty": ("50",), "sixty": ("60",), "seventy": ("70",), "eighty": ("80",), "ninety": ("90",),
    "hundred": ("100",), "thousand": ("1000",), "million": ("1000000",), "dozen": ("12",),
    "half": ("2", "0.5"), "quarter": ("4", "0.25"), "double": ("2",), "twice": ("2",), "triple": ("3",),
    "squared": ("2",), "square": ("2",), "cubed": ("3",), "cube": ("3",), "percent": ("100",),
    "percentage": ("100",), "per cent": ("100",), "%": ("100",),
}
_WORD = re.compile(r"(?i)\b(" + "|".join(w for w in _WORDS if w.replace(" ", "").isalpha()) + r")\b|%")
# No "%": small models write "35% 140" for a percentage, which the calculator reads as modulo.
_OPERATORS = r"(\*\*|[-+*/^])"


def canonical(number: str) -> str:
    """One spelling per value: no thousands separators, no trailing zeros after a decimal point."""
    text = number.replace(",", "")
    try:
        value = Decimal(text)
    except InvalidOperation:
        return text
    if value == value.to_integral_value() and "e" not in text.lower():
        return str(int(value))
    return format(value.normalize(), "f")


def numbers_in(text: str, words: bool = True) -> list[str]:
    """Numeric literals of ``text`` in order of appearance, canonical, without repeats (plus number words)."""
    found: list[str] = []
    for match in _NUMBER.finditer(text):
        found.append(canonical(match.group(0)))
    if words:
        for match in _WORD.finditer(text):
            found.extend(_WORDS[match.group(0).lower()])
    return list(dict.fromkeys(found))


def claimed_numbers(answer: str) -> list[str]:
    """The numbers an answer asserts (list markers excluded), canonical."""
    return numbers_in(_LIST_MARKER.sub(" ", answer), words=False)


def ungrounded(answer: str, sources: Iterable[str]) -> list[str]:
    """Numbers in ``answer`` that appear in none of ``sources`` (compared by value, so 1,000 == 1000.0)."""
    allowed = {n for source in sources for n in numbers_in(source, words=True)}
    allowed |= {_rounded(n) for n in allowed}
    return [n for n in claimed_numbers(answer) if n not in allowed and _rounded(n) not in allowed]


def _rounded(number: str) -> str:
    """A decimal shortened to 2 places: an answer may round 3.10685596 to 3.11."""
    try:
        return canonical(str(round(Decimal(number), 2)))
    except InvalidOperation:
        return number


def is_grounded(schema: dict[str, Any]) -> bool:
    """True when any argument of a tool's JSON schema declares grounding."""
    return any(isinstance(p, dict) and GROUNDED in p for p in (schema.get("properties") or {}).values())


def ground_schema(schema: dict[str, Any], context: Iterable[str], text: str = "") -> dict[str, Any] | None:
    """``schema`` with every grounded argument limited to the context; None if one cannot be filled.

    ``context`` holds canonical numbers (see :func:`numbers_in`); each field adds its declared constants.
    ``text`` is what ``mention`` fields are matched against (the request and earlier results).
    """
    out = copy.deepcopy(schema)
    numbers = list(dict.fromkeys(context))[:MAX_CONTEXT_NUMBERS]
    for name, prop in (out.get("properties") or {}).items():
        if not isinstance(prop, dict) or GROUNDED not in prop:
            continue
        kind = prop.pop(GROUNDED)
        if kind == "mention":
            named = mentioned(prop.get("enum") or [], text)
            if not named:  # the context names none (no unit in "35 percent of 140"): nothing to call it with
                return None
            prop["enum"] = named
            continue
        allowed = list(dict.fromkeys([*numbers, *(canonical(str(c)) for c in prop.pop(CONSTANTS, []))]))
        if not allowed:
            return None
        if kind == "expression":
            prop.pop("pattern", None)
            prop["type"] = "string"
            prop["pattern"] = expression_pattern(allowed)
        elif kind == "number":
            if prop.get("type") in ("number", "integer"):
                prop["enum"] = [float(n) if "." in n else int(n) for n in allowed]
            else:
                prop.pop("pattern", None)
                prop["enum"] = allowed
        else:
            raise ValueError(f"argument {name!r}: unknown {GROUNDED} kind {kind!r}; "
                             "use 'expression', 'number' or 'mention'")
    return _distinct(out)


def _distinct(schema: dict[str, Any]) -> dict[str, Any]:
    """Fields declared distinct from another become one ``anyOf`` branch per allowed pair of values.

    JSON schema cannot say "a != b" directly; enumerating the pairs keeps it in the subset grammar decoders
    (llama.cpp) support. Pairs are few: only values the context mentions are left in the enums.
    """
    props = schema.get("properties") or {}
    for name, prop in list(props.items()):
        other = prop.pop(DISTINCT, None) if isinstance(prop, dict) else None
        if other is None or not isinstance(props.get(other), dict):
            continue
        mine, theirs = prop.get("enum"), props[other].get("enum")
        if not mine or not theirs:
            continue
        pairs = [(a, b) for a in theirs for b in mine if a != b]
        if not pairs or len(pairs) > MAX_DISTINCT_PAIRS:  # one value mentioned: nothing to tell apart
            continue
        branches = []
        for a, b in pairs:
            branch = copy.deepcopy(schema)
            branch["properties"][other] = {k: v for k, v in props[other].items() if k != "enum"} | {"const": a}
            branch["properties"][name] = {k: v for k, v in prop.items() if k != "enum"} | {"const": b}
            branches.append(branch)
        return {"anyOf": branches}
    return schema


def expression_pattern(numbers: Iterable[str]) -> str:
    """A regex (in the subset llama.cpp turns into a grammar) for arithmetic over exactly these literals,
    with at least one operator.

    Longer literals come first so a prefix ("1") never shadows a longer number ("17") in the alternation.
    """
    literals = sorted(set(numbers), key=lambda n: (-len(n), n))
    # "[.]", not "\\.": llama-cpp-python's pattern converter copies "\\." into a GBNF literal, which llama.cpp
    # cannot parse (the process dies). Canonical numbers hold only digits and one point.
    number = "(" + "|".join(n.replace(".", "[.]") for n in literals) + ")"
    operand = r"[(]* ?-?" + number + r" ?[)]*"
    # At least one operator: a lone number computes nothing (small models echo the last result back).
    return "^" + operand + "( ?" + _OPERATORS + " ?" + operand + ")+$"


def mentioned(values: Iterable[Any], text: str) -> list[Any]:
    """The values ``text`` names as a word of its own: case-insensitively, except one-letter values.

    A value that is also an ordinary word ("in") counts only right after a number ("12 in").
    """
    found = []
    for value in values:
        word = str(value)
        flags = 0 if len(word) == 1 else re.IGNORECASE
        before = r"\d\s*" if word.lower() in _COMMON_WORDS else r"(?<![\w°/'’])"
        if re.search(rf"{before}{re.escape(word)}(?![\w/])", text, flags):
            found.append(value)
    return found


_COMMON_WORDS = frozenset({"in", "a", "at", "per"})
