"""Offline routing analysis: strategies replayed over stored per-tier outcomes, with numbers computed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tierflow.evals.routing import (
    RoutingDataError,
    RoutingItem,
    TierOutcome,
    aiq,
    analyze,
    apgr,
    envelope_value,
    fit_group_rates,
    held_out_recommendation,
    load_routellm,
    load_routerbench,
    read_items,
    replay_cascade,
    routing_markdown,
    upper_envelope,
    write_items,
    write_routing_report,
)

NOBODY: set[str] = set()  # no tier cleared for private data (the examples have no private items)


def out(passed: bool, cost: float, checks: bool = True, mean: float | None = None,
        least: float | None = None) -> TierOutcome:
    """One tier's outcome; ``checks`` = the run-time checks passed, ``mean``/``least`` = token log-probabilities."""
    return TierOutcome(passed=passed, cost=cost, tokens=10, wall_s=0.5, calls=1, checks_ok=checks,
                       failed_check=None if checks else "schema", logprob_mean=mean, logprob_min=least)


def item(name: str, private: bool = False, group: str | None = None, **outcomes: TierOutcome) -> RoutingItem:
    return RoutingItem(suite="demo", item=name, input=f"question {name}", group=group, private=private,
                       features={"intent": group or "math"}, outcomes=outcomes)


def only(report: dict, strategy: str) -> dict:
    """The single point of a one-point strategy (a tier, static, oracle)."""
    (point,) = report["strategies"][strategy]["points"]
    return point


# Three tiers at costs 1, 2 and 10. The run-time checks fail where the tier's answer is visibly broken.
THREE = ["mobile", "edge", "cloud"]
FOUR_ITEMS = [
    item("easy", mobile=out(True, 1), edge=out(True, 2), cloud=out(True, 10)),
    item("medium", mobile=out(False, 1, checks=False), edge=out(True, 2), cloud=out(True, 10)),
    item("hard", mobile=out(False, 1, checks=False), edge=out(False, 2, checks=False), cloud=out(True, 10)),
    item("impossible", mobile=out(False, 1), edge=out(False, 2), cloud=out(False, 10)),  # checks miss the error
]


def test_oracle_takes_the_cheapest_tier_that_passes():
    report = analyze(FOUR_ITEMS, THREE, cleared_for_private=NOBODY)
    oracle = only(report, "oracle")
    # easy → mobile (1), medium → edge (2), hard → cloud (10), impossible → nobody passes: the cheapest, mobile (1)
    assert oracle["answered_by"] == {"mobile": 2, "edge": 1, "cloud": 1}
    assert oracle["quality"] == 0.75
    assert oracle["cost"] == (1 + 2 + 10 + 1) / 4
    assert oracle["strong_share"] == 0.25


def test_static_order_pays_for_every_tier_it_tried():
    report = analyze(FOUR_ITEMS, THREE, cleared_for_private=NOBODY)
    static = only(report, "static:mobile+edge+cloud")
    # easy: mobile accepted (1); medium: mobile fails its checks, edge accepted (1+2); hard: mobile and edge fail
    # theirs, cloud (1+2+10); impossible: mobile's wrong answer passes the checks and is accepted (1)
    assert static["cost"] == (1 + 3 + 13 + 1) / 4
    assert static["quality"] == 0.75
    assert static["tried"] == {"mobile": 4, "edge": 2, "cloud": 1}
    assert static["strong_share"] == 0.25
    assert [r["tried"] for r in replay_cascade(FOUR_ITEMS, THREE, cleared_for_private=NOBODY)] == [
        ["mobile"], ["mobile", "edge"], ["mobile", "edge", "cloud"], ["mobile"]]
    # with no log-probabilities stored, each order's cascade has one point: its static order
    assert report["strategies"]["cascade"]["points"][0]["cost"] == static["cost"]
    assert report["orders"] == [THREE, ["mobile", "cloud"], ["edge", "cloud"]]
    for order in report["orders"]:
        key = "+".join(order)
        (point,) = report["strategies"][f"cascade:{key}"]["points"]
        assert point["params"]["order"] == order and point["cost"] == only(report, f"static:{key}")["cost"]
    # the aggregates hold every order's points, the full order first
    assert [p["params"]["order"] for p in report["strategies"]["static"]["points"]] == report["orders"]
    # edge first: easy and medium on edge (2), hard edge+cloud (12), impossible edge (2); same quality, cheaper
    assert only(report, "static:edge+cloud")["cost"] == (2 + 2 + 12 + 2) / 4
    assert only(report, "static:edge+cloud")["quality"] == 0.75
    assert [r["tried"] for r in replay_cascade(FOUR_ITEMS, THREE, cleared_for_private=NOBODY,
                                               order=["edge", "cloud"])] == [
        ["edge"], ["edge"], ["edge", "cloud"], ["edge"]]


