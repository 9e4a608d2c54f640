"""BFCL (Berkeley Function-Calling Leaderboard) data from the ``bfcl-eval`` package, and an AST-match scorer.

Only the packaged JSON-lines files are read (``data/BFCL_v*_<category>.json`` and ``data/possible_answer/``);
none of bfcl-eval's code runs. A model's call string is parsed with :mod:`ast` and never evaluated.
:func:`register` adds dataset kind ``bfcl``, task kind ``function_call`` and scorers ``bfcl_ast``/``bfcl_ast_errors``.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage

from tierflow.evals.datasets import EvalItem, _read_text
from tierflow.evals.errors import DatasetError
from tierflow.evals.tasks import invoke_structured
from tierflow.runtimes.errors import TierflowError

if TYPE_CHECKING:  # types only: the registry imports the benchmarks, never the other way round
    from tierflow.evals.registry import Registry
    from tierflow.evals.suite import DatasetSpec, TaskSpec

PACKAGE = "bfcl_eval"
_STRIP = re.compile(r"[ ,./\-_*^]")  # what BFCL's standardize_string drops before comparing strings


def bfcl_data_dir() -> Path:
    """The ``data/`` folder of the installed bfcl-eval package (infra/setup.d/60-eval-data.sh installs it)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("package bfcl-eval is not installed; run infra/setup.d/60-eval-data.sh", PACKAGE)
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def category_files(category: str, data_dir: Path | None = None) -> tuple[Path, Path]:
    """The question and possible-answer files of one category, newest BFCL version first (v4 over v3)."""
    data_dir = data_dir or bfcl_data_dir()
    found = sorted(data_dir.glob(f"BFCL_v*_{category}.json"),
                   key=lambda p: int(re.match(r"BFCL_v(\d+)_", p.name).group(1)))  # type: ignore[union-attr]
    if not found:
        raise DatasetError(f"no question file for category {category!r} (BFCL_v*_{category}.json)", data_dir)
    questions = found[-1]
    return questions, data_dir / "possible_answer" / questions.name


def _json_rows(path: Path) -> list[tuple[int, Any]]:
    rows = []
    for number, raw in enumerate(_read_text(path).splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            rows.append((number, json.loads(raw)))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"invalid JSON: {exc.msg} (column {exc.colno})", path, number) from None
    if not rows:
        raise DatasetError("no rows found", path, 1)
    return rows


def _question(obj: Any, path: Path, line: int) -> tuple[str, str, dict[str, Any]]:
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or not obj["id"].strip():
        raise DatasetError('expected a JSON object with a non-empty string "id"', path, line)
    turns = obj.get("question")
    if not (isinstance(turns, list) and turns and isinstance(turns[0], list)):
        raise DatasetError("field 'question' must be a non-empty list of turns (lists of messages)", path, line)
    user = [m.get("content") for m in turns[0] if isinstance(m, dict) and m.get("role") == "user"]
    if not user or not all(isinstance(c, str) and c.strip() for c in user):
        raise DatasetError("the first turn has no user message with non-empty string content", path, line)
    functions = obj.get("function")
    if not (isinstance(functions, list) and len(functions) == 1 and isinstance(functions[0], dict)):
        raise DatasetError("field 'function' must list exactly one function (a simple category)", path, line)
    function = functions[0]
    params = function.get("parameters")
    if not (isinstance(function.get("name"), str) and isinstance(params, dict)
            and isinstance(params.get("properties"), dict)):
        raise DatasetError("the function needs a string 'name' and 'parameters' with 'properties'", path, line)
    return obj["id"], "\n".join(c.strip() for c in user), function


def _answer(obj: Any, path: Path, line: int) -> tuple[str, dict[str, dict[str, list[Any]]]]:
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
        raise DatasetError('expected a JSON object with a string "id"', path, line)
    truth = obj.get("ground_truth")
    if not (isinstance(truth, list) and len(truth) == 1 and isinstance(truth[0], dict) and len(truth[0]) == 1):
        raise DatasetError("field 'ground_truth' must be [{function_name: {param: [acceptable values]}}]", path, line)
    (name, args), = truth[0].items()
    if not isinstance(args, dict) or not all(isinstance(v, list) and v for v in args.values()):
        raise DatasetError(f"ground truth of {name!r}: every parameter needs a non-empty list of values", path, line)
    return obj["id"], {name: args}


