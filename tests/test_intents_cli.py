"""``tierflow intents`` CLI and bad-input handling: typed errors that name the file and line.

The CLI is exercised through typer's CliRunner on ``intents_app`` (registered as ``tierflow intents``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tierflow.agents.intents.data import Example, check_known_labels, check_trainable, load_examples
from tierflow.agents.intents.errors import IntentDataError, IntentModelError
from tierflow.agents.intents.model import TrainedIntentClassifier
from tierflow.intents_cli import EXIT_DATA_ERROR, EXIT_MODEL_ERROR, intents_app

runner = CliRunner()

TRAIN_ROWS = {
    "calculate": [
        "what is 4 plus 9",
        "multiply 6 by 8",
        "convert 3 miles to km",
        "what's 15% of 60",
        "divide 81 by 9",
        "square root of 49",
        "how many ounces in a pound",
        "what is 2 to the 5th",
    ],
    "write": [
        "write a poem about snow",
        "draft an email to my team",
        "compose a tweet about our launch",
        "write a thank you note",
        "summarize this text",
        "write a short story about a dragon",
        "draft a cover letter",
        "write a haiku about tea",
    ],
    "oos": [
        "what's the weather today",
        "tell me a joke",
        "what is my bank balance",
        "play some music",
        "hi there",
        "set an alarm for 6",
        "turn off the lights",
        "how are you",
    ],
}


def write_rows(path: Path, rows: list[dict] | list[str]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = [{"text": t, "label": label} for label, texts in TRAIN_ROWS.items() for t in texts]
    return write_rows(tmp_path_factory.mktemp("data") / "train.jsonl", rows)


@pytest.fixture(scope="module")
def model_dir(data_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "m"
    result = runner.invoke(
        intents_app, ["train", "--data", str(data_file), "--out", str(out), "--finetune-layers", "0"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["labels"] == 3 and 0.0 <= summary["threshold"] <= 1.0
    return out


def test_cli_train_writes_model_with_data_hash(model_dir: Path, data_file: Path) -> None:
    config = json.loads((model_dir / "intent_model.json").read_text())
    import hashlib

    assert config["metadata"]["data_sha256"] == hashlib.sha256(data_file.read_bytes()).hexdigest()
    assert config["metadata"]["val_split"] == "holdout"  # JSONL without --val-data: stratified hold-out


def test_cli_eval_prints_one_json_object(model_dir: Path, tmp_path: Path) -> None:
    test = write_rows(
        tmp_path / "test.jsonl",
        [
            {"text": "what is 12 times 12", "label": "calculate"},
            {"text": "write a limerick about a frog", "label": "write"},
            {"text": "is it going to rain tomorrow", "label": "oos"},
        ],
    )
    result = runner.invoke(
        intents_app,
        ["eval", "--data", str(test), "--model", str(model_dir), "--json", "--latency-queries", "10"],
    )
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert set(scores) == {
        "accuracy",
        "oos_recall",
        "oos_precision",
        "macro_f1",
        "n",
        "p50_ms",
        "p95_ms",
        "batch_qps",
    }
    assert scores["n"] == 3 and scores["accuracy"] == 1.0


def test_cli_predict_shows_label_confidence_flag_and_alternatives(model_dir: Path) -> None:
    result = runner.invoke(intents_app, ["predict", "--model", str(model_dir), "what is 7 times 6"])
    assert result.exit_code == 0, result.output
    assert "label: calculate" in result.stdout and "out_of_scope: false" in result.stdout
    assert "confidence:" in result.stdout and "alternatives:" in result.stdout

    as_json = runner.invoke(intents_app, ["predict", "--model", str(model_dir), "--json", "tell me a joke"])
    payload = json.loads(as_json.stdout)
    assert payload["out_of_scope"] is True and payload["label"] == "oos" and len(payload["alternatives"]) == 2


def test_cli_predict_defaults_to_the_demo_model() -> None:
    result = runner.invoke(intents_app, ["predict", "--json", "what is 12 times 7"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["label"] == "calculate"
    int8 = runner.invoke(intents_app, ["predict", "--json", "--precision", "int8", "what is 12 times 7"])
    assert int8.exit_code == 0, int8.output
    assert json.loads(int8.stdout)["label"] == "calculate"
    bad = runner.invoke(intents_app, ["predict", "--precision", "int4", "what is 12 times 7"])
    assert bad.exit_code != 0 and "precision must be one of fp32, int8" in bad.output


# -- bad input: the library raises IntentDataError(path, line); the CLI prints it on stderr ----------------


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(IntentDataError) as err:
        load_examples(empty)
    assert err.value.path == str(empty) and err.value.line == 1 and "empty" in str(err.value)


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ('{"text": "hello"}', "missing the field 'label'"),
        ('{"label": "write"}', "missing the field 'text'"),
        ('{"text": "", "label": "write"}', "non-empty string"),
        ("not json at all", "invalid JSON"),
        ('["a", "b"]', "JSON object"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, row: str, reason: str) -> None:
    path = write_rows(tmp_path / "rows.jsonl", ['{"text": "hi", "label": "oos"}', "", row])
    with pytest.raises(IntentDataError) as err:
        load_examples(path)
    assert err.value.line == 3 and err.value.path == str(path)
    assert reason in str(err.value) and f"{path}:3" in str(err.value)


def test_non_utf8_bytes_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"text": "ok", "label": "a"}\n{"text": "caf\xe9", "label": "b"}\n')
    with pytest.raises(IntentDataError) as err:
        load_examples(path)
    assert err.value.line == 2 and "UTF-8" in str(err.value)


def test_one_class_only_cannot_train(tmp_path: Path) -> None:
    path = write_rows(
        tmp_path / "one.jsonl", [{"text": f"what is {i} plus 1", "label": "calculate"} for i in range(5)]
    )
    with pytest.raises(IntentDataError, match="at least two classes") as err:
        check_trainable(load_examples(path), path)
    assert err.value.path == str(path)


def test_labels_unseen_in_training_are_rejected(tmp_path: Path) -> None:
    path = write_rows(
        tmp_path / "test.jsonl", [{"text": "2+2", "label": "calculate"}, {"text": "x", "label": "dance"}]
    )
    with pytest.raises(IntentDataError, match="'dance'") as err:
        check_known_labels(load_examples(path), ["calculate", "write"], path)
    assert err.value.line == 2


def test_missing_model_dir_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(IntentModelError, match="not an intent model directory"):
        TrainedIntentClassifier.load(tmp_path)


def test_clinc_split_file_is_read_with_its_oos_split(tmp_path: Path) -> None:
    path = tmp_path / "mini.json"
    path.write_text(
        json.dumps(
            {
                "train": [["add 2 and 2", "calculator"], ["hi", "greeting"]],
                "oos_train": [["what is love", "oos"]],
                "val": [],
            }
        )
    )
    assert load_examples(path, "train") == [
        Example("add 2 and 2", "calculator", 1),
        Example("hi", "greeting", 2),
        Example("what is love", "oos", 1),
    ]
    with pytest.raises(IntentDataError, match="split 'test' not found"):
        load_examples(path, "test")


def _run_cli_error(args: list[str]) -> tuple[int, str]:
    result = runner.invoke(intents_app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.exit_code, result.stderr


def test_cli_bad_input_exits_non_zero_with_message_on_stderr(tmp_path: Path, model_dir: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, err = _run_cli_error(["train", "--data", str(empty), "--out", str(tmp_path / "x"), "--no-progress"])
    assert code == EXIT_DATA_ERROR and str(empty) in err and "empty" in err

    missing = write_rows(tmp_path / "missing.jsonl", ['{"text": "a", "label": "b"}', '{"text": "c"}'])
    code, err = _run_cli_error(
        ["train", "--data", str(missing), "--out", str(tmp_path / "x"), "--no-progress"]
    )
    assert code == EXIT_DATA_ERROR and f"{missing}:2" in err

    one = write_rows(tmp_path / "one.jsonl", ['{"text": "a", "label": "b"}', '{"text": "c", "label": "b"}'])
    code, err = _run_cli_error(["train", "--data", str(one), "--out", str(tmp_path / "x"), "--no-progress"])
    assert code == EXIT_DATA_ERROR and "at least two classes" in err

    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"text": "\xff", "label": "a"}\n')
    code, err = _run_cli_error(["train", "--data", str(latin), "--out", str(tmp_path / "x"), "--no-progress"])
    assert code == EXIT_DATA_ERROR and f"{latin}:1" in err and "UTF-8" in err

    unseen = write_rows(
        tmp_path / "unseen.jsonl", ['{"text": "a", "label": "calculate"}', '{"text": "b", "label": "zz"}']
    )
    code, err = _run_cli_error(["eval", "--data", str(unseen), "--model", str(model_dir), "--json"])
    assert code == EXIT_DATA_ERROR and f"{unseen}:2" in err and "'zz'" in err

    code, err = _run_cli_error(["predict", "--model", str(tmp_path), "hello"])
    assert code == EXIT_MODEL_ERROR and "not an intent model directory" in err