def test_tiers_default_to_cheapest_first():
    assert analyze(FOUR_ITEMS, None, cleared_for_private=NOBODY)["tiers"] == THREE


# Two tiers; the small one always passes its checks, its confidence tells right from wrong answers.
CONFIDENCE = [
    item("a", small=out(True, 1, mean=-0.1, least=-0.5), big=out(True, 4)),
    item("b", small=out(True, 1, mean=-0.2, least=-0.9), big=out(True, 4)),
    item("c", small=out(False, 1, mean=-1.5, least=-4.0), big=out(True, 4)),
    item("d", small=out(False, 1, mean=-2.0, least=-6.0), big=out(False, 4)),
]


def test_a_confidence_threshold_escalates_exactly_the_unsure_items():
    decisions = replay_cascade(CONFIDENCE, ["small", "big"], cleared_for_private=NOBODY, min_mean_logprob=-1.0)
    assert [d["answered_by"] for d in decisions] == ["small", "small", "big", "big"]
    assert [d["cost"] for d in decisions] == [1, 1, 5, 5]
    # the threshold grid (quantiles of the observed values) contains a threshold with the same effect
    report = analyze(CONFIDENCE, ["small", "big"], cleared_for_private=NOBODY)
    cascade = report["strategies"]["cascade"]["points"]
    escalating = [p for p in cascade if p["params"]["min_token_logprob"] is None
                  and p["params"]["min_mean_logprob"] is not None and -1.5 < p["params"]["min_mean_logprob"] <= -0.2]
    assert escalating
    for point in escalating:
        assert point["answered_by"] == {"small": 2, "big": 2}
        assert point["quality"] == 0.75 and point["cost"] == (1 + 1 + 5 + 5) / 4 and point["strong_share"] == 0.5
    # "off" is the static order: all four accepted on the small tier
    off = next(p for p in cascade if p["params"] == {"min_mean_logprob": None, "min_token_logprob": None,
                                                     "order": ["small", "big"]})
    assert off["quality"] == 0.5 and off["cost"] == 1.0
    # the recommendation: >= 95% of big's quality (0.75) on <= 40% of its calls — none here (it needs 50%)
    assert report["recommendation"]["found"] is False


def test_the_recommended_thresholds_meet_the_criterion():
    items = [item(f"sure-{i}", small=out(True, 1, mean=-0.1, least=-0.3), big=out(True, 4)) for i in range(7)]
    items += [item(f"unsure-{i}", small=out(False, 1, mean=-2.0, least=-5.0), big=out(True, 4)) for i in range(3)]
    report = analyze(items, ["small", "big"], cleared_for_private=NOBODY)
    rec = report["recommendation"]
    assert rec["found"] and rec["quality"] == 1.0 and rec["strong_share"] == 0.3
    decisions = replay_cascade(items, ["small", "big"], cleared_for_private=NOBODY,
                               min_mean_logprob=rec["min_mean_logprob"], min_token_logprob=rec["min_token_logprob"])
    assert [d["answered_by"] for d in decisions] == ["small"] * 7 + ["big"] * 3


