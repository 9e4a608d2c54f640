"""Dataset loaders and suite files: bad rows are reported with file and line, suites with the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.paths import CLINC150 as CLINC
from tierflow.evals.datasets import load_clinc150, load_jsonl
from tierflow.evals.errors import DatasetError, SuiteError
from tierflow.evals.suite import load_suite


def write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_rows_load_with_ids_expectations_and_line_numbers(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"id": "a", "input": " what is 2+2 ", "expected": {"contains": "4"}}', "",
                 '{"input": "hello"}')
    first, second = load_jsonl(path)
    assert (first.id, first.input, first.expected, first.line) == ("a", "what is 2+2", {"contains": "4"}, 1)
    assert (second.id, second.expected, second.line) == ("line-3", {}, 3)


@pytest.mark.parametrize(("row", "reason"), [
    ('{"id": "a", "input": ', "invalid JSON"),
    ('["a", "b"]', "expected a JSON object"),
    ('{"id": "b"}', "field 'input' must be a non-empty string"),
    ('{"id": "b", "input": "x", "expected": "4"}', "field 'expected' must be a JSON object"),
    ('{"id": "b", "input": "x", "answer": "4"}', "unknown field(s) answer"),
    ('{"id": "a", "input": "again"}', "id 'a' repeats the one on line 1"),
])
def test_bad_jsonl_rows_name_the_file_and_line(tmp_path, row, reason):
    path = write(tmp_path / "d.jsonl", '{"id": "a", "input": "fine"}', row)
    with pytest.raises(DatasetError) as caught:
        load_jsonl(path)
    assert caught.value.line == 2 and caught.value.path == path
    assert str(caught.value).startswith(f"{path}:2: ") and reason in str(caught.value)


def test_missing_empty_and_non_utf8_files(tmp_path):
    with pytest.raises(DatasetError, match="file not found"):
        load_jsonl(tmp_path / "none.jsonl")
    with pytest.raises(DatasetError, match="no rows found"):
        load_jsonl(write(tmp_path / "empty.jsonl", ""))
    (tmp_path / "bin.jsonl").write_bytes(b'{"input": "ok"}\n{"input": "\xff"}\n')
    with pytest.raises(DatasetError, match=r"bin.jsonl:2: not valid UTF-8"):
        load_jsonl(tmp_path / "bin.jsonl")


def test_clinc150_test_split_samples_every_intent_and_out_of_scope():
    items = load_clinc150(CLINC, "test", per_label=2)
    labels = [i.expected["label"] for i in items]
    assert len(set(labels)) == 151 and labels.count("oos") == 2 and len(items) == 302
    assert items[-1].id.startswith("oos_test-")


def test_bad_clinc_files_name_the_item(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"test": [["hi", "greet"], ["", "greet"]], "oos_test": []}))
    with pytest.raises(DatasetError, match=r"c.json:2: item 2 of split 'test' is not \[text, label\]"):
        load_clinc150(path, "test")
    with pytest.raises(DatasetError, match="split 'val' not found"):
        load_clinc150(path, "val")


def test_shipped_suites_load_and_resolve_their_data():
    suite = load_suite("intents-small")
    assert suite.task.kind == "intent" and suite.dataset.path.is_file() and suite.gate
    e2e = load_suite("e2e-small")
    assert e2e.task.kind == "run" and e2e.task.config.is_file() and len(e2e.matrix.cells()) == 4
    assert load_suite("intents-clinc150").dataset.path.resolve() == CLINC


def test_bad_suites_say_what_is_wrong(tmp_path):
    with pytest.raises(SuiteError, match="suite 'nope' not found"):
        load_suite("nope")
    bad = write(tmp_path / "s.yaml", "name: s", "dataset: {path: d.jsonl}", "task: {kind: translate}",
                "scorers: [intent]")
    with pytest.raises(SuiteError, match=r"s.yaml: task.kind: Input should be 'intent', 'run', 'function_call' or"):
        load_suite(bad)
    unknown = write(tmp_path / "u.yaml", "name: u", "dataset: {path: d.jsonl}", "task: {kind: intent}",
                    "scorers: [rouge]")
    with pytest.raises(SuiteError, match="unknown scorer 'rouge'"):
        load_suite(unknown)
