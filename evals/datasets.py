"""Eval datasets: JSONL of your own and CLINC150, validated row by row into :class:`EvalItem`."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tierflow.evals.errors import DatasetError

OUT_OF_SCOPE = "oos"


class EvalItem(BaseModel):
    """One case: an ``id`` unique in its dataset, the ``input`` a task gets, what the scorers expect.

    ``group`` (e.g. a BFCL category) is what reports break results down by; None puts the item in no group.
    """

    id: str
    input: str
    expected: dict[str, Any] = Field(default_factory=dict)
    line: int = 0
    group: str | None = None


class LoadedItems(list[EvalItem]):
    """The items a loader kept, plus ``skipped``: the rows it left out as invalid, one DatasetError each.

    A plain list to every caller; reports read ``skipped`` to say how many rows a dataset lost and why.
    """

    def __init__(self, items: Iterable[EvalItem] = (), skipped: Iterable[DatasetError] = ()) -> None:
        super().__init__(items)
        self.skipped: list[DatasetError] = list(skipped)


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise DatasetError("file not found", path)
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"not valid UTF-8 (byte 0x{raw[exc.start]:02x})", path,
                           raw[: exc.start].count(b"\n") + 1) from None


def _row(obj: object, path: Path, line: int) -> EvalItem:
    if not isinstance(obj, dict):
        raise DatasetError('expected a JSON object like {"id": ..., "input": ..., "expected": {...}}', path, line)
    unknown = set(obj) - {"id", "input", "expected"}
    if unknown:
        raise DatasetError(f"unknown field(s) {', '.join(sorted(unknown))}; allowed: id, input, expected", path, line)
    text = obj.get("input")
    if not isinstance(text, str) or not text.strip():
        raise DatasetError("field 'input' must be a non-empty string", path, line)
    expected = obj.get("expected", {})
    if not isinstance(expected, dict):
        raise DatasetError("field 'expected' must be a JSON object", path, line)
    item_id = obj.get("id", f"line-{line}")
    if not isinstance(item_id, str | int) or isinstance(item_id, bool) or not str(item_id).strip():
        raise DatasetError("field 'id' must be a non-empty string or integer", path, line)
    return EvalItem(id=str(item_id), input=text.strip(), expected=expected, line=line)


def load_jsonl(path: str | Path, limit: int | None = None) -> list[EvalItem]:
    """Rows ``{"id", "input", "expected"}``, one per non-blank line; bad rows raise DatasetError naming the line."""
    path = Path(path)
    items: list[EvalItem] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(_read_text(path).splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"invalid JSON: {exc.msg} (column {exc.colno})", path, number) from None
        item = _row(obj, path, number)
        if item.id in seen:
            raise DatasetError(f"id {item.id!r} repeats the one on line {seen[item.id]}", path, number)
        seen[item.id] = number
        items.append(item)
        if limit is not None and len(items) >= limit:
            break
    if not items:
        raise DatasetError("no rows found", path, 1)
    return items


def load_clinc150(path: str | Path, split: str = "test", per_label: int | None = None,
                  limit: int | None = None) -> list[EvalItem]:
    """One split of CLINC150 ``data_full.json`` plus its ``oos_<split>``; ``expected.label`` is the intent or oos.

    ``per_label`` keeps the first N items of each label, a stratified sample that still covers every intent.
    """
    path = Path(path)
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"invalid JSON: {exc.msg}", path, exc.lineno) from None
    if not isinstance(data, dict) or split not in data:
        known = ", ".join(sorted(k for k in data if not k.startswith("oos_"))) if isinstance(data, dict) else "none"
        raise DatasetError(f"split {split!r} not found (available: {known})", path)
    items: list[EvalItem] = []
    taken: dict[str, int] = defaultdict(int)
    for part in (split, f"oos_{split}"):
        rows = data.get(part, [])
        if not isinstance(rows, list):
            raise DatasetError(f"split {part!r} is not a list of [text, label] items", path)
        for index, row in enumerate(rows, start=1):
            if not (isinstance(row, list) and len(row) == 2 and all(isinstance(v, str) and v.strip() for v in row)):
                raise DatasetError(f"item {index} of split {part!r} is not [text, label] with non-empty strings",
                                   path, index)
            label = OUT_OF_SCOPE if part.startswith("oos_") else row[1].strip()
            if per_label is not None and taken[label] >= per_label:
                continue
            taken[label] += 1
            items.append(EvalItem(id=f"{part}-{index}", input=row[0].strip(), expected={"label": label}, line=index))
    if limit is not None:
        items = items[:limit]
    if not items:
        raise DatasetError(f"split {split!r} has no items", path)
    return items