def test_above_random_is_judged_inside_the_strategys_cost_range():
    report = analyze(CONFIDENCE, ["small", "big"], cleared_for_private=NOBODY)
    # the cascade's envelope: (1, 0.5), the static order = small alone = a random mix, up to (3, 0.75), escalating c
    # and d (cost (1 + 1 + 5 + 5) / 4). The best random mix is the line (1, 0.5)–(4, 0.75): 0.5 + 0.25 · 2/3 at
    # cost 3. Inside (1, 3) the cascade is strictly above it; at cost 1 it only equals it.
    assert report["strategies"]["cascade"]["envelope"] == [[1.0, 0.5], [3.0, 0.75]]
    above = report["strategies"]["cascade"]["metrics"]["above_random"]
    assert above == {"everywhere": True, "worst_margin": pytest.approx(0.0), "at_cost": 1.0, "range": [1.0, 3.0]}
    # a single point on the random envelope is not above it
    assert report["strategies"]["tier:small"]["metrics"]["above_random"]["everywhere"] is False
    # the static order [small, big] is a single point, equal to small alone: not above
    assert report["strategies"]["static"]["metrics"]["above_random"]["everywhere"] is False


# The cheapest tier never passes and its checks do not notice; it only looks unsure. The middle tier is sure when
# right (a, b, c) and unsure when wrong (d); the strongest passes everything.
NEVER_TINY = [
    item(name, tiny=out(False, 1, mean=-3.0, least=-6.0),
         mobile=out(name != "d", 2, mean=-0.2 if name != "d" else -2.0, least=-1.0 if name != "d" else -5.0),
         edge=out(True, 10))
    for name in "abcd"
]
TME = ["tiny", "mobile", "edge"]


def test_skipping_a_tier_that_never_passes_is_cheaper_at_equal_quality():
    report = analyze(NEVER_TINY, TME, cleared_for_private=NOBODY)
    strategies = report["strategies"]
    assert report["orders"] == [TME, ["tiny", "edge"], ["mobile", "edge"]]
    # static orders accept the first answer whose checks pass: tiny's wrong answers (quality 0, cost 1) unless
    # the order skips tiny; mobile then answers every item: a, b, c right, d wrong
    assert (only(report, "static:tiny+mobile+edge")["quality"], only(report, "static:tiny+mobile+edge")["cost"]) \
        == (0.0, 1.0)
    assert (only(report, "static:mobile+edge")["quality"], only(report, "static:mobile+edge")["cost"]) == (0.75, 2.0)
    # quality 1 needs d escalated to edge and a, b, c kept on mobile. With tiny first every item also pays for tiny
    # (it is unsure on all of them): (1+2) · 3 + (1+2+10) = 22 → 5.5 per item; from mobile: 2 · 3 + 12 = 18 → 4.5
    best = {name: strategies[f"cascade:{name}"]["metrics"] for name in ("tiny+mobile+edge", "mobile+edge")}
    assert best["tiny+mobile+edge"]["best_quality"] == best["mobile+edge"]["best_quality"] == 1.0
    assert best["tiny+mobile+edge"]["best_quality_cost"] == 5.5
    assert best["mobile+edge"]["best_quality_cost"] == 4.5
    # each order's thresholds are quantiles of the values on its own tiers before the last: mobile's, not tiny's
    assert -3.0 not in report["thresholds_grid_by_order"]["mobile+edge"]["min_mean_logprob"]
    assert -3.0 in report["thresholds_grid_by_order"]["tiny+mobile+edge"]["min_mean_logprob"]
    # the recommendation: quality 1 (>= 95% of edge's) with edge on 1 item in 4 (<= 40%), cheapest: mobile first
    rec = report["recommendation"]
    assert rec["found"] and rec["order"] == ["mobile", "edge"] and rec["strategy"] == "cascade:mobile+edge"
    assert (rec["quality"], rec["cost"], rec["strong_share"]) == (1.0, 4.5, 0.25)
    decisions = replay_cascade(NEVER_TINY, TME, cleared_for_private=NOBODY, order=rec["order"],
                               min_mean_logprob=rec["min_mean_logprob"], min_token_logprob=rec["min_token_logprob"])
    assert [d["tried"] for d in decisions] == [["mobile"]] * 3 + [["mobile", "edge"]]
    cheapest = report["cheapest_at_95"]
    assert cheapest["found"] and cheapest["order"] == ["mobile", "edge"] and cheapest["cost"] == 4.5
    markdown = routing_markdown(report)
    assert 'routing.cascade = ["mobile", "edge"]' in markdown
    for name in ("static:tiny+mobile+edge", "static:mobile+edge", "cascade:tiny+edge", "cascade:mobile+edge"):
        assert f"| {name} |" in markdown


