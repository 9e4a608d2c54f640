"""BFCL (Berkeley Function-Calling Leaderboard) data from the ``bfcl-eval`` package, scored by BFCL's AST rules.

Only the packaged JSON-lines files are read (``data/BFCL_v<N>_<category>.json`` and ``data/possible_answer/``);
none of bfcl-eval's code runs. Every single-turn, non-executable AST category loads (:data:`AST_CATEGORIES`),
each scored by its rule, ported from bfcl-eval's ``ast_checker``:

- ``simple``: exactly one call, of the one function offered, every argument acceptable;
- ``multiple``: exactly one call, of the right one among the functions offered;
- ``parallel``: the expected set of calls, in any order, nothing more (``parallel_multiple`` too);
- ``irrelevance``: no call at all; ``relevance``: at least one call.

An argument is acceptable as in BFCL: its type fits the parameter (an int for a float is fine), strings compare
without case, spaces and ``,./-_*^``, and a possible answer of ``""`` makes a parameter optional. The task decodes
JSON values, so Java and JavaScript arguments arrive as values (or strings such as ``"5"`` or ``"true"``, which
are read as BFCL's type converter reads them) rather than as source code. One deviation: a reply that is not usable
JSON (under schema-constrained decoding: a call cut off by the token limit) fails every category, irrelevance
included, where BFCL would count an undecodable reply as "no call".
:func:`register` adds dataset kind ``bfcl``, task kind ``function_call`` and scorers ``bfcl_ast``/``bfcl_ast_errors``.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from tierflow.evals.datasets import EvalItem, LoadedItems, _read_text
from tierflow.evals.errors import DatasetError
from tierflow.evals.tasks import invoke_structured
from tierflow.runtimes.errors import TierflowError

if TYPE_CHECKING:  # types only: the registry imports the benchmarks, never the other way round
    from tierflow.evals.registry import Registry
    from tierflow.evals.suite import DatasetSpec, TaskSpec

PACKAGE = "bfcl_eval"
Rule = Literal["simple", "multiple", "parallel", "irrelevance", "relevance"]
Language = Literal["python", "java", "javascript"]

# The categories this harness loads and scores, with the rule each is scored by (bfcl-eval's category_mapping).
AST_CATEGORIES: dict[str, Rule] = {
    "simple_python": "simple", "simple_java": "simple", "simple_javascript": "simple",
    "multiple": "multiple", "parallel": "parallel", "parallel_multiple": "parallel", "irrelevance": "irrelevance",
    "live_simple": "simple", "live_multiple": "multiple", "live_parallel": "parallel",
    "live_parallel_multiple": "parallel", "live_irrelevance": "irrelevance", "live_relevance": "relevance",
}
# Known BFCL categories that are not single-turn AST checks (multi-turn state, agentic, prompt-format studies).
OTHER_CATEGORIES = ("multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param", "multi_turn_long_context",
                    "memory", "web_search", "format_sensitivity")
_FILE = re.compile(r"^BFCL_v(\d+)_([a-z0-9_]+)\.json$")
_STRIP = re.compile(r"[ ,./\-_*^]")  # what BFCL's standardize_string drops before comparing strings


def language_of(category: str) -> Language:
    """The language BFCL checks a category's arguments in: Java and JavaScript for their simple categories."""
    return "java" if category == "simple_java" else "javascript" if category == "simple_javascript" else "python"


