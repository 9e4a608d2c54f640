"""NESTFUL nested API-call plans from the ``nestful-wrapper`` package, a plan scorer, and a planning task.

Only the packaged data files are read (``data_v1/<collection>/...-data.json`` and ``...-spec.json``); none
of the package's code runs. A gold plan is a list of calls ``{"name", "arguments", "label": "var1"}`` where
an argument may use an earlier call's output as ``"$var1.field$"`` (also inside longer strings); its last
entry, ``var_result``, only names the outputs of the answer and is not an API call, so it is not scored.

Plan metrics (all in [0, 1], partial credit; see :func:`score_plan`):

- ``plan_exact``: full-sequence match: same number of calls, same functions in the same order, every
  argument right (references included).
- ``plan_names``: F1 of the multiset of function names, order ignored.
- ``plan_partial``: partial-sequence match: calls that are entirely right, in an order-preserving
  alignment with the gold calls, divided by the longer of the two sequences (extra calls cost too).
- ``plan_args``: F1 of arguments: an argument is right when its aligned gold call has the same key with
  an equal value (strings compare trimmed and case-insensitively, numeric strings as numbers, references
  by the call and field they point at).
- ``plan_deps``: F1 of dependency edges ``(call, argument, referenced call, field)``; absent when neither
  plan has references.

Predicted labels need not be ``var1``…: a reference counts as right when it points at the predicted call
that the alignment pairs with the gold call the gold reference points at.

:func:`register` adds dataset kind ``nestful``, task kind ``plan`` and scorers ``plan``/``plan_counts``.
"""

from __future__ import annotations

import importlib.util
import json
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage

from tierflow.evals.datasets import EvalItem, LoadedItems, _read_text
from tierflow.evals.errors import DatasetError
from tierflow.evals.tasks import invoke_structured

if TYPE_CHECKING:  # types only: the registry imports the benchmarks, never the other way round
    from tierflow.evals.registry import Registry
    from tierflow.evals.suite import DatasetSpec, TaskSpec