def test_cheapest_at_95_ignores_the_strong_share():
    # the middle tier is never sure: only escalating everything reaches edge's quality, so nothing meets the
    # 40% strong-share criterion, yet [mobile, edge] with every item escalated is the cheapest point at 95%
    items = [item(n, tiny=out(False, 1), mobile=out(n == "a", 2, checks=n == "a"), edge=out(True, 10)) for n in "abcd"]
    report = analyze(items, TME, cleared_for_private=NOBODY)
    assert report["recommendation"]["found"] is False
    cheapest = report["cheapest_at_95"]
    # tiny's checks pass, so orders starting at tiny accept its wrong answers; [mobile, edge]: a on mobile (2),
    # b, c, d on mobile + edge (12): 38 / 4 = 9.5 < edge alone (10, not a static or cascade point)
    assert cheapest["found"] and cheapest["strategy"] == "static:mobile+edge"
    assert (cheapest["quality"], cheapest["cost"], cheapest["strong_share"]) == (1.0, 9.5, 0.75)


# Two tiers at costs 1 and 5: weak passes a and b, strong also c; nobody passes d.
PAIR = ["weak", "strong"]
PAIR_ITEMS = [
    item("a", weak=out(True, 1), strong=out(True, 5)),
    item("b", weak=out(True, 1), strong=out(True, 5)),
    item("c", weak=out(False, 1), strong=out(True, 5)),
    item("d", weak=out(False, 1), strong=out(False, 5)),
]


def test_aiq_of_single_tiers_and_the_oracle():
    report = analyze(PAIR_ITEMS, PAIR, cleared_for_private=NOBODY)
    assert report["cost_range"] == [1.0, 5.0]  # shared by every strategy
    metrics = {name: s["metrics"] for name, s in report["strategies"].items()}
    # weak: 0.5 from cost 1 to 5 → 0.5. strong: its only point is at the top of the range → 0.
    assert metrics["tier:weak"]["aiq"] == pytest.approx(0.5)
    assert metrics["tier:strong"]["aiq"] == pytest.approx(0.0)
    # oracle: a, b, d on weak and c on strong: quality 0.75 at cost 2; 0 below 2 (its cheapest point), then 0.75
    assert only(report, "oracle")["cost"] == 2.0
    assert metrics["oracle"]["aiq"] == pytest.approx(0.75 * (5 - 2) / (5 - 1))
    # random mixes: the line from (1, 0.5) to (5, 0.75)
    assert metrics["random"]["aiq"] == pytest.approx((0.5 + 0.75) / 2)
    assert aiq([(1, 0.5)], 1, 1) is None  # no cost range, no AIQ


def test_apgr_and_cpt():
    report = analyze(PAIR_ITEMS, PAIR, cleared_for_private=NOBODY)
    metrics = {name: s["metrics"] for name, s in report["strategies"].items()}
    # random mixing of weak and strong recovers the gap in proportion to strong calls: PGR = share
    assert metrics["random"]["apgr"] == pytest.approx(0.5)
    assert metrics["random"]["cpt50"] == pytest.approx(0.5)
    assert metrics["random"]["cpt80"] == pytest.approx(0.8)
    # the oracle sends only c to strong (share 0.25) and recovers the whole gap: PGR 0 below 0.25, 1 above
    assert metrics["oracle"]["apgr"] == pytest.approx(0.75)
    assert metrics["oracle"]["cpt50"] == metrics["oracle"]["cpt80"] == 0.25
    assert metrics["oracle"]["strong_calls_saved_1pt"] == 0.75
    assert metrics["tier:strong"]["strong_calls_saved_1pt"] == 0.0
    # above random: at cost 2 the best random mix reaches 0.5 + 0.25 · 1/4 = 0.5625 < 0.75
    assert metrics["oracle"]["above_random"] == {"everywhere": True, "worst_margin": pytest.approx(0.1875),
                                                 "at_cost": 2.0, "range": [2.0, 2.0]}
    assert metrics["tier:weak"]["above_random"]["everywhere"] is False  # a tier is on the random envelope


