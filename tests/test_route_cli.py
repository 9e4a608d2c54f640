"""``tierflow route train`` / ``route eval`` on a small benchmark output, with the real intent encoder (no LLM).

Arithmetic questions pass on every tier; long multi-step requests only on the strongest one. The router must
learn that, report holdout metrics, and route cheaply at no loss of quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tierflow.evals.routing import RoutingItem, TierOutcome
from tierflow.route_cli import route_app
from tierflow.route_training import escalate_from, load_items, passed, routing_quality, split, usable
from tierflow.runtimes.learned_router import LearnedRouter, LearnedRouterError

runner = CliRunner()
COSTS = {"tiny": 0.0005, "mobile": 0.002, "edge": 0.01}

EASY = [f"What is {a} * {b}?" for a, b in [(17, 23), (6, 8), (12, 12), (45, 3), (9, 81), (250, 4), (33, 7)]] + [
    f"Add {a} and {b}." for a, b in [(19, 42), (105, 77), (8, 15), (64, 36), (1200, 450), (7, 9)]] + [
    "Divide 144 by 12.", "What is 15% of 60?", "Compute 2 to the power of 10.", "Subtract 58 from 230.",
    "How much is 3.5 times 4?", "What's 999 minus 111?", "What is the square root of 81?"]
HARD = [
    "Plan a three-week product launch: research competitors, draft positioning, schedule the campaign, assign owners "
    "and write the weekly status report template for the team.",
    "Compare three database designs for a multi-tenant billing system, explain the trade-offs in consistency and "
    "cost, then recommend one with a migration plan in steps.",
    "Write a detailed project proposal for migrating our monolith to services, including risks, milestones, team "
    "structure, budget estimates and a rollback strategy.",
    "Research how our onboarding flow loses users, summarise the findings from support tickets, design two "
    "experiments and explain how to measure each of them.",
    "Draft a hiring plan for a new data team: roles, interview loops, a ninety-day onboarding plan for each role "
    "and how the team reports to engineering and product.",
    "Explain step by step how to set up continuous delivery for a mobile app, covering signing, test stages, "
    "staged rollout, crash monitoring and rollback.",
    "Organise a two-day offsite for forty people: venue options, agenda with workshops, travel logistics, a budget "
    "breakdown and a communication plan.",
    "Analyse the quarterly sales figures by region, identify the three weakest markets, propose actions for each "
    "and write an executive summary for the board.",
    "Design a study schedule for learning machine learning in six months, with weekly goals, projects, reading "
    "lists and checkpoints to assess progress.",
    "Prepare an incident review for last week's outage: timeline, root causes, contributing factors, action items "
    "with owners and a summary for customers.",
    "Create a content strategy for a developer blog: audiences, topic pillars, a quarterly calendar, review "
    "process, promotion channels and success metrics.",
    "Plan the refactoring of a large legacy codebase: map the modules, decide the order, define tests to add "
    "first, and describe how to ship it without downtime.",
    "Write a comprehensive guide to negotiating a job offer, covering research, timing, counter-offers, benefits "
    "and how to handle multiple offers at once.",
    "Outline a go-to-market plan for a new budgeting app: target segments, pricing experiments, launch channels, "
    "partnerships and a twelve-month roadmap.",
    "Evaluate moving our analytics from nightly batch jobs to streaming: costs, tooling options, team skills "
    "needed, risks and a phased adoption plan.",
    "Coordinate a research literature review on sleep and memory: search strategy, inclusion criteria, summary "
    "tables and a discussion of conflicting results.",
    "Draft a disaster recovery plan for our payment service: recovery objectives, backups, failover drills, "
    "responsibilities and communication during an incident.",
    "Build a training curriculum for new support agents: modules, role plays, assessments, shadowing schedule and "
    "how to measure readiness after four weeks.",
    "Propose a plan to cut cloud spending by a third: inventory, rightsizing, reserved capacity, architecture "
    "changes, owners and a monthly tracking report.",
    "Write a step-by-step plan to open a small bakery: permits, suppliers, equipment, staffing, opening week "
    "marketing and a first-year financial forecast.",
]


def outcome(passed: bool, tier: str) -> dict:
    return {"passed": passed, "cost": COSTS[tier], "tokens": 100, "wall_s": 1.0, "calls": 1, "checks_ok": passed,
            "failed_check": None if passed else "answer", "logprob_mean": None, "logprob_min": None,
            "private_violation": False, "budget_overrun": False}


def row(item: str, text: str, outcomes: dict, *, group: str | None = None, features: dict | None = None) -> dict:
    """One ``items.jsonl`` row: a complete ``RoutingItem`` as ``write_items`` writes it."""
    return {"suite": "mini", "item": item, "input": text, "group": group, "private": False,
            "features": features or {}, "outcomes": outcomes}


def write_items(path: Path) -> Path:
    rows = [row(f"easy-{n}", text, {t: outcome(True, t) for t in COSTS}, group=f"easy-{n}", features={"tools": 1})
            for n, text in enumerate(EASY)]
    rows += [row(f"hard-{n}", text, {t: outcome(t == "edge", t) for t in COSTS}, group=f"hard-{n}",
                 features={"tools": 0}) for n, text in enumerate(HARD)]
    path.mkdir(parents=True, exist_ok=True)
    (path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def bench_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no ./tierflow.toml: the shipped demo intent model gives the embeddings
    monkeypatch.delenv("TIERFLOW_CONFIG", raising=False)
    monkeypatch.setenv("TIERFLOW_HOME", str(tmp_path / "home"))
    return write_items(tmp_path / "bench")


def test_train_reports_holdout_metrics_and_saves_a_router_that_eval_scores(bench_dir: Path, tmp_path: Path):
    out = tmp_path / "router"
    result = runner.invoke(route_app, ["train", "--from", str(bench_dir), "--out", str(out), "--holdout", "0.25",
                                       "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "items: 40 (train 30, holdout 10); tiers cheapest first: tiny, mobile, edge" in result.output
    holdout = result.output.split("holdout:\n", 1)[1]
    assert all(f"  {t}" in holdout for t in COSTS) and "auc=" in holdout and "brier=" in holdout
    assert (out / "metadata.json").is_file() and (out / "weights.npz").is_file()
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["tiers"] == ["tiny", "mobile", "edge"] and meta["costs"]["edge"] == COSTS["edge"]
    data = meta["metadata"]["data"]
    assert data["items"] == 40 and data["train"] == 30 and data["holdout"] == 10 and len(data["sha256"]) == 64
    assert meta["metadata"]["encoder"] == "sentence-transformers/all-MiniLM-L6-v2"
    held = meta["metadata"]["holdout_metrics"]
    assert held["tiny"]["auc"] >= 0.9 and held["tiny"]["accuracy"] >= 0.8  # easy vs hard is plain to the encoder
    assert meta["train_pass_rate"]["edge"] == 1.0

    result = runner.invoke(route_app, ["eval", "--model", str(out), "--from", str(bench_dir / "items.jsonl"),
                                       "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["tiers"] == ["tiny", "mobile", "edge"] and report["data"]["items"] == 40
    assert report["per_tier"]["tiny"]["auc"] >= 0.95
    routing = report["routing"]
    at_08 = routing["min_quality"]["0.80"]
    assert at_08["quality"] >= 0.95 and at_08["cost"] < routing["fixed_tier"]["edge"]["cost"]
    assert at_08["tiers"]["tiny"] >= 15 and at_08["tiers"]["edge"] >= 15
    assert set(routing["min_quality"]) == {"0.50", "0.70", "0.80", "0.90"}
    assert routing["oracle"]["quality"] == 1.0

    result = runner.invoke(route_app, ["eval", "--model", str(out), "--from", str(bench_dir)])
    assert result.exit_code == 0 and "min_quality 0.80: quality" in result.output and "always edge" in result.output


def test_tiers_option_orders_and_narrows_the_tiers(bench_dir: Path, tmp_path: Path):
    result = runner.invoke(route_app, ["train", "--from", str(bench_dir), "--out", str(tmp_path / "r"),
                                       "--tiers", "mobile,edge", "--holdout", "0"])
    assert result.exit_code == 0, result.output
    assert "train 40, holdout 0" in result.output and "holdout:" not in result.output
    assert LearnedRouter.load(tmp_path / "r").tiers == ["mobile", "edge"]


@pytest.mark.parametrize(("args", "message"), [
    (["train", "--from", "{tmp}/nowhere", "--out", "{tmp}/r"], "nowhere does not exist (give a routing-benchmark"),
    (["train", "--from", "{tmp}/bad.jsonl", "--out", "{tmp}/r"],
     "bad.jsonl:2: missing field(s) suite, item, group, private, features, outcomes"),
    (["train", "--from", "{tmp}/partial.jsonl", "--out", "{tmp}/r"],
     "partial.jsonl:1: outcomes.tiny: missing field(s) cost, tokens, wall_s, calls, checks_ok"),
    (["train", "--from", "{bench}", "--out", "{tmp}/r", "--tiers", "cloud"], "--tiers names ['cloud']"),
    (["train", "--from", "{bench}", "--out", "{tmp}/r", "--holdout", "1.5"], "--holdout must be in [0, 1)"),
    (["eval", "--model", "{tmp}/missing", "--from", "{bench}"], "missing does not exist or is not a folder"),
])
def test_bad_input_is_one_literal_line_and_exit_2(bench_dir: Path, tmp_path: Path, args: list[str], message: str):
    good = json.dumps(row("a", "hi", {"tiny": outcome(True, "tiny")}))
    (tmp_path / "bad.jsonl").write_text(good + '\n{"input": 3}\n')  # read_items' message names file:line
    (tmp_path / "partial.jsonl").write_text(json.dumps(row("a", "hi", {"tiny": {"passed": True}})) + "\n")
    filled = [a.format(tmp=tmp_path, bench=bench_dir) for a in args]
    result = runner.invoke(route_app, filled)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.startswith("error: ")
    assert "Traceback" not in result.output


def test_groups_stay_on_one_side_of_the_split(tmp_path: Path):
    rows = [row(f"q{n}", f"q{n}", {"tiny": outcome(n % 2 == 0, "tiny")}, group=f"g{n // 3}") for n in range(30)]
    (tmp_path / "items.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    items, digest = load_items(tmp_path)
    train, test = split(items, 0.3, seed=0, by="group")
    assert len(test) == 9 and len(train) == 21 and len(digest) == 64
    assert not {items[i].group for i in train} & {items[i].group for i in test}
    assert split(items, 0.3, seed=0, by="group") == (train, test)
    by_item = split(items, 0.3, seed=0)  # the default: 9 of 30 items, whatever their group
    assert len(by_item[1]) == 9 and sorted(by_item[0] + by_item[1]) == list(range(30))
    with pytest.raises(LearnedRouterError, match="no items"):
        (tmp_path / "items.jsonl").write_text("\n")
        load_items(tmp_path)
    assert isinstance(items[0], RoutingItem) and items[0].outcomes["tiny"].cost == COSTS["tiny"]
    assert passed(items[0], "tiny") == 1.0 and passed(items[1], "tiny") == 0.0 and np.isnan(passed(items[0], "edge"))


def ran(passed: bool, cost: float, checks_ok: bool | None = None, private_violation: bool = False) -> TierOutcome:
    return TierOutcome(passed=passed, cost=cost, tokens=10, wall_s=0.1, calls=1,
                       checks_ok=passed if checks_ok is None else checks_ok, failed_check=None, logprob_mean=None,
                       logprob_min=None, private_violation=private_violation)


def test_routing_quality_starts_at_the_picked_tier_and_escalates_on_failed_checks():
    """Hand-computed: the learned pick alone, then the cascade from it over the usable tiers."""
    def item(name: str, **outcomes: TierOutcome) -> RoutingItem:
        return RoutingItem(suite="s", item=name, input=name, group=None, private=False, features={},
                           outcomes=outcomes)

    items = [
        item("a", tiny=ran(True, 1.0), mobile=ran(True, 2.0), edge=ran(True, 4.0)),
        # tiny fails its checks -> mobile (a private violation: skipped) -> edge
        item("b", tiny=ran(False, 1.0), mobile=ran(True, 2.0, private_violation=True), edge=ran(True, 4.0)),
        # tiny's checks pass on a wrong answer: accepted, no escalation
        item("c", tiny=ran(False, 1.0, checks_ok=True), mobile=ran(True, 2.0), edge=ran(True, 4.0)),
        # no mobile outcome; edge fails too: the last usable tier's answer stands
        item("d", tiny=ran(False, 1.0), edge=ran(False, 4.0)),
        item("e", mobile=ran(True, 2.0, private_violation=True)),  # no usable tier: not routed
    ]
    assert [usable(items[1], t) for t in ("tiny", "mobile", "edge", "cloud")] == [True, False, True, False]
    model = LearnedRouter()
    model.tiers = ["tiny", "mobile", "edge"]
    # predicted pass rates: a, b, c look easy; d looks hard (mobile predicted, but d has no mobile outcome)
    P = np.array([[0.9, 0.9, 0.9], [0.9, 0.9, 0.9], [0.9, 0.9, 0.9], [0.1, 0.9, 0.2], [0.9, 0.9, 0.9]])
    report = routing_quality(model, P, items, levels=(0.5, 0.95))
    assert report["items"] == 5
    at_05 = report["min_quality"]["0.50"]  # picks: tiny, tiny, tiny, edge (likeliest usable)
    assert at_05["tiers"] == {"tiny": 3, "mobile": 0, "edge": 1}
    assert at_05["quality"] == 0.25 and at_05["cost"] == (1 + 1 + 1 + 4) / 4
    # a: tiny; b: tiny -> edge; c: tiny; d: edge
    assert at_05["quality_with_cascade"] == 0.5 and at_05["cost_with_cascade"] == (1 + 5 + 1 + 4) / 4
    at_095 = report["min_quality"]["0.95"]  # nothing clears 0.95: likeliest usable = cheapest of equal maxima
    assert at_095["tiers"] == {"tiny": 3, "mobile": 0, "edge": 1}
    assert report["fixed_tier"]["mobile"] == {"quality": 1.0, "cost": 2.0}  # a and c only
    assert report["fixed_tier"]["tiny"] == {"quality": 0.25, "cost": 1.0}
    assert report["oracle"] == {"quality": 0.75, "cost": (1 + 4 + 2 + 4) / 4}
    decisions = escalate_from(items[:4], ["mobile", "tiny", "tiny", "tiny"], model.tiers)
    assert [d["tried"] for d in decisions] == [["mobile"], ["tiny", "edge"], ["tiny"], ["tiny", "edge"]]
    assert [d["answered_by"] for d in decisions] == ["mobile", "edge", "tiny", "edge"]
    assert [d["passed"] for d in decisions] == [True, True, False, False]
