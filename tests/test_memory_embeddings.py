"""Memory's embedder is all-MiniLM-L6-v2 exactly as sentence-transformers runs it, without importing it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from tests.conftest import REPO
from tierflow.memory.embeddings import DIMENSIONS, Embedder, model_path

TEXTS = ["What is 17 times 23?", "Plan a weekend in Lisbon with Maria", "word " * 400, "café ünïcode 東京", ""]


def test_vectors_match_the_sentence_transformers_pipeline(embedder: Embedder):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(model_path()), device="cpu").encode(TEXTS, normalize_embeddings=True)
    mine = embedder.embed(TEXTS)
    assert mine.shape == (len(TEXTS), DIMENSIONS) and mine.dtype == np.float32
    # memories stored by earlier versions (sentence-transformers) and new queries stay comparable
    assert np.abs(mine - reference).max() < 1e-5
    assert np.allclose(np.linalg.norm(mine, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, DIMENSIONS)


def test_embedding_does_not_import_sentence_transformers():
    code = ("import sys; from tierflow.memory.embeddings import Embedder; Embedder().embed_one('hello'); "
            "print('sentence_transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_memory_and_the_demo_intent_classifier_share_one_copy_of_the_weights(embedder: Embedder):
    from tierflow.agents.intents.model import _shared_base_encoder, int8_encoder
    from tierflow.memory.embeddings import _load

    base = _shared_base_encoder(64)
    assert base.bert is _load(str(model_path())).model  # ~90 MB once per process, not twice
    quantized = int8_encoder(base)  # quantizes its own copy: memory's vectors do not change
    assert quantized.bert is not base.bert
    assert np.abs(embedder.embed(TEXTS[:2]) - _load(str(model_path())).encode(TEXTS[:2], 8)).max() == 0