def load_bfcl(category: str = "simple_python", data_dir: Path | None = None,
              limit: int | None = None) -> list[EvalItem]:
    """Items of one BFCL single-call category; ``expected.bfcl`` holds the function schema and possible answers.

    Bad rows raise DatasetError naming the file and line; a question without an answer names its own line.
    """
    questions, answers_path = category_files(category, data_dir)
    answers: dict[str, tuple[int, dict[str, dict[str, list[Any]]]]] = {}
    for line, obj in _json_rows(answers_path):
        answer_id, truth = _answer(obj, answers_path, line)
        if answer_id in answers:
            raise DatasetError(f"id {answer_id!r} repeats the one on line {answers[answer_id][0]}", answers_path, line)
        answers[answer_id] = (line, truth)
    items: list[EvalItem] = []
    seen: set[str] = set()
    for line, obj in _json_rows(questions):
        item_id, text, function = _question(obj, questions, line)
        if item_id in seen:
            raise DatasetError(f"id {item_id!r} repeats an earlier question", questions, line)
        seen.add(item_id)
        if item_id not in answers:
            raise DatasetError(f"id {item_id!r} has no row in {answers_path.name} of possible_answer/", questions, line)
        truth = answers[item_id][1]
        if function["name"] not in truth:
            raise DatasetError(f"possible answer names {next(iter(truth))!r}, the question offers "
                               f"{function['name']!r}", answers_path, answers[item_id][0])
        items.append(EvalItem(id=item_id, input=text, line=line,
                              expected={"bfcl": {"function": function, "ground_truth": truth}}))
        if limit is not None and len(items) >= limit:
            break
    return items


class CallParseError(TierflowError, ValueError):
    """A model's output is not one Python call with keyword arguments of literal values."""


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    raise CallParseError(f"function must be a (dotted) name, got {ast.unparse(node)!r}")


def parse_call(text: str) -> tuple[str, dict[str, Any]]:
    """``name(a=1, b="x")`` (optionally inside ``[...]``) as (name, arguments), via ``ast.literal_eval`` only."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise CallParseError(f"not Python syntax: {exc.msg}") from None
    if isinstance(tree, ast.List | ast.Tuple) and len(tree.elts) == 1:
        tree = tree.elts[0]
    if not isinstance(tree, ast.Call):
        raise CallParseError("expected a single function call")
    if tree.args or any(k.arg is None for k in tree.keywords):
        raise CallParseError("only keyword arguments are accepted (name=value)")
    args: dict[str, Any] = {}
    for keyword in tree.keywords:
        try:
            args[str(keyword.arg)] = ast.literal_eval(keyword.value)
        except (ValueError, TypeError, SyntaxError, RecursionError):
            raise CallParseError(f"argument {keyword.arg!r} is not a literal: {ast.unparse(keyword.value)}") from None
    return _dotted(tree.func), args


def _norm(value: Any) -> Any:
    """BFCL's comparison form: strings lose spaces and ``,./-_*^`` and are lowercased; numbers compare by value."""
    if isinstance(value, bool) or value is None:
        return ("const", value)
    if isinstance(value, int | float):
        return ("num", float(value))
    if isinstance(value, str):
        return ("str", _STRIP.sub("", value).lower().replace("'", '"'))
    if isinstance(value, list | tuple):
        return ("list", tuple(_norm(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((str(k), _norm(v)) for k, v in value.items())))
    return ("other", repr(value))


def _value_ok(value: Any, acceptable: Any) -> bool:
    """One acceptable value; a dict of lists (BFCL's nested answer) is matched key by key, "" marking optional."""
    if isinstance(acceptable, dict) and acceptable and all(isinstance(v, list) for v in acceptable.values()):
        if not isinstance(value, dict) or set(value) - set(acceptable):
            return False
        return all(any(_value_ok(value[k], v) for v in options if v != "") if k in value else "" in options
                   for k, options in acceptable.items())
    return _norm(value) == _norm(acceptable)


@dataclass
class CallMatch:
    """How a call string compares with one possible answer; ``correct`` counts satisfied expected parameters."""

    parsed: bool
    name_match: bool = False
    correct: int = 0
    expected: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def args_match(self) -> float:
        """Share of parameters right, counting extra arguments against it; 0 when the function is wrong."""
        if not self.name_match:
            return 0.0
        total = self.expected + len(self.extra)
        return self.correct / total if total else 1.0

    @property
    def exact(self) -> bool:
        return self.name_match and not (self.missing or self.extra or self.wrong)


def match_call(text: str, ground_truth: Mapping[str, Mapping[str, list[Any]]]) -> CallMatch:
    """Compare a call string with BFCL possible answers; ``""`` among a parameter's values makes it optional."""
    try:
        name, args = parse_call(text)
    except CallParseError as exc:
        return CallMatch(parsed=False, error=str(exc))
    want_name, want = next(iter(ground_truth.items()))
    result = CallMatch(parsed=True, name_match=name == want_name, expected=len(want))
    if not result.name_match:
        result.error = f"called {name!r}, expected {want_name!r}"
        return result
    for param, acceptable in want.items():
        if param not in args:
            if "" in acceptable:
                result.correct += 1
            else:
                result.missing.append(param)
        elif any(_value_ok(args[param], v) for v in acceptable if v != ""):
            result.correct += 1
        else:
            result.wrong.append(param)
    result.extra = sorted(set(args) - set(want))
    return result


def _match_for(item: EvalItem, output: Mapping[str, Any]) -> CallMatch | None:
    bfcl = item.expected.get("bfcl")
    if not isinstance(bfcl, Mapping) or "ground_truth" not in bfcl:
        return None
    return match_call(str(output.get("call") or ""), bfcl["ground_truth"])


def score_bfcl_ast(item: EvalItem, output: Mapping[str, Any]) -> dict[str, float]:
    """Quality metrics of ``output["call"]``: ``bfcl_ast`` (exact), ``name_match``, ``args_match`` (partial)."""
    match = _match_for(item, output)
    if match is None:
        return {}
    return {"bfcl_ast": float(match.exact), "name_match": float(match.name_match), "args_match": match.args_match}


def score_bfcl_ast_errors(item: EvalItem, output: Mapping[str, Any]) -> dict[str, float]:
    """Report-only counts: ``call_parsed`` and the ``args_missing``/``args_extra``/``args_wrong`` of the call."""
    match = _match_for(item, output)
    if match is None:
        return {}
    return {"call_parsed": float(match.parsed), "args_missing": float(len(match.missing)),
            "args_extra": float(len(match.extra)), "args_wrong": float(len(match.wrong))}


_TYPES = {"dict": "object", "float": "number", "tuple": "array", "integer": "integer", "string": "string",
          "boolean": "boolean", "array": "array", "object": "object", "number": "number"}


def to_json_schema(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A BFCL parameter spec (types like ``dict``, ``float``, ``tuple``, ``any``) as standard JSON Schema."""
    out: dict[str, Any] = {k: v for k, v in spec.items() if k in ("description", "enum", "required")}
    kind = spec.get("type")
    if kind in _TYPES:
        out["type"] = _TYPES[kind]
    if isinstance(spec.get("properties"), Mapping):
        out["properties"] = {k: to_json_schema(v) for k, v in spec["properties"].items() if isinstance(v, Mapping)}
    if isinstance(spec.get("items"), Mapping):
        out["items"] = to_json_schema(spec["items"])
    return out


def render_call(name: str, arguments: Mapping[str, Any]) -> str:
    """``name(k=v, ...)`` with Python literals, the form BFCL's AST checker reads."""
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in arguments.items())})"