def check_categories(category: str | Sequence[str]) -> list[str]:
    """The category (or categories) as a list; ValueError naming the valid ones for any that is not exactly one."""
    names = [category] if isinstance(category, str) else list(category)
    if not names:
        raise ValueError(f"no BFCL category given; valid: {', '.join(AST_CATEGORIES)}")
    for name in names:
        if name in AST_CATEGORIES:
            continue
        if name in OTHER_CATEGORIES:
            raise ValueError(f"BFCL category {name!r} is not a single-turn AST category, which is what this harness "
                             f"scores; valid: {', '.join(AST_CATEGORIES)}")
        words = set(name.split("_"))
        close = [c for c in AST_CATEGORIES if words <= set(c.split("_"))] or \
            difflib.get_close_matches(name, AST_CATEGORIES, n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise ValueError(f"unknown BFCL category {name!r}{hint}; valid: {', '.join(AST_CATEGORIES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"BFCL categories repeat: {', '.join(names)}")
    return names


def bfcl_data_dir() -> Path:
    """The ``data/`` folder of the installed bfcl-eval package (infra/setup.sh installs it)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("package bfcl-eval is not installed; run infra/setup.sh (or infra/setup.d/60-eval-data.sh)",
                           PACKAGE)
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def category_files(category: str, data_dir: Path | None = None) -> tuple[Path, Path | None]:
    """The question file of exactly this category (newest BFCL version) and its possible answers (None for
    irrelevance and relevance, which have none). ``multiple`` never opens ``parallel_multiple``."""
    try:
        check_categories(category)
    except ValueError as exc:
        raise DatasetError(str(exc), data_dir or PACKAGE) from None
    data_dir = data_dir or bfcl_data_dir()
    found = sorted(((int(m.group(1)), p) for p in data_dir.glob("BFCL_v*_*.json")
                    if (m := _FILE.match(p.name)) and m.group(2) == category), key=lambda vp: vp[0])
    if not found:
        raise DatasetError(f"no question file for category {category!r} (BFCL_v<N>_{category}.json)", data_dir)
    questions = found[-1][1]
    if AST_CATEGORIES[category] in ("irrelevance", "relevance"):
        return questions, None
    return questions, data_dir / "possible_answer" / questions.name


# -- loading ------------------------------------------------------------------------------------------------

@dataclass
class _Row:
    category: str
    path: Path
    line: int
    raw: str


def _rows(path: Path, category: str) -> list[_Row]:
    rows = [_Row(category, path, number, raw) for number, raw in enumerate(_read_text(path).splitlines(), start=1)
            if raw.strip()]
    if not rows:
        raise DatasetError("no rows found", path, 1)
    return rows


def _interleave(groups: Sequence[list[_Row]]) -> Iterator[_Row]:
    """Rows of several categories taken in turn, so the first N keep every category."""
    for index in range(max(len(g) for g in groups)):
        for group in groups:
            if index < len(group):
                yield group[index]


def _messages(turns: Any, path: Path, line: int) -> list[dict[str, str]]:
    if not (isinstance(turns, list) and turns and isinstance(turns[0], list) and turns[0]):
        raise DatasetError("field 'question' must be a non-empty list of turns (lists of messages)", path, line)
    messages = []
    for message in turns[0]:
        if not (isinstance(message, dict) and message.get("role") in ("system", "user", "assistant")
                and isinstance(message.get("content"), str)):
            raise DatasetError("each message needs a role (system, user, assistant) and string content", path, line)
        messages.append({"role": message["role"], "content": message["content"]})
    if not any(m["role"] == "user" and m["content"].strip() for m in messages):
        raise DatasetError("the first turn has no user message with non-empty content", path, line)
    return messages


def _functions(value: Any, rule: Rule, path: Path, line: int) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise DatasetError("field 'function' must be a list of functions", path, line)
    names: set[str] = set()
    for function in value:
        params = function.get("parameters") if isinstance(function, dict) else None
        if not (isinstance(function, dict) and isinstance(function.get("name"), str) and function["name"].strip()
                and isinstance(params, dict) and isinstance(params.get("properties"), dict)
                and all(isinstance(p, dict) for p in params["properties"].values())):
            raise DatasetError("each function needs a string 'name' and 'parameters' with 'properties'", path, line)
        if function["name"] in names:
            raise DatasetError(f"function {function['name']!r} is offered twice", path, line)
        names.add(function["name"])
    if rule == "simple" and len(value) != 1:
        raise DatasetError(f"a simple category offers exactly one function, this row {len(value)}", path, line)
    if rule in ("multiple", "parallel", "relevance") and not value:
        raise DatasetError("the row offers no function", path, line)
    return value


def _ground_truth(obj: Any, rule: Rule, functions: list[dict[str, Any]], path: Path,
                  line: int) -> list[dict[str, dict[str, list[Any]]]]:
    truth = obj.get("ground_truth") if isinstance(obj, dict) else None
    shape = "field 'ground_truth' must be [{function_name: {param: [acceptable values]}}, ...]"
    if not (isinstance(truth, list) and truth and all(isinstance(c, dict) and len(c) == 1 for c in truth)):
        raise DatasetError(shape, path, line)
    if rule in ("simple", "multiple") and len(truth) != 1:
        raise DatasetError(f"a {rule} category expects one call, the answer has {len(truth)}", path, line)
    offered = {f["name"]: f for f in functions}
    for call in truth:
        (name, args), = call.items()
        if not isinstance(args, dict):
            raise DatasetError(shape, path, line)
        if name not in offered:
            raise DatasetError(f"the answer calls {name!r}, which the question does not offer", path, line)
        empty = [p for p, v in args.items() if not (isinstance(v, list) and v)]
        if empty:
            raise DatasetError(f"answer for {name!r}: parameter {empty[0]!r} has no acceptable values "
                               "(needs a non-empty list)", path, line)
        params = offered[name]["parameters"]
        undeclared = [p for p, v in args.items() if p not in params["properties"] and "" not in v]
        if undeclared:
            raise DatasetError(f"answer for {name!r} requires {undeclared[0]!r}, which the function does not "
                               "declare", path, line)
        unanswered = [p for p in params.get("required") or [] if not any(v != "" for v in args.get(p, [""]))]
        if unanswered:
            raise DatasetError(f"{name!r} requires {unanswered[0]!r}, which the answer gives no value for", path, line)
        flat = [p for p, v in args.items() if any(isinstance(a, dict) and a and not all(isinstance(x, list)
                                                                                       for x in a.values())
                                                  for a in v)]
        if flat:
            raise DatasetError(f"answer for {name!r}: the dict value of {flat[0]!r} must map each key to a list of "
                               "acceptable values (BFCL's checker accepts no reply otherwise)", path, line)
    return truth


def _answers_by_id(path: Path, wanted: set[str],
                   skip_invalid: bool) -> tuple[dict[str, tuple[int, Any] | DatasetError], list[str]]:
    """The answer row (line, object) of each ``wanted`` id, or the error that makes it unusable (a repeated id);
    reading stops once all are found. Also the unreadable lines met (strict mode raises on the first instead)."""
    found: dict[str, tuple[int, Any] | DatasetError] = {}
    unreadable: list[str] = []
    for row in _rows(path, ""):
        try:
            obj = json.loads(row.raw)
        except json.JSONDecodeError as exc:
            if not skip_invalid:
                raise DatasetError(f"invalid JSON: {exc.msg} (column {exc.colno})", path, row.line) from None
            unreadable.append(f"line {row.line}")
            continue
        answer_id = obj.get("id") if isinstance(obj, dict) else None
        if answer_id not in wanted:
            continue
        earlier = found.get(answer_id)
        if isinstance(earlier, tuple):
            found[answer_id] = DatasetError(f"id {answer_id!r} repeats the answer on line {earlier[0]}", path,
                                            row.line)
        elif earlier is None:
            found[answer_id] = (row.line, obj)
            if len(found) == len(wanted):
                break
    return found, unreadable


def load_bfcl(category: str | Sequence[str] = "simple_python", data_dir: Path | None = None,
              limit: int | None = None, skip_invalid: bool = True) -> LoadedItems:
    """Items of one or more BFCL AST categories; ``expected.bfcl`` holds the rule, functions, messages and answers.

    Several categories are interleaved row by row. ``limit`` takes the first rows before any is validated, so a
    bad row further on never matters. A bad row raises DatasetError naming file and line, or with ``skip_invalid``
    is left out and kept in the result's ``skipped`` (bfcl-eval 2026.3.23's live_simple has two: a parameter
    whose list of acceptable values is empty).
    """
    try:
        categories = check_categories(category)
    except ValueError as exc:
        raise DatasetError(str(exc), data_dir or PACKAGE) from None
    files = {name: category_files(name, data_dir) for name in categories}
    rows = list(_interleave([_rows(files[name][0], name) for name in categories]))
    rows = rows[:limit] if limit is not None else rows
    skipped: list[DatasetError] = []

    def bad(error: DatasetError) -> None:
        if not skip_invalid:
            raise error
        skipped.append(error)

    parsed: list[tuple[_Row, str, list[dict[str, str]], list[dict[str, Any]]]] = []
    seen: dict[tuple[str, str], int] = {}
    for row in rows:
        rule = AST_CATEGORIES[row.category]
        try:
            try:
                obj = json.loads(row.raw)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"invalid JSON: {exc.msg} (column {exc.colno})", row.path, row.line) from None
            if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or not obj["id"].strip():
                raise DatasetError('expected a JSON object with a non-empty string "id"', row.path, row.line)
            if (row.category, obj["id"]) in seen:
                raise DatasetError(f"id {obj['id']!r} repeats line {seen[row.category, obj['id']]}", row.path,
                                   row.line)
            seen[row.category, obj["id"]] = row.line
            parsed.append((row, obj["id"], _messages(obj.get("question"), row.path, row.line),
                           _functions(obj.get("function"), rule, row.path, row.line)))
        except DatasetError as error:
            bad(error)

    answers: dict[str, dict[str, tuple[int, Any] | DatasetError]] = {}
    unreadable: dict[str, list[str]] = {}
    for name in categories:
        answers_path = files[name][1]
        wanted = {item_id for row, item_id, _, _ in parsed if row.category == name}
        if answers_path is not None and wanted:
            answers[name], unreadable[name] = _answers_by_id(answers_path, wanted, skip_invalid)

    items: list[EvalItem] = []
    for row, item_id, messages, functions in parsed:
        rule = AST_CATEGORIES[row.category]
        truth: list[Any] = []
        answers_path = files[row.category][1]
        if answers_path is not None:
            if item_id not in answers[row.category]:
                also = f" (unreadable: {', '.join(unreadable[row.category][:3])})" if unreadable[row.category] else ""
                bad(DatasetError(f"id {item_id!r} has no row in {answers_path.name} of possible_answer/{also}",
                                 row.path, row.line))
                continue
            found = answers[row.category][item_id]
            try:
                if isinstance(found, DatasetError):
                    raise found
                truth = _ground_truth(found[1], rule, functions, answers_path, found[0])
            except DatasetError as error:
                bad(error)
                continue
        text = "\n".join(m["content"].strip() for m in messages if m["role"] == "user" and m["content"].strip())
        items.append(EvalItem(id=item_id, input=text, line=row.line, group=row.category, expected={"bfcl": {
            "category": row.category, "rule": rule, "language": language_of(row.category), "functions": functions,
            "messages": messages, "ground_truth": truth}}))
    if not items:
        if not skipped:
            raise DatasetError("no rows selected", files[categories[0]][0])
        raise DatasetError(f"no usable rows: all {len(skipped)} were invalid; first: {skipped[0].reason}",
                           skipped[0].path, skipped[0].line)
    return LoadedItems(items, skipped)


# -- parsing calls --------------------------------------------------------------------------------------------

class CallParseError(TierflowError, ValueError):
    """A model's output is not a list of Python calls with keyword arguments of literal values."""


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    raise CallParseError(f"function must be a (dotted) name, got {ast.unparse(node)!r}")


def parse_calls(text: str) -> list[tuple[str, dict[str, Any]]]:
    """``f(a=1)``, ``[f(a=1), g(b="x")]`` or ``""`` (no call) as (name, arguments) pairs, via ``ast.literal_eval``."""
    if not text.strip():
        return []
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise CallParseError(f"not Python syntax: {exc.msg}") from None
    nodes = tree.elts if isinstance(tree, ast.List | ast.Tuple) else [tree]
    calls = []
    for node in nodes:
        if not isinstance(node, ast.Call):
            raise CallParseError("expected function calls")
        if node.args or any(k.arg is None for k in node.keywords):
            raise CallParseError("only keyword arguments are accepted (name=value)")
        args: dict[str, Any] = {}
        for keyword in node.keywords:
            try:
                args[str(keyword.arg)] = ast.literal_eval(keyword.value)
            except (ValueError, TypeError, SyntaxError, RecursionError):
                raise CallParseError(f"argument {keyword.arg!r} is not a literal: "
                                     f"{ast.unparse(keyword.value)}") from None
        calls.append((_dotted(node.func), args))
    return calls


def parse_call(text: str) -> tuple[str, dict[str, Any]]:
    """Exactly one call, as :func:`parse_calls` reads it."""
    calls = parse_calls(text)
    if len(calls) != 1:
        raise CallParseError(f"expected a single function call, got {len(calls)}")
    return calls[0]


def render_call(name: str, arguments: Mapping[str, Any]) -> str:
    """``name(k=v, ...)`` with Python literals, the form BFCL's AST checker reads."""
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in arguments.items())})"


