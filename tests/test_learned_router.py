"""The learned router's model: per-tier logistic regressions, the cheapest-passing choice, its saved folder."""

import json

import numpy as np
import pytest

from tierflow.runtimes.learned_router import (
    FORMAT_VERSION,
    METADATA_FILE,
    WEIGHTS_FILE,
    LearnedRouter,
    LearnedRouterError,
    binary_metrics,
)

TIERS = ["tiny", "mobile", "edge"]
NAMES = ["difficulty", "noise", "tools"]


def synthetic(n: int = 300, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Items whose difficulty decides which tiers pass: tiny only easy ones, mobile medium, edge nearly all."""
    rng = np.random.default_rng(seed)
    difficulty = rng.uniform(0, 1, n)
    X = np.column_stack([difficulty, rng.normal(0, 1, n), rng.integers(0, 3, n)])
    Y = {"tiny": (difficulty < 0.3).astype(float), "mobile": (difficulty < 0.7).astype(float),
         "edge": (difficulty < 0.97).astype(float)}
    return X, Y


def fitted() -> LearnedRouter:
    X, Y = synthetic()
    return LearnedRouter(l2=1.0).fit(X, Y, TIERS, {"tiny": 0.001, "mobile": 0.003, "edge": 0.01}, NAMES,
                                     {"encoder": "synthetic"})


def test_choose_picks_the_cheapest_tier_predicted_to_pass():
    router = fitted()
    easy, medium, hard = [0.1, 0.0, 1.0], [0.5, 0.0, 1.0], [0.9, 0.0, 1.0]
    assert router.choose(easy, 0.8, TIERS)[0] == "tiny"
    assert router.choose(medium, 0.8, TIERS)[0] == "mobile"
    tier, p, reason = router.choose(hard, 0.8, TIERS)
    assert tier == "edge" and p >= 0.8 and reason == f"learned router: edge predicted {p:.2f} >= 0.80"
    p_easy = router.predict(easy)
    assert list(p_easy) == TIERS and all(v > 0.9 for v in p_easy.values())
    # a tier the run may not use (privacy, budget) is skipped; the next cheapest passing one is taken
    assert router.choose(easy, 0.8, ["mobile", "edge"])[0] == "mobile"
    # nothing clears the bar: the likeliest allowed tier, said so
    tier, p, reason = router.choose(hard, 0.8, ["tiny", "mobile"])
    assert tier == "mobile" and p < 0.8 and "no tier predicted >= 0.80" in reason
    with pytest.raises(LearnedRouterError, match="none of the allowed tiers"):
        router.choose(easy, 0.8, ["cloud"])


def test_predictions_are_calibrated_enough_to_rank_and_fitting_is_deterministic():
    router = fitted()
    X, Y = synthetic(200, seed=1)
    P = router.predict_array(X)
    for k, tier in enumerate(TIERS):
        metrics = binary_metrics(Y[tier], P[:, k])
        assert metrics["auc"] is None or metrics["auc"] > 0.95, (tier, metrics)
        assert metrics["brier"] < 0.08 and metrics["accuracy"] > 0.9
    again = fitted()
    assert np.array_equal(again.coef, router.coef) and np.array_equal(again.intercept, router.intercept)


def test_a_tier_that_always_passes_gets_a_finite_smoothed_rate_and_missing_outcomes_are_skipped():
    X, Y = synthetic(50)
    Y["edge"] = np.ones(50)
    Y["mobile"][:10] = np.nan  # mobile did not run these items
    router = LearnedRouter().fit(X, Y, TIERS, {}, NAMES)
    assert router.predict(X[0])["edge"] == pytest.approx(51 / 52)
    assert router.metadata["tiers_trained"]["mobile"]["items"] == 40


def test_save_and_load_round_trip_gives_equal_predictions(tmp_path):
    router = fitted()
    router.save(tmp_path / "r")
    meta = json.loads((tmp_path / "r" / METADATA_FILE).read_text())
    assert meta["format_version"] == FORMAT_VERSION and meta["tiers"] == TIERS and meta["feature_names"] == NAMES
    assert meta["costs"]["edge"] == 0.01 and meta["metadata"]["encoder"] == "synthetic" and meta["created"]
    assert set(meta["train_pass_rate"]) == set(TIERS)
    loaded = LearnedRouter.load(tmp_path / "r")
    X, _ = synthetic(20, seed=3)
    assert np.allclose(loaded.predict_array(X), router.predict_array(X), rtol=0, atol=1e-12)
    assert loaded.tiers == TIERS and loaded.costs == router.costs and loaded.feature_names == NAMES


def test_bad_folders_fail_with_an_error_naming_the_folder_and_the_problem(tmp_path):
    with pytest.raises(LearnedRouterError, match="does not exist"):
        LearnedRouter.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LearnedRouterError, match=f"{tmp_path / 'empty'} has no {METADATA_FILE}"):
        LearnedRouter.load(tmp_path / "empty")
    folder = fitted().save(tmp_path / "r")
    meta = json.loads((folder / METADATA_FILE).read_text())
    (folder / METADATA_FILE).write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(LearnedRouterError, match="unsupported format_version 99"):
        LearnedRouter.load(folder)
    (folder / METADATA_FILE).write_text(json.dumps({**meta, "feature_names": [*NAMES, "extra"]}))
    with pytest.raises(LearnedRouterError, match="shape"):
        LearnedRouter.load(folder)
    (folder / METADATA_FILE).write_text("{not json")
    with pytest.raises(LearnedRouterError, match="malformed"):
        LearnedRouter.load(folder)
    (folder / METADATA_FILE).write_text(json.dumps(meta))
    (folder / WEIGHTS_FILE).write_bytes(b"garbage")
    with pytest.raises(LearnedRouterError, match="unreadable"):
        LearnedRouter.load(folder)


def test_a_feature_vector_of_the_wrong_size_is_refused():
    with pytest.raises(LearnedRouterError, match="does not match the router's 3 features"):
        fitted().predict([1.0, 2.0])


def test_auc_counts_ties_half():
    assert binary_metrics([0, 1, 0, 1], [0.1, 0.9, 0.5, 0.5])["auc"] == pytest.approx(0.875)
    assert binary_metrics([1, 1], [0.2, 0.3])["auc"] is None