PACKAGE = "data_v1"  # nestful-wrapper ships its data as this top-level folder
RESULT_CALL = "var_result"
Collection = Literal["executable", "glaive", "sgd"]
COLLECTIONS: dict[str, tuple[str, str]] = {
    "executable": ("executable/executable-data.json", "executable/executable-spec.json"),
    "glaive": ("non-executable/non-executable-glaive-data.json", "non-executable/non-executable-glaive-spec.json"),
    "sgd": ("non-executable/non-executable-sgd-data.json", "non-executable/non-executable-sgd-spec.json"),
}
_REF = re.compile(r"\$([A-Za-z_][\w-]*)(?:\.([^$]*))?\$")
_LABEL = re.compile(r"^[A-Za-z_][\w-]*$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


# -- data ---------------------------------------------------------------------------------------------------

def nestful_data_dir() -> Path:
    """The ``data_v1/`` folder of the installed nestful-wrapper package (infra/setup.sh installs it)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("package nestful-wrapper is not installed; run infra/setup.sh (or "
                           "infra/setup.d/60-eval-data.sh)", PACKAGE)
    return Path(next(iter(spec.submodule_search_locations)))


def _array_rows(path: Path) -> list[tuple[int, int, Any]]:
    """(index, line, value) of each element of a top-level JSON array, with the line each element starts on."""
    text = _read_text(path)
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    if pos >= len(text) or text[pos] != "[":
        raise DatasetError("expected a JSON array of {\"input\", \"output\"} rows", path, text.count("\n", 0, pos) + 1)
    rows: list[tuple[int, int, Any]] = []
    pos = _skip_ws(text, pos + 1)
    line = 1 + text.count("\n", 0, pos)
    last = pos
    while pos < len(text) and text[pos] != "]":
        line += text.count("\n", last, pos)
        last = pos
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"invalid JSON in row {len(rows)}: {exc.msg}", path, exc.lineno) from None
        rows.append((len(rows), line, value))
        pos = _skip_ws(text, end)
        if pos < len(text) and text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
        elif pos < len(text) and text[pos] != "]":
            raise DatasetError(f"expected ',' or ']' after row {len(rows) - 1}", path, 1 + text.count("\n", 0, pos))
    if pos >= len(text):
        raise DatasetError("the JSON array is not closed", path, 1 + text.count("\n"))
    return rows


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _references(value: Any) -> list[tuple[str, str]]:
    """(label, field) of every ``$label.field$`` inside a value (strings, lists and dicts)."""
    if isinstance(value, str):
        return [(m.group(1), m.group(2) or "") for m in _REF.finditer(value)]
    if isinstance(value, list | tuple):
        return [ref for v in value for ref in _references(v)]
    if isinstance(value, dict):
        return [ref for v in value.values() for ref in _references(v)]
    return []


def _gold_plan(row: Any, path: Path, index: int, line: int, tools: Mapping[str, Any]) -> tuple[str, list, dict]:
    """Validate one data row: the request, its API calls (without var_result) and var_result's arguments."""
    where = f"row {index}"
    if not isinstance(row, dict):
        raise DatasetError(f"{where}: expected a JSON object with 'input' and 'output'", path, line)
    text = row.get("input")
    if not isinstance(text, str) or not text.strip():
        raise DatasetError(f"{where}: field 'input' must be a non-empty string", path, line)
    output = row.get("output")
    if not isinstance(output, list) or not output:
        raise DatasetError(f"{where}: field 'output' must be a non-empty list of calls", path, line)
    calls: list[dict[str, Any]] = []
    result: dict[str, Any] = {}
    labels: dict[str, int] = {}
    for number, call in enumerate(output):
        at = f"{where}, call {number}"
        if not isinstance(call, dict) or not isinstance(call.get("name"), str) or not call["name"].strip():
            raise DatasetError(f"{at}: expected an object with a non-empty string 'name'", path, line)
        args = call.get("arguments", {})
        if not isinstance(args, dict):
            raise DatasetError(f"{at} ({call['name']}): 'arguments' must be an object", path, line)
        if call["name"] != RESULT_CALL:  # var_result is not scored: its references are not checked either
            for label, _field in _references(args):
                if label not in labels:
                    raise DatasetError(f"{at} ({call['name']}): ${label}$ refers to no earlier call's label",
                                       path, line)
        if call["name"] == RESULT_CALL:
            if number != len(output) - 1:
                raise DatasetError(f"{at}: {RESULT_CALL} must be the last entry", path, line)
            result = args
            continue
        if call["name"] not in tools:
            raise DatasetError(f"{at}: function {call['name']!r} is not in the collection's -spec.json", path, line)
        label = call.get("label")
        if not isinstance(label, str) or not _LABEL.match(label):
            raise DatasetError(f"{at} ({call['name']}): 'label' must be a name like var1, got {label!r}", path, line)
        if label in labels:
            raise DatasetError(f"{at} ({call['name']}): label {label!r} repeats call {labels[label]}", path, line)
        labels[label] = number
        calls.append({"name": call["name"], "arguments": args, "label": label})
    if not calls:
        raise DatasetError(f"{where}: the plan has no API calls (only {RESULT_CALL})", path, line)
    return text.strip(), calls, result


def _tool_specs(path: Path) -> dict[str, dict[str, Any]]:
    specs: dict[str, dict[str, Any]] = {}
    for index, line, spec in _array_rows(path):
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"].strip():
            raise DatasetError(f"tool {index}: expected an object with a non-empty string 'name'", path, line)
        params = spec.get("query_parameters", {})
        if not isinstance(params, dict) or not all(isinstance(p, dict) for p in params.values()):
            raise DatasetError(f"tool {index} ({spec['name']}): 'query_parameters' must map names to objects",
                               path, line)
        if spec["name"] in specs:
            raise DatasetError(f"tool {index}: name {spec['name']!r} repeats an earlier tool", path, line)
        specs[spec["name"]] = spec
    if not specs:
        raise DatasetError("no tools found", path, 1)
    return specs


def compact_tool(spec: Mapping[str, Any], max_outputs: int = 12, max_description: int = 160) -> dict[str, Any]:
    """A tool as the plan prompt shows it: name, short description, parameters (``*`` = required), output fields."""
    params = spec.get("query_parameters") or {}
    shown = {name: f"{p.get('type', 'string')}{'*' if p.get('required') else ''}" for name, p in params.items()}
    outputs = list((spec.get("output_parameters") or {}).keys())
    description = " ".join(str(spec.get("description", "")).split())
    if len(description) > max_description:
        description = description[: max_description - 1] + "…"
    return {"name": spec["name"], "description": description, "parameters": shown,
            "outputs": outputs[:max_outputs]}


def load_nestful(collection: Collection = "executable", data_dir: Path | None = None, limit: int | None = None,
                 distractors: int = 2, seed: int = 0, skip_invalid: bool = True,
                 skipped: list[DatasetError] | None = None) -> LoadedItems:
    """Items of one NESTFUL collection; ``expected.nestful`` holds the gold calls and the tools to offer.

    The tools offered are the gold plan's functions plus ``distractors`` others of the same collection, picked
    per item from ``seed`` (NESTFUL v1 ships one catalogue per collection, not a tool list per sample), sorted
    by name so their order gives nothing away. ``limit`` takes the first rows before any is checked. A bad row
    raises DatasetError naming file, line and row index, or with ``skip_invalid`` is left out and kept in the
    result's ``skipped`` (and appended to ``skipped`` when given): the upstream glaive and sgd files have a few
    rows with repeated labels.
    """
    if collection not in COLLECTIONS:
        raise DatasetError(f"unknown NESTFUL collection {collection!r}; known: {', '.join(COLLECTIONS)}",
                           data_dir or PACKAGE)
    if distractors < 0:
        raise DatasetError(f"distractors must be >= 0, got {distractors}", data_dir or PACKAGE)
    data_dir = data_dir or nestful_data_dir()
    data_path, spec_path = (data_dir / rel for rel in COLLECTIONS[collection])
    tools = _tool_specs(spec_path)
    items = LoadedItems()
    rows = _array_rows(data_path)
    for index, line, row in rows[:limit] if limit is not None else rows:
        try:
            text, calls, result = _gold_plan(row, data_path, index, line, tools)
        except DatasetError as exc:
            if not skip_invalid:
                raise
            items.skipped.append(exc)
            if skipped is not None:
                skipped.append(exc)
            continue
        item_id = f"{collection}-{index}"
        used = sorted({c["name"] for c in calls})
        others = sorted(set(tools) - set(used))
        rng = random.Random(f"{seed}:{item_id}")
        offered = sorted(used + rng.sample(others, min(distractors, len(others))))
        items.append(EvalItem(id=item_id, input=text, line=line, group=collection, expected={"nestful": {
            "calls": calls, "result": result, "collection": collection,
            "tools": [compact_tool(tools[name]) for name in offered]}}))
    if not items and not items.skipped:
        raise DatasetError("no usable rows found", data_path, 1)
    return items


# -- scoring ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Ref:
    call: int  # index of the referenced call in its own plan (-1: the label names no call)
    field: str


def _canon(value: Any, labels: Mapping[str, int]) -> Any:
    """A comparable form of an argument value; references become the index of the call they point at."""
    if isinstance(value, bool) or value is None:
        return ("const", value)
    if isinstance(value, int | float):
        return ("num", float(value))
    if isinstance(value, str):
        text = " ".join(value.split())
        whole = _REF.fullmatch(text)
        if whole:
            return ("ref", _Ref(labels.get(whole.group(1), -1), (whole.group(2) or "").casefold()))
        if _REF.search(text):
            parts: list[Any] = []
            last = 0
            for m in _REF.finditer(text):
                target = _Ref(labels.get(m.group(1), -1), (m.group(2) or "").casefold())
                parts += [text[last:m.start()].casefold(), target]
                last = m.end()
            return ("text", tuple([*parts, text[last:].casefold()]))
        if _NUMBER.match(text):
            return ("num", float(text))
        return ("str", text.casefold())
    if isinstance(value, list | tuple):
        return ("list", tuple(_canon(v, labels) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((str(k), _canon(v, labels)) for k, v in value.items())))
    return ("other", repr(value))


def _remap(value: Any, mapping: Mapping[int, int]) -> Any:
    """A canonical predicted value with each reference's call index turned into its aligned gold index."""
    if isinstance(value, _Ref):
        return _Ref(mapping.get(value.call, -2), value.field)
    if isinstance(value, tuple):
        return tuple(_remap(v, mapping) for v in value)
    return value


def _literal_only(value: Any) -> Any:
    """A canonical value with reference targets blanked (used to align calls before the alignment is known)."""
    if isinstance(value, _Ref):
        return _Ref(0, value.field)
    if isinstance(value, tuple):
        return tuple(_literal_only(v) for v in value)
    return value


@dataclass(frozen=True)
class _Call:
    name: str
    args: dict[str, Any]  # canonical values


def _plan(calls: Sequence[Any]) -> list[_Call]:
    """Canonical calls of a plan; entries that are not ``{"name": str, ...}`` and var_result are dropped."""
    kept = [c for c in calls if isinstance(c, Mapping) and isinstance(c.get("name"), str) and c["name"] != RESULT_CALL]
    labels = {str(c["label"]): i for i, c in enumerate(kept) if isinstance(c.get("label"), str)}
    return [_Call(c["name"], {str(k): _canon(v, labels) for k, v in (c.get("arguments") or {}).items()}
                  if isinstance(c.get("arguments"), Mapping) else {}) for c in kept]


def _align(gold: list[_Call], pred: list[_Call]) -> list[tuple[int, int]]:
    """Order-preserving pairs (gold, pred) of same-named calls, most pairs first, then most agreeing arguments."""
    n, m = len(gold), len(pred)

    def weight(g: _Call, p: _Call) -> float:
        if g.name != p.name:
            return -1.0
        keys = set(g.args) | set(p.args)
        same = sum(k in g.args and k in p.args and _literal_only(g.args[k]) == _literal_only(p.args[k]) for k in keys)
        return 1.0 + 0.5 * (same / len(keys) if keys else 1.0)

    best = [[0.0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            w = weight(gold[i], pred[j])
            best[i][j] = max(best[i + 1][j], best[i][j + 1], best[i + 1][j + 1] + w if w > 0 else 0.0)
    pairs, i, j = [], 0, 0
    while i < n and j < m:
        w = weight(gold[i], pred[j])
        if w > 0 and best[i][j] == best[i + 1][j + 1] + w:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif best[i][j] == best[i + 1][j]:
            i += 1
        else:
            j += 1
    return pairs


def _f1(correct: int, predicted: int, expected: int) -> float:
    if predicted == 0 and expected == 0:
        return 1.0
    if correct == 0:
        return 0.0
    precision, recall = correct / predicted, correct / expected
    return 2 * precision * recall / (precision + recall)


def _edges(plan: list[_Call], mapping: Mapping[int, int] | None = None) -> Counter:
    """Dependency edges (call, argument, referenced call, field); predicted indices mapped to gold ones."""
    edges: Counter = Counter()

    def walk(value: Any, call: int, key: str) -> None:
        if isinstance(value, _Ref):
            target = value.call if mapping is None else mapping.get(value.call, -2)
            edges[(call, key, target, value.field)] += 1
        elif isinstance(value, tuple):
            for v in value:
                walk(v, call, key)

    for index, call in enumerate(plan):
        where = index if mapping is None else mapping.get(index, -2 - index)
        for key, value in call.args.items():
            walk(value, where, key)
    return edges


@dataclass
class PlanMatch:
    """How a predicted plan compares with the gold one; the metrics of :func:`score_plan` derive from it."""

    gold_calls: int
    predicted_calls: int
    exact: bool
    names_f1: float
    partial: float
    args_f1: float
    deps_f1: float | None


def match_plan(predicted: Sequence[Any], gold: Sequence[Any]) -> PlanMatch:
    """Compare a predicted call list with a gold one (both ``[{"name", "arguments", "label"}]``)."""
    g, p = _plan(gold), _plan(predicted)
    pairs = _align(g, p)
    p2g = {j: i for i, j in pairs}
    right_calls = right_args = 0
    for i, j in pairs:
        pred_args = {k: _remap(v, p2g) for k, v in p[j].args.items()}
        hits = sum(k in pred_args and pred_args[k] == v for k, v in g[i].args.items())
        right_args += hits
        right_calls += hits == len(g[i].args) == len(pred_args)
    names = sum((Counter(c.name for c in g) & Counter(c.name for c in p)).values())
    gold_edges, pred_edges = _edges(g), _edges(p, p2g)
    deps = None
    if gold_edges or pred_edges:
        deps = _f1(sum((gold_edges & pred_edges).values()), sum(pred_edges.values()), sum(gold_edges.values()))
    return PlanMatch(
        gold_calls=len(g), predicted_calls=len(p),
        exact=len(g) == len(p) == len(pairs) == right_calls and all(i == j for i, j in pairs),
        names_f1=_f1(names, len(p), len(g)),
        partial=right_calls / max(len(g), len(p)) if g or p else 1.0,
        args_f1=_f1(right_args, sum(len(c.args) for c in p), sum(len(c.args) for c in g)),
        deps_f1=deps)


def _gold_of(item: EvalItem) -> list[Any] | None:
    nestful = item.expected.get("nestful")
    if not isinstance(nestful, Mapping) or not isinstance(nestful.get("calls"), list):
        return None
    return nestful["calls"]


def _predicted(output: Mapping[str, Any]) -> list[Any]:
    calls = output.get("calls")
    return calls if isinstance(calls, list) else []


def score_plan(item: EvalItem, output: Mapping[str, Any]) -> dict[str, float]:
    """Quality metrics of ``output["calls"]`` against ``expected.nestful.calls`` (see the module docstring)."""
    gold = _gold_of(item)
    if gold is None:
        return {}
    match = match_plan(_predicted(output), gold)
    scores = {"plan_exact": float(match.exact), "plan_names": match.names_f1, "plan_partial": match.partial,
              "plan_args": match.args_f1}
    if match.deps_f1 is not None:
        scores["plan_deps"] = match.deps_f1
    return scores


def score_plan_counts(item: EvalItem, output: Mapping[str, Any]) -> dict[str, float]:
    """Report-only: ``plan_calls`` predicted, ``plan_gold_calls``, ``plan_valid`` (the model's JSON was usable)."""
    gold = _gold_of(item)
    if gold is None:
        return {}
    match = match_plan(_predicted(output), gold)
    return {"plan_calls": float(match.predicted_calls), "plan_gold_calls": float(match.gold_calls),
            "plan_valid": float(not output.get("output_error"))}


# -- the task -----------------------------------------------------------------------------------------------

_JSON_TYPES = {"string": "string", "number": "number", "integer": "integer", "boolean": "boolean",
               "array": "array", "object": "object", "float": "number", "int": "integer", "bool": "boolean",
               "list": "array", "dict": "object"}


def _argument_schema(kind: str, max_string: int) -> dict[str, Any]:
    """One parameter: its declared type, or a string (a ``$var.field$`` reference fits any parameter)."""
    text = {"type": "string", "maxLength": max_string}
    declared = _JSON_TYPES.get(kind.rstrip("*").strip().lower(), "string")
    return text if declared == "string" else {"anyOf": [{"type": declared}, text]}


def plan_schema(tools: Sequence[Mapping[str, Any]], max_calls: int, max_string: int = 100) -> dict[str, Any]:
    """JSON schema of a plan: up to ``max_calls`` calls labelled var1, var2, … of the offered ``tools``
    (:func:`compact_tool` form), each with that tool's parameters only, the required ones present."""
    labels = {"type": "string", "enum": [f"var{i}" for i in range(1, max_calls + 1)]}
    variants = []
    for tool in tools:
        params = dict(tool.get("parameters") or {})
        arguments = {"type": "object", "additionalProperties": False,
                     "properties": {name: _argument_schema(str(kind), max_string) for name, kind in params.items()},
                     "required": [name for name, kind in params.items() if str(kind).endswith("*")]}
        variants.append({"type": "object", "required": ["name", "label", "arguments"], "additionalProperties": False,
                         "properties": {"name": {"type": "string", "enum": [tool["name"]]}, "label": labels,
                                        "arguments": arguments}})
    return {"type": "object", "required": ["calls"], "additionalProperties": False, "properties": {"calls": {
        "type": "array", "minItems": 1, "maxItems": max_calls,
        "items": variants[0] if len(variants) == 1 else {"anyOf": variants}}}}


PLAN_PROMPT = """You plan API calls that answer the user's request. Available tools (parameters marked * are \
required; "outputs" are the fields a call returns):
{tools}
Reply with JSON {{"calls": [{{"name": ..., "label": "var1", "arguments": {{...}}}}, ...]}}: the calls in the \
order to make them, labelled var1, var2, ... To pass a field of an earlier call's output as an argument, write \
"$var1.field$"."""


class PlanTask:
    """Ask the cell's model for the call sequence under a JSON schema; returns ``calls`` plus tokens and cost.

    ``models`` gives the chat model for a cell (a tier from runtimes.registry.TierRegistry); ``costs`` maps a
    tier to its (input, output) price per 1k tokens. An answer that is not usable JSON is scored as an empty
    plan (``output_error`` says why) rather than dropped, so a weak model's failures count against it.
    """

    def __init__(self, models: Callable[[Any], BaseChatModel], costs: Mapping[str, tuple[float, float]] | None = None,
                 max_calls: int = 8, max_tokens: int | None = None) -> None:
        if max_calls < 1:
            raise ValueError(f"max_calls must be >= 1, got {max_calls}")
        self.models, self.costs, self.max_calls, self.max_tokens = models, dict(costs or {}), max_calls, max_tokens

    def __call__(self, item: EvalItem, cell: Any) -> dict[str, Any]:
        nestful = item.expected.get("nestful")
        if not isinstance(nestful, Mapping) or not isinstance(nestful.get("tools"), list) or not nestful["tools"]:
            raise ValueError(f"item {item.id}: expected.nestful.tools is missing; load items with load_nestful")
        tools = nestful["tools"]
        prompt = PLAN_PROMPT.format(tools="\n".join(json.dumps(t, ensure_ascii=False) for t in tools))
        schema = plan_schema(tools, self.max_calls)
        t0 = time.perf_counter()
        reply, usage = invoke_structured(self.models(cell), [SystemMessage(prompt), HumanMessage(item.input)], schema,
                                         name="plan", costs=self.costs, max_tokens=self.max_tokens)
        calls = reply.get("calls") if isinstance(reply.get("calls"), list) else []
        return {"calls": calls, "answer": json.dumps(calls, ensure_ascii=False),
                "latency_ms": (time.perf_counter() - t0) * 1000, **usage}


# -- registration -------------------------------------------------------------------------------------------

def load_dataset(spec: DatasetSpec, seed: int = 0) -> LoadedItems:
    """A suite's ``dataset: {kind: nestful}``; the rows ``skip_invalid`` leaves out are in the result's ``skipped``."""
    return load_nestful(spec.collection, spec.path, spec.limit, spec.distractors, seed, spec.skip_invalid)


def build_task(spec: TaskSpec, models: Callable[[Any], BaseChatModel],
               costs: Mapping[str, tuple[float, float]]) -> PlanTask:
    """A suite's ``task: {kind: plan}`` on each cell's model."""
    return PlanTask(models, costs, max_calls=spec.max_calls, max_tokens=spec.max_tokens)


def register(registry: Registry) -> None:
    """Add NESTFUL's dataset kind, task kind and scorers to the eval registry."""
    registry.add_dataset("nestful", load_dataset, fields={"collection", "distractors", "skip_invalid"})
    registry.add_task("plan", datasets={"nestful"}, fields={"config", "max_tokens", "max_calls"}, build=build_task)
    registry.add_scorer("plan", score_plan)
    registry.add_scorer("plan_counts", score_plan_counts, quality=False,
                        metrics=("plan_calls", "plan_gold_calls", "plan_valid"))