def render_calls(calls: Sequence[Mapping[str, Any]]) -> str:
    """``[f(a=1), g(b=2)]`` for ``[{"name", "arguments"}, ...]``; ``""`` when there is no call."""
    if not calls:
        return ""
    return "[" + ", ".join(render_call(str(c.get("name", "")), c.get("arguments") or {}) for c in calls) + "]"


# -- BFCL's argument rules (ported from bfcl-eval's ast_checker and type_mappings) ----------------------------

_PYTHON_TYPES: dict[str, type] = {"string": str, "integer": int, "float": float, "boolean": bool, "array": list,
                                  "tuple": list, "dict": dict, "any": str}
_JAVA_TYPES: dict[str, type] = {"byte": int, "short": int, "integer": int, "float": float, "double": float,
                                "long": int, "boolean": bool, "char": str, "Array": list, "ArrayList": list,
                                "Set": list, "HashMap": dict, "Hashtable": dict, "Queue": list, "Stack": list,
                                "String": str, "any": str}
_JS_TYPES: dict[str, type] = {"String": str, "integer": int, "float": float, "Bigint": int, "Boolean": bool,
                              "dict": dict, "array": list, "any": str}
_TYPES: dict[str, dict[str, type]] = {"python": _PYTHON_TYPES, "java": _JAVA_TYPES, "javascript": _JS_TYPES}
_NESTED = {"array", "tuple", "Array", "ArrayList"}  # list types whose items BFCL type-checks one level deep
_INT = re.compile(r"^-?\d+[lLnN]?$")
_FLOAT = re.compile(r"^-?\d+(\.\d+)?([eE][+-]?\d+)?[fFdD]?$")