def test_apgr_of_a_perfect_router_is_one():
    # the middle tier passes everything the strongest does, so a perfect router never calls the strongest
    items = [item("a", mobile=out(True, 1), edge=out(True, 2), cloud=out(True, 10)),
             item("b", mobile=out(False, 1), edge=out(True, 2), cloud=out(True, 10)),
             item("c", mobile=out(False, 1), edge=out(True, 2), cloud=out(True, 10)),
             item("d", mobile=out(False, 1), edge=out(False, 2), cloud=out(False, 10))]
    report = analyze(items, THREE, cleared_for_private=NOBODY)
    oracle = report["strategies"]["oracle"]["metrics"]
    assert only(report, "oracle")["strong_share"] == 0.0
    assert oracle["apgr"] == pytest.approx(1.0)
    assert oracle["cpt50"] == oracle["cpt80"] == 0.0
    assert apgr([(0.0, 0.75)], q_weak=0.25, q_strong=0.75) == pytest.approx(1.0)


def test_envelope_is_non_decreasing_and_concave():
    points = [(1, 0.5), (2, 0.4), (3, 0.8), (4, 0.7), (5, 0.9), (2.5, 0.55)]
    env = upper_envelope(points)
    assert env == [(1, 0.5), (3, 0.8), (5, 0.9)]  # (2, .4) and (4, .7) are dominated, (2.5, .55) below the hull
    assert envelope_value(env, 0.5) == 0.0 and envelope_value(env, 2) == pytest.approx(0.65)
    assert envelope_value(env, 9) == 0.9


PRIVATE = [
    item("public", mobile=out(False, 1, checks=False), edge=out(False, 2, checks=False), cloud=out(True, 10)),
    # a private item the producer (wrongly) also ran on cloud, where only cloud's answer is right
    item("secret", private=True, mobile=out(False, 1, checks=False), edge=out(False, 2, checks=False),
         cloud=out(True, 10, checks=True)),
    # a private item run on the cleared tiers only
    item("diary", private=True, mobile=out(True, 1, mean=-3.0), edge=out(True, 2)),
]


def predict_cloud(train: list[RoutingItem]):
    return lambda item: {"mobile": 0.0, "edge": 0.0, "cloud": 1.0}


def test_private_items_never_reach_a_tier_not_cleared_for_them():
    report = analyze(PRIVATE, THREE, cleared_for_private={"mobile", "edge"}, fit=predict_cloud, folds=3)
    assert set(report["privacy_violations"].values()) == {0}
    for name, strategy in report["strategies"].items():
        for point in strategy["points"]:
            assert point["tried"]["cloud"] <= 1, (name, point["label"])  # only the public item
    cloud = only(report, "tier:cloud")
    assert cloud["substituted"] == 2 and cloud["answered_by"] == {"mobile": 0, "edge": 2, "cloud": 1}
    assert only(report, "oracle")["answered_by"] == {"mobile": 2, "edge": 0, "cloud": 1}  # secret: nobody allowed
    decisions = replay_cascade(PRIVATE, THREE, cleared_for_private={"mobile", "edge"}, min_mean_logprob=-1.0)
    assert [d["tried"] for d in decisions] == [["mobile", "edge", "cloud"], ["mobile", "edge"], ["mobile", "edge"]]
    # within an order a tier not cleared is substituted as well: cloud → edge (the strongest cleared tier)
    decisions = replay_cascade(PRIVATE, THREE, cleared_for_private={"mobile", "edge"}, order=["mobile", "cloud"])
    assert [d["tried"] for d in decisions] == [["mobile", "cloud"], ["mobile", "edge"], ["mobile"]]
    decisions = replay_cascade(PRIVATE, THREE, cleared_for_private={"mobile"}, order=["edge", "cloud"])
    assert [d["tried"] for d in decisions] == [["edge", "cloud"], ["mobile"], ["mobile"]]
    with pytest.raises(ValueError, match="private item demo/secret has no outcome on a tier cleared"):
        analyze(PRIVATE, THREE, cleared_for_private=set())


