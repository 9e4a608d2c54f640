"""The committed routing benchmark (evals/baselines/routing.items.jsonl: 100 items, each measured on tiny, mobile and
edge by `tierflow eval routing`) still supports the figures README states, replayed offline without a model."""

from pathlib import Path

import pytest

from tierflow.evals.routing import analyze, held_out_recommendation, read_items

ITEMS = Path(__file__).resolve().parent.parent / "evals" / "baselines" / "routing.items.jsonl"
TIERS = ["tiny", "mobile", "edge"]


@pytest.fixture(scope="module")
def report() -> dict:
    return analyze(read_items(ITEMS), TIERS, cleared_for_private=TIERS)


def test_the_recommended_cascade_keeps_edge_quality_on_far_fewer_edge_calls(report):
    edge = report["strategies"]["tier:edge"]["points"][0]
    rec = report["recommendation"]
    assert rec["found"] and rec["order"] == ["mobile", "edge"]
    assert rec["quality"] >= 0.95 * edge["quality"] and rec["strong_share"] <= 0.40  # the target
    assert rec["cost"] < edge["cost"]


def test_the_cascade_beats_every_single_tier_and_static_order_and_the_random_mix(report):
    strategies = report["strategies"]
    best = strategies["cascade:mobile+edge"]["metrics"]
    others = [s["metrics"]["aiq"] for name, s in strategies.items() if name.startswith(("tier:", "static:"))]
    assert best["aiq"] > max(others)
    assert best["above_random"]["everywhere"]  # strictly above the best random mix inside its cost range
    assert not any(report["privacy_violations"].values()) and report["budget_overrun_rows"] == 0


def test_calibrated_out_of_sample_the_cascade_still_meets_the_target():
    items = read_items(ITEMS)
    held = held_out_recommendation(items, TIERS, cleared_for_private=TIERS)
    edge_quality = sum(i.outcomes["edge"].passed for i in items) / len(items)
    assert held["items"] == len(items) == 100
    assert held["quality"] >= 0.95 * edge_quality and held["strong_share"] <= 0.40