def standardize(text: str) -> str:
    """BFCL's string comparison form: no spaces or ``,./-_*^``, lowercase, single quotes as double."""
    return _STRIP.sub("", text).lower().replace("'", '"')


def _std(value: Any) -> Any:
    return standardize(value) if isinstance(value, str) else value


def _from_source(value: Any, kind: type) -> Any:
    """A Java/JavaScript argument given as source text (``"5"``, ``"2.5f"``, ``"true"``), read as BFCL reads it."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if kind is int and _INT.match(text):
        return int(text.rstrip("lLnN"))
    if kind is float and _FLOAT.match(text):
        return float(text.rstrip("fFdD"))
    if kind is bool and text in ("true", "false"):
        return text == "true"
    return value


def _answer_type(acceptable: Sequence[Any]) -> type | None:
    return next((type(a) for a in acceptable if a != ""), None)


def _type_ok(value: Any, acceptable: Sequence[Any], expected: type, nested: type | None) -> tuple[bool, bool]:
    """BFCL's type_checker: (valid, is_variable). An answer of another type than declared marks a variable name;
    a list whose items fail the nested check still passes as a "variable" when answers are lists (compared as is)."""
    answer_type = _answer_type(acceptable)
    is_variable = answer_type is not None and answer_type is not expected
    if type(value) is expected:
        if nested is None:
            return True, is_variable
        for answer in acceptable:
            if not isinstance(answer, list) or all(_type_ok(v, answer, nested, None)[0] for v in value):
                return True, is_variable
    if answer_type is not None and type(value) is answer_type:
        return True, True
    return False, is_variable


def _dict_ok(value: dict[str, Any], acceptable: Sequence[Any]) -> bool:
    """BFCL's dict_checker: some acceptable dict has every given key with an acceptable value, none missing."""
    for answer in acceptable:
        if not isinstance(answer, dict):
            continue
        if all(k in answer and _std(v) in [_std(a) for a in answer[k]] for k, v in value.items()) and \
                all(k in value or "" in options for k, options in answer.items()):
            return True
    return False