def test_cross_fitting_never_scores_an_item_with_a_model_trained_on_it():
    items = [item(f"q{i}", group="math" if i % 2 else "chat", mobile=out(i % 3 == 0, 1), cloud=out(True, 10))
             for i in range(12)]
    trained_on: list[set[str]] = []
    scored: list[tuple[int, str, dict]] = []

    def fit(train: list[RoutingItem]):
        model = len(trained_on)
        trained_on.append({i.item for i in train})
        inner = fit_group_rates()(train)

        def predict(one: RoutingItem) -> dict[str, float]:
            scored.append((model, one.item, one.outcomes))
            return inner(one)

        return predict

    report = analyze(items, ["mobile", "cloud"], cleared_for_private=NOBODY, fit=fit, folds=4, seed=7)
    assert len(trained_on) == 4
    assert sorted(name for _, name, _ in scored) == sorted(i.item for i in items)  # each item scored once
    for model, name, outcomes in scored:
        assert name not in trained_on[model]
        assert outcomes == {}  # the predictor never sees the answers it is judged on
    assert all(len(t) == 9 for t in trained_on)
    learned = report["strategies"]["learned"]["points"]
    assert learned[0]["params"] == {"min_quality": 0.0} and learned[0]["answered_by"] == {"mobile": 12, "cloud": 0}
    assert learned[-1]["answered_by"]["cloud"] == 12  # min quality 1: only a sure tier; the rate is smoothed
    assert "learned+cascade" in report["strategies"]
    # the same seed deals the same folds
    again: list[set[str]] = []
    analyze(items, ["mobile", "cloud"], cleared_for_private=NOBODY, folds=4, seed=7,
            fit=lambda train: again.append({i.item for i in train}) or predict_cloud(train))
    assert again == trained_on


def test_items_round_trip_and_a_bad_row_names_its_line(tmp_path):
    path = tmp_path / "routing.jsonl"
    write_items(FOUR_ITEMS[:2], path)
    assert read_items(path) == FOUR_ITEMS[:2]
    row = json.loads(path.read_text().splitlines()[0])
    del row["outcomes"]["edge"]["passed"]
    row["item"] = "broken"
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
    with pytest.raises(RoutingDataError, match=r"routing\.jsonl:3: outcomes\.edge: missing field\(s\) passed"):
        read_items(path)
    path.write_text('{"suite": "demo"}\n')
    with pytest.raises(ValueError, match=r":1: missing field\(s\) item, input"):
        read_items(path)


def test_load_routerbench_csv(tmp_path):
    path = tmp_path / "routerbench_0shot.csv"
    path.write_text("sample_id,eval_name,prompt,gpt-4,gpt-4|total_cost,gpt-4|model_response,mistral,"
                    "mistral|total_cost,mistral|model_response\n"
                    "mmlu.1,mmlu,What is 2+2?,1.0,0.003,4,0.0,0.0001,5\n"
                    "gsm8k.7,gsm8k,\"Tom has 3, then 2\",0.6,0.004,5,0.4,0.0002,4\n")
    items = load_routerbench(path)
    assert [(i.item, i.group, i.input) for i in items] == [("mmlu.1", "mmlu", "What is 2+2?"),
                                                          ("gsm8k.7", "gsm8k", "Tom has 3, then 2")]
    assert items[1].outcomes["gpt-4"].passed and not items[1].outcomes["mistral"].passed  # quality >= 0.5
    assert items[0].outcomes["mistral"].cost == 0.0001 and items[0].outcomes["gpt-4"].logprob_mean is None
    report = analyze(items, None, cleared_for_private=NOBODY)
    assert report["tiers"] == ["mistral", "gpt-4"]
    path.write_text("sample_id,prompt,gpt-4,gpt-4|total_cost\n1,hi,1,0.1\n")
    with pytest.raises(RoutingDataError, match=r"missing column.*eval_name"):
        load_routerbench(path)