class FunctionCallTask:
    """One tool-calling step: the cell's model answers ``{"name", "arguments"}`` under the function's schema.

    ``models`` gives the chat model for a cell (e.g. a tier from runtimes.registry.TierRegistry); ``costs`` maps a
    tier to its (input, output) price per 1k tokens. A reply that is not usable JSON becomes an empty call
    (``output_error`` says why), scored as unparsed rather than dropped.
    """

    def __init__(self, models: Callable[[Any], BaseChatModel], costs: Mapping[str, tuple[float, float]] | None = None,
                 max_tokens: int | None = None) -> None:
        self.models, self.costs, self.max_tokens = models, dict(costs or {}), max_tokens

    def __call__(self, item: EvalItem, cell: Any) -> dict[str, Any]:
        bfcl = item.expected.get("bfcl")
        if not isinstance(bfcl, Mapping) or not isinstance(bfcl.get("function"), Mapping):
            raise ValueError(f"item {item.id}: expected.bfcl.function is missing; load items with load_bfcl")
        function = bfcl["function"]
        schema = {"type": "object", "required": ["name", "arguments"], "additionalProperties": False,
                  "properties": {"name": {"type": "string", "enum": [function["name"]]},
                                 "arguments": to_json_schema(function["parameters"])}}
        prompt = (f"Call this function to answer the user. Reply with JSON {{\"name\": ..., \"arguments\": {{...}}}}."
                  f"\nFunction: {json.dumps(function)}")
        t0 = time.perf_counter()
        reply, usage = invoke_structured(self.models(cell), [SystemMessage(prompt), HumanMessage(item.input)], schema,
                                         name="function_call", costs=self.costs, max_tokens=self.max_tokens)
        arguments = reply.get("arguments")
        call = render_call(str(reply.get("name", "")), arguments if isinstance(arguments, Mapping) else {}) \
            if reply else ""
        return {"call": call, "answer": call, "latency_ms": (time.perf_counter() - t0) * 1000, **usage}


def load_dataset(spec: DatasetSpec, seed: int = 0) -> list[EvalItem]:
    """A suite's ``dataset: {kind: bfcl}``: its ``category``, from ``path`` or the installed package."""
    return load_bfcl(spec.category, spec.path, spec.limit)


def build_task(spec: TaskSpec, models: Callable[[Any], BaseChatModel],
               costs: Mapping[str, tuple[float, float]]) -> FunctionCallTask:
    """A suite's ``task: {kind: function_call}`` on each cell's model."""
    return FunctionCallTask(models, costs, max_tokens=spec.max_tokens)


def register(registry: Registry) -> None:
    """Add BFCL's dataset kind, task kind and scorers to the eval registry."""
    registry.add_dataset("bfcl", load_dataset, fields={"category"})
    registry.add_task("function_call", datasets={"bfcl"}, fields={"config", "max_tokens"}, build=build_task)
    registry.add_scorer("bfcl_ast", score_bfcl_ast)
    registry.add_scorer("bfcl_ast_errors", score_bfcl_ast_errors, quality=False,
                        metrics=("call_parsed", "args_missing", "args_extra", "args_wrong"))