def _list_dict_ok(value: list[Any], acceptable: Sequence[Any]) -> bool:
    """BFCL's list_dict_checker: the dicts in order, each acceptable against the same position of an answer."""
    return any(isinstance(answer, list) and len(answer) == len(value)
               and all(isinstance(v, dict) and _dict_ok(v, [a]) for v, a in zip(value, answer, strict=True))
               for answer in acceptable)


def value_ok(value: Any, acceptable: Sequence[Any], spec: Mapping[str, Any], language: Language = "python") -> bool:
    """Whether one argument value is acceptable for a parameter ``spec`` by BFCL's rules (type, then value)."""
    kind = str(spec.get("type", ""))
    table = _TYPES[language]
    if kind not in table:  # a type BFCL has no mapping for: compare values only
        return _std(value) in [_std(a) for a in acceptable if a != ""]
    expected = table[kind]
    items = spec.get("items") if isinstance(spec.get("items"), Mapping) else {}
    nested = table.get(str(items.get("type", ""))) if kind in _NESTED else None
    if language != "python":
        value = _from_source(value, expected)
    if isinstance(value, tuple):
        value = list(value)
    if language == "python" and kind == "float" and type(value) is int:
        value = float(value)
    valid, is_variable = _type_ok(value, acceptable, expected, nested)
    if not valid:
        return False
    if not is_variable:
        if expected is dict:
            return _dict_ok(value, acceptable)
        if expected is list and nested is dict:
            return _list_dict_ok(value, acceptable)
        if expected is str:
            return standardize(value) in [standardize(a) for a in acceptable if isinstance(a, str)]
        if expected is list:
            return [_std(v) for v in value] in [[_std(v) for v in a] for a in acceptable if isinstance(a, list)]
    return value in [a for a in acceptable if a != ""]


@dataclass
class CallCheck:
    """One predicted call against one expected call: which expected parameters were right, missing or wrong."""

    name_match: bool
    correct: int = 0
    expected: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return self.name_match and not (self.missing or self.extra or self.wrong)

    @property
    def score(self) -> float:
        """Share of parameters right, extra arguments counting against it; 0 for another function."""
        if not self.name_match:
            return 0.0
        total = self.expected + len(self.extra)
        return self.correct / total if total else 1.0


def check_call(name: str, arguments: Mapping[str, Any], expected: Mapping[str, Mapping[str, Sequence[Any]]],
               function: Mapping[str, Any], language: Language = "python") -> CallCheck:
    """BFCL's simple_function_checker on one call: right function, required parameters, no unexpected ones, and
    every argument acceptable (``""`` among a parameter's answers makes it optional)."""
    (want_name, want), = expected.items()
    if name != want_name:
        return CallCheck(name_match=False, expected=len(want))
    check = CallCheck(name_match=True, expected=len(want))
    properties = function.get("parameters", {}).get("properties", {})
    required = set(function.get("parameters", {}).get("required") or [])
    check.missing = [p for p in sorted(required - set(want)) if p not in arguments]
    for param, acceptable in want.items():
        if param not in arguments:
            if "" in acceptable and param not in required:
                check.correct += 1
            else:
                check.missing.append(param)
        elif param not in properties:
            continue  # an argument the function does not declare is unexpected (counted below), as in BFCL
        elif value_ok(arguments[param], acceptable, properties[param], language):
            check.correct += 1
        else:
            check.wrong.append(param)
    check.extra = sorted(p for p in arguments if p not in want or p not in properties)
    return check


@dataclass
class Verdict:
    """An output scored by its category's rule: ``passed`` is BFCL's verdict, the rest is partial credit."""

    rule: Rule
    parsed: bool
    passed: bool
    calls: int
    name_match: float | None = None
    args_match: float | None = None
    missing: int = 0
    extra: int = 0
    wrong: int = 0
    error: str = ""