def test_load_routellm_csv_and_jsonl(tmp_path):
    prices = {"mixtral-8x7b-instruct-v0.1": 0.24, "gpt-4-1106-preview": 9.25}
    csv_path = tmp_path / "mmlu_anatomy.csv"
    csv_path.write_text('prompt,mixtral-8x7b-instruct-v0.1,gpt-4-1106-preview\n'
                        '"Which bone?\nA. femur\nAnswer:",True,True\n'
                        '"Which nerve?\nAnswer:",False,True\n')
    items = load_routellm(csv_path, prices, group="anatomy")
    assert len(items) == 2 and items[0].group == "anatomy" and items[0].input.startswith("Which bone?")
    assert [i.outcomes["mixtral-8x7b-instruct-v0.1"].passed for i in items] == [True, False]
    assert items[1].outcomes["gpt-4-1106-preview"].cost == 9.25
    jsonl = tmp_path / "gsm8k.jsonl"
    jsonl.write_text(json.dumps({"id": "g1", "prompt": "2+2?", "mixtral-8x7b-instruct-v0.1": True,
                                 "gpt-4-1106-preview": True}) + "\n")
    assert load_routellm(jsonl, prices)[0].item == "g1"
    with pytest.raises(RoutingDataError, match=r"missing column.*claude-3-opus"):
        load_routellm(jsonl, {**prices, "claude-3-opus": 15.0})


def test_report_files(tmp_path: Path):
    report = analyze(CONFIDENCE, ["small", "big"], cleared_for_private=NOBODY, fit=fit_group_rates(), folds=2)
    paths = write_routing_report(report, tmp_path / "out")
    assert {p.name for p in paths.values()} == {"routing.json", "routing.md", "routing.html"}
    assert json.loads(paths["json"].read_text())["items"] == 4
    markdown = paths["markdown"].read_text()
    assert "| strategy |" in markdown and "Recommended cascade thresholds" in markdown
    page = paths["html"].read_text()
    assert page.count('<img alt="') == 2 and "data:image/png;base64," in page
    assert "<table>" in page and "|---" not in page and "| strategy" not in page


def test_the_held_out_recommendation_is_chosen_without_the_items_it_is_scored_on():
    # 20 items: mobile's answer passes exactly when it is confident (mean log-probability -0.1), edge always passes.
    # Every training split sees the same rule, so each fold recommends escalating the unconfident replies, and on
    # its held-out items that cascade is as good as edge with edge called for the 6 unconfident items only.
    confident = [i % 10 >= 3 for i in range(20)]
    items = [item(f"q{i}", mobile=out(ok, 1, mean=-0.1 if ok else -2.0, least=-1.0), edge=out(True, 3))
             for i, ok in enumerate(confident)]
    held = held_out_recommendation(items, ["mobile", "edge"], cleared_for_private=NOBODY, folds=4)
    assert held["folds"] == 4 and held["items"] == 20 and len(held["per_fold"]) == 4
    assert all(f["found"] and f["order"] == ["mobile", "edge"] for f in held["per_fold"])
    assert all(-2.0 < f["min_mean_logprob"] <= -0.1 for f in held["per_fold"])
    assert (held["quality"], held["strong_share"]) == (1.0, 0.3)
    assert held["cost"] == pytest.approx(1 + 0.3 * 3)  # mobile for all, edge for the escalated 30%
    report = analyze(items, ["mobile", "edge"], cleared_for_private=NOBODY)
    report["recommendation_held_out"] = held
    assert "Out of sample (4 folds" in routing_markdown(report)
