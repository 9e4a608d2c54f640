"""Loading labelled intent examples from JSONL or CLINC150's ``data_full.json``, with checks.

Every problem raises :class:`IntentDataError` naming the file and line, because bad training data
is the most common failure and a stack trace does not tell the user which row to fix.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tierflow.agents.intent import OUT_OF_SCOPE
from tierflow.agents.intents.errors import IntentDataError


@dataclass(frozen=True)
class Example:
    """One labelled utterance; ``line`` is where it came from (JSONL line or 1-based item index)."""

    text: str
    label: str
    line: int = 0


def file_sha256(path: str | Path) -> str:
    """Hash of the data file, recorded in model metadata so a model can be traced to its data."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _decode(raw: bytes, path: Path) -> str:
    """Decode UTF-8, reporting the line of the first bad byte instead of a codec traceback."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise IntentDataError(f"not valid UTF-8 (byte 0x{raw[exc.start]:02x})", path, line) from None


def _parse_row(obj: object, path: Path, line: int) -> Example:
    if not isinstance(obj, dict):
        raise IntentDataError('expected a JSON object like {"text": ..., "label": ...}', path, line)
    for key in ("text", "label"):
        if key not in obj:
            raise IntentDataError(f"row is missing the field {key!r}", path, line)
        if not isinstance(obj[key], str) or not obj[key].strip():
            raise IntentDataError(f"field {key!r} must be a non-empty string", path, line)
    return Example(text=obj["text"].strip(), label=obj["label"].strip(), line=line)


def _load_jsonl(text: str, path: Path) -> list[Example]:
    examples = []
    for number, raw_line in enumerate(text.splitlines(), start=1):
        if not raw_line.strip():
            continue
        try:
            obj = json.loads(raw_line)
        except json.JSONDecodeError as exc:
            raise IntentDataError(f"invalid JSON: {exc.msg}", path, number) from None
        examples.append(_parse_row(obj, path, number))
    return examples


def _load_clinc(text: str, path: Path, split: str) -> list[Example]:
    """CLINC150 ``data_full.json``: ``split`` plus its ``oos_<split>`` sibling, items ``[text, label]``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise IntentDataError(f"invalid JSON: {exc.msg}", path, exc.lineno) from None
    if not isinstance(data, dict):
        raise IntentDataError("expected a JSON object of splits (CLINC150 data_full.json layout)", path, 1)
    if split not in data:
        known = ", ".join(sorted(k for k in data if not k.startswith("oos_")))
        raise IntentDataError(f"split {split!r} not found (available: {known})", path)
    examples = []
    for part in (split, f"oos_{split}"):
        for index, item in enumerate(data.get(part, []), start=1):
            if not (isinstance(item, list) and len(item) == 2 and all(isinstance(v, str) for v in item)):
                raise IntentDataError(f"item {index} of split {part!r} is not [text, label]", path, index)
            text_, label = item[0].strip(), item[1].strip()
            if not text_ or not label:
                raise IntentDataError(
                    f"item {index} of split {part!r} has an empty text or label", path, index
                )
            label = OUT_OF_SCOPE if part.startswith("oos_") else label
            examples.append(Example(text=text_, label=label, line=index))
    return examples


def load_examples(path: str | Path, split: str | None = None) -> list[Example]:
    """Read labelled examples from a JSONL file, or from one split of a CLINC150-style JSON file.

    A ``.json`` file (or any file when ``split`` is given and it is not JSONL) is read as a dict of
    splits; otherwise each non-blank line must be ``{"text": ..., "label": ...}``.
    """
    path = Path(path)
    if not path.is_file():
        raise IntentDataError("file not found", path)
    text = _decode(path.read_bytes(), path)
    if not text.strip():
        raise IntentDataError("file is empty: no labelled examples", path, 1)
    if path.suffix == ".json" or _looks_like_split_file(text):
        examples = _load_clinc(text, path, split or "train")
    else:
        examples = _load_jsonl(text, path)
    if not examples:
        raise IntentDataError("no labelled examples found", path, 1)
    return examples


def _looks_like_split_file(text: str) -> bool:
    """A whole-file JSON object whose values are lists is a split file, not a one-row JSONL."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return False
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, list) for v in obj.values())


def check_trainable(examples: Sequence[Example], path: str | Path) -> list[str]:
    """Return the sorted in-scope labels, failing when fewer than two distinct classes are present."""
    labels = sorted({e.label for e in examples})
    in_scope = [label for label in labels if label != OUT_OF_SCOPE]
    if len(labels) < 2 or not in_scope:
        only = labels[0] if labels else "none"
        line = examples[-1].line if examples else None
        raise IntentDataError(
            f"need at least two classes to train, found only {only!r} in {len(examples)} rows", path, line
        )
    return labels


def check_known_labels(examples: Iterable[Example], known: Iterable[str], path: str | Path) -> None:
    """Fail on the first example whose label the model was never trained on (``oos`` is always known)."""
    known_set = set(known) | {OUT_OF_SCOPE}
    for example in examples:
        if example.label not in known_set:
            raise IntentDataError(
                f"label {example.label!r} does not occur in the model's training data", path, example.line
            )