def _best_pairs(expected: Sequence[Mapping[str, Any]], checks: list[list[CallCheck]]) -> list[tuple[int, int]]:
    """Pairs (expected, predicted) of the same function maximising the summed call scores (any order)."""
    n_pred = len(checks[0]) if checks else 0

    @cache
    def best(i: int, used: int) -> tuple[float, tuple[tuple[int, int], ...]]:
        if i == len(expected):
            return 0.0, ()
        top = best(i + 1, used)
        for j in range(n_pred):
            if not used & (1 << j) and checks[i][j].name_match:
                score, pairs = best(i + 1, used | (1 << j))
                if score + checks[i][j].score + 1.0 > top[0]:  # + 1: a pair of the right function counts
                    top = (score + checks[i][j].score + 1.0, ((i, j), *pairs))
        return top

    return list(best(0, 0)[1])


MAX_SCORED_CALLS = 10  # predicted calls beyond this are only counted (no answer has more than 8)


def judge(bfcl: Mapping[str, Any], calls: Sequence[tuple[str, Mapping[str, Any]]]) -> Verdict:
    """Score predicted ``calls`` against an item's ``expected.bfcl`` by its category's rule."""
    rule: Rule = bfcl.get("rule", "simple")
    if rule == "irrelevance":
        return Verdict(rule, True, passed=not calls, calls=len(calls))
    if rule == "relevance":
        return Verdict(rule, True, passed=bool(calls), calls=len(calls))
    expected = list(bfcl["ground_truth"])
    functions = {f["name"]: f for f in bfcl.get("functions", [])}
    language: Language = bfcl.get("language", "python")
    scored = list(calls)[:MAX_SCORED_CALLS]
    checks = [[check_call(name, args, want, functions.get(next(iter(want)), {}), language) for name, args in scored]
              for want in expected]
    pairs = _best_pairs(expected, checks)
    paired = {j for _, j in pairs}
    verdict = Verdict(rule, True, passed=False, calls=len(calls))
    want_names = sorted(next(iter(w)) for w in expected)
    verdict.name_match = float(sorted(name for name, _ in calls) == want_names)
    verdict.args_match = sum(checks[i][j].score for i, j in pairs) / max(len(expected), len(calls))
    for i, j in pairs:
        verdict.missing += len(checks[i][j].missing)
        verdict.wrong += len(checks[i][j].wrong)
        verdict.extra += len(checks[i][j].extra)
    verdict.extra += sum(len(args) for j, (_, args) in enumerate(calls) if j not in paired)
    unpaired = [want for i, want in enumerate(expected) if i not in {i for i, _ in pairs}]
    verdict.missing += sum("" not in v for want in unpaired for v in next(iter(want.values())).values())
    verdict.passed = len(calls) == len(expected) == len(pairs) and all(checks[i][j].exact for i, j in pairs)
    if not verdict.passed:
        verdict.error = (f"{len(calls)} call(s), expected {len(expected)}" if len(calls) != len(expected)
                         else "wrong function" if not verdict.name_match else "wrong arguments")
    return verdict


def calls_of(output: Mapping[str, Any]) -> tuple[list[tuple[str, dict[str, Any]]], str]:
    """The predicted calls of a task output (its ``calls``, else its ``call`` text) and why they are unusable."""
    if output.get("output_error"):
        return [], str(output["output_error"])
    calls = output.get("calls")
    if isinstance(calls, list):
        if not all(isinstance(c, Mapping) and isinstance(c.get("name"), str) for c in calls):
            return [], "calls must be objects with a string name"
        return [(c["name"], dict(c.get("arguments") or {})) for c in calls], ""
    try:
        return parse_calls(str(output.get("call") or "")), ""
    except CallParseError as exc:
        return [], str(exc)


def verdict_for(item: EvalItem, output: Mapping[str, Any]) -> Verdict | None:
    """The item's verdict for ``output``; None when the item is not a BFCL item."""
    bfcl = item.expected.get("bfcl")
    if not isinstance(bfcl, Mapping) or "rule" not in bfcl:
        return None
    calls, error = calls_of(output)
    if error:
        verdict = Verdict(bfcl["rule"], False, passed=False, calls=0, error=error)
        if bfcl["rule"] not in ("irrelevance", "relevance"):
            verdict.name_match, verdict.args_match = 0.0, 0.0
        return verdict
    return judge(bfcl, calls)


def score_bfcl_ast(item: EvalItem, output: Mapping[str, Any]) -> dict[str, float]:
    """``bfcl_ast`` (BFCL's verdict, 0/1), and for categories with expected calls ``name_match`` (the right
    functions, order ignored) and ``args_match`` (partial credit for arguments, extra or missing calls count)."""
    verdict = verdict_for(item, output)
    if verdict is None:
        return {}
    scores = {"bfcl_ast": float(verdict.passed)}
    if verdict.name_match is not None and verdict.args_match is not None:
        scores |= {"name_match": verdict.name_match, "args_match": verdict.args_match}
    return scores


def score_bfcl_ast_errors(item: EvalItem, output: Mapping[str, Any]) -> dict[str, float]:
    """Report-only: ``call_parsed`` (the reply was usable), ``calls_made`` and arguments missing/extra/wrong."""
    verdict = verdict_for(item, output)
    if verdict is None:
        return {}
    return {"call_parsed": float(verdict.parsed), "calls_made": float(verdict.calls),
            "args_missing": float(verdict.missing), "args_extra": float(verdict.extra),
            "args_wrong": float(verdict.wrong)}


def reference_calls(bfcl: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A reply BFCL's rules accept: optional parameters left out, the others at their first acceptable value
    (nested answers likewise). For tests and sanity checks of the data and the scorer."""
    def first(options: Sequence[Any]) -> Any:
        return plain(next(v for v in options if v != ""))

    def plain(value: Any) -> Any:
        if isinstance(value, dict) and value and all(isinstance(v, list) for v in value.values()):
            return {k: first(v) for k, v in value.items() if "" not in v}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    if bfcl.get("rule") == "relevance":
        function = bfcl["functions"][0]
        return [{"name": function["name"], "arguments": {}}]
    required = {f["name"]: set(f["parameters"].get("required") or []) for f in bfcl.get("functions", [])}
    return [{"name": name, "arguments": {p: first(v) for p, v in args.items()
                                         if "" not in v or (p in required.get(name, ()) and any(o != "" for o in v))}}
            for call in bfcl.get("ground_truth", []) for name, args in call.items()]


# -- the task -----------------------------------------------------------------------------------------------

_JSON_TYPES = {"integer": "integer", "number": "number", "float": "number", "double": "number", "string": "string",
               "String": "string", "char": "string", "any": "string", "Any": "string", "boolean": "boolean",
               "Boolean": "boolean", "bool": "boolean", "array": "array", "list": "array", "tuple": "array",
               "Array": "array", "ArrayList": "array", "Set": "array", "Queue": "array", "Stack": "array",
               "dict": "object", "object": "object", "HashMap": "object", "Hashtable": "object", "byte": "integer",
               "short": "integer", "long": "integer", "Bigint": "integer"}


def _enum_fits(kind: str | None, values: Sequence[Any]) -> bool:
    if kind == "boolean":
        return all(isinstance(v, bool) for v in values)
    if kind == "integer":
        return all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    if kind == "number":
        return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    return kind is None or (kind == "string" and all(isinstance(v, str) for v in values))


def to_json_schema(spec: Mapping[str, Any], language: Language = "python", *, top: bool = True) -> dict[str, Any]:
    """A BFCL parameter spec (``dict``, ``float``, ``tuple``, Java and JavaScript types) as standard JSON Schema.

    Java and JavaScript parameters also take a string (a variable name or source text, as BFCL's answers may be).
    An ``enum`` whose values do not fit the type (``"True"`` for a boolean) is offered beside the type.
    """
    out: dict[str, Any] = {}
    kind = _JSON_TYPES.get(str(spec.get("type")))
    if kind is None and top:
        kind = "object"  # a function's parameters are an object whatever their type says
    if kind:
        out["type"] = kind
    properties = spec.get("properties")
    if kind == "object" and isinstance(properties, Mapping) and (properties or top):
        props = {k: to_json_schema(v, language, top=False) for k, v in properties.items() if isinstance(v, Mapping)}
        out["properties"] = props
        out["required"] = [r for r in spec.get("required") or [] if r in props]
        out["additionalProperties"] = False
    if kind == "array" and isinstance(spec.get("items"), Mapping):
        out["items"] = to_json_schema(spec["items"], language, top=False)
    enum = spec.get("enum")
    if isinstance(enum, list) and enum:
        if _enum_fits(kind, enum):
            out["enum"] = enum
        elif kind == "array":
            out["items"] = {"enum": enum}
        else:
            out = {"anyOf": [out, {"enum": enum}]}
    if language != "python" and not top and kind not in (None, "string") and "anyOf" not in out:
        out = {"anyOf": [out, {"type": "string"}]}
    return out


def calls_schema(functions: Sequence[Mapping[str, Any]], language: Language = "python",
                 max_calls: int = 8) -> dict[str, Any]:
    """The reply schema: ``{"calls": [...]}`` with 0 to ``max_calls`` calls, each of one offered function with
    that function's parameters (required ones present, no others)."""
    variants = [{"type": "object", "required": ["name", "arguments"], "additionalProperties": False,
                 "properties": {"name": {"type": "string", "enum": [f["name"]]},
                                "arguments": to_json_schema(f["parameters"], language)}} for f in functions]
    calls: dict[str, Any] = {"type": "array", "minItems": 0, "maxItems": max_calls if variants else 0}
    if variants:
        calls["items"] = variants[0] if len(variants) == 1 else {"anyOf": variants}
    return {"type": "object", "required": ["calls"], "additionalProperties": False, "properties": {"calls": calls}}


SYSTEM_PROMPT = """You are an expert in composing functions. You are given a question and a set of possible \
functions. Based on the question, you will need to make one or more function calls to achieve the purpose. If none \
of the functions can be used, make no call.
Reply with JSON {{"calls": [{{"name": ..., "arguments": {{...}}}}, ...]}}, or {{"calls": []}} when no function \
fits.{note}
Here is a list of functions in JSON format that you can invoke.
{functions}"""
_LANGUAGE_NOTE = {"python": "", "java": "\nNote that the provided function is in Java 8 SDK syntax.",
                  "javascript": "\nNote that the provided function is in JavaScript syntax."}


def prompt_messages(bfcl: Mapping[str, Any]) -> list[BaseMessage]:
    """BFCL's prompt: the functions in a system message (the item's own system text after it), then the turn."""
    language: Language = bfcl.get("language", "python")
    system = SYSTEM_PROMPT.format(note=_LANGUAGE_NOTE[language],
                                  functions=json.dumps(bfcl["functions"], ensure_ascii=False))
    turn = list(bfcl["messages"])
    while turn and turn[0]["role"] == "system":
        system += "\n\n" + turn.pop(0)["content"]
    kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
    return [SystemMessage(system), *(kinds[m["role"]](m["content"]) for m in turn)]


class FunctionCallTask:
    """One tool-calling step: the cell's model answers ``{"calls": [...]}`` under a schema of the offered functions.

    ``models`` gives the chat model for a cell (e.g. a tier from runtimes.registry.TierRegistry); ``costs`` maps a
    tier to its (input, output) price per 1k tokens. A reply that is not usable JSON has no calls and an
    ``output_error`` saying why; it is scored as a failure rather than dropped.
    """

    def __init__(self, models: Callable[[Any], BaseChatModel], costs: Mapping[str, tuple[float, float]] | None = None,
                 max_tokens: int | None = None, max_calls: int = 8) -> None:
        if max_calls < 1:
            raise ValueError(f"max_calls must be >= 1, got {max_calls}")
        self.models, self.costs, self.max_tokens, self.max_calls = models, dict(costs or {}), max_tokens, max_calls

    def __call__(self, item: EvalItem, cell: Any) -> dict[str, Any]:
        bfcl = item.expected.get("bfcl")
        if not isinstance(bfcl, Mapping) or not isinstance(bfcl.get("functions"), list):
            raise ValueError(f"item {item.id}: expected.bfcl.functions is missing; load items with load_bfcl")
        if not bfcl["functions"]:  # nothing to call (a few live_irrelevance rows): the only reply is no call
            return {"calls": [], "call": "", "answer": "", "latency_ms": 0.0, "model_calls": [], "cost": 0.0}
        schema = calls_schema(bfcl["functions"], bfcl.get("language", "python"), self.max_calls)
        t0 = time.perf_counter()
        reply, usage = invoke_structured(self.models(cell), prompt_messages(bfcl), schema, name="function_call",
                                         costs=self.costs, max_tokens=self.max_tokens)
        calls = [{"name": str(c.get("name", "")), "arguments": c["arguments"] if isinstance(c.get("arguments"), dict)
                  else {}} for c in reply.get("calls") or [] if isinstance(c, dict)]
        text = render_calls(calls)
        return {"calls": calls, "call": text, "answer": text, "latency_ms": (time.perf_counter() - t0) * 1000,
                **usage}


# -- registration -------------------------------------------------------------------------------------------

def check_dataset(spec: DatasetSpec) -> None:
    """Suite-load check of ``dataset.category``: known AST categories only (ValueError lists the valid ones)."""
    check_categories(spec.category)


def load_dataset(spec: DatasetSpec, seed: int = 0) -> LoadedItems:
    """A suite's ``dataset: {kind: bfcl}``: its ``category`` (one or a list), from ``path`` or the installed package."""
    return load_bfcl(spec.category, spec.path, spec.limit, spec.skip_invalid)


def build_task(spec: TaskSpec, models: Callable[[Any], BaseChatModel],
               costs: Mapping[str, tuple[float, float]]) -> FunctionCallTask:
    """A suite's ``task: {kind: function_call}`` on each cell's model."""
    return FunctionCallTask(models, costs, max_tokens=spec.max_tokens, max_calls=spec.max_calls)


def register(registry: Registry) -> None:
    """Add BFCL's dataset kind, task kind and scorers to the eval registry."""
    registry.add_dataset("bfcl", load_dataset, fields={"category", "skip_invalid"}, check=check_dataset)
    registry.add_task("function_call", datasets={"bfcl"}, fields={"config", "max_tokens", "max_calls"},
                      build=build_task)
    registry.add_scorer("bfcl_ast", score_bfcl_ast)
    registry.add_scorer("bfcl_ast_errors", score_bfcl_ast_errors, quality=False,
                        metrics=("call_parsed", "calls_made", "args_missing", "args_extra", "args_wrong"))
