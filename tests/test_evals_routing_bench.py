"""The routing benchmark's run side: eval records become routing items with the signals a router sees, and
``tierflow eval <routing file>`` runs suites on each tier and writes the strategies' report."""

import json

import pytest
from typer.testing import CliRunner

from tierflow.cli import app
from tierflow.evals.datasets import EvalItem
from tierflow.evals.errors import SuiteError
from tierflow.evals.routing import read_items
from tierflow.evals.routing_bench import is_routing_file, load_routing, routing_items
from tierflow.runtimes.privacy import DEFAULT_PRIVATE_PATTERNS

runner = CliRunner()


def record(item: str, tier: str, passed: bool, **output) -> dict:
    """An eval record as evals/runner.py writes it (one item on one tier)."""
    calls = output.pop("calls", [{"tier": tier, "input_tokens": 100, "output_tokens": 20, "logprob_mean": -0.3,
                                  "logprob_min": -2.5}])
    return {"key": f"tier={tier},pattern=auto|{item}|0", "tier": tier, "item": item, "repeat": 0, "passed": passed,
            "error": None, "output": {"latency_ms": 1500.0, "cost": 0.002, "model_calls": calls, **output}}


def test_records_become_routing_items_with_the_signals_a_router_sees():
    items = [EvalItem(id="a", input="What is 27 times 34?"), EvalItem(id="b", input="Plan my week."),
             EvalItem(id="c", input="Mail me at jo@example.com the total of 3 and 4"),
             EvalItem(id="d", input="never ran on edge")]
    records = [
        record("a", "tiny", False, output_error="not JSON"), record("a", "edge", True),
        record("b", "tiny", False, status="failed"),
        record("b", "edge", True, calls=[{"tier": "edge", "input_tokens": 50, "output_tokens": 5,
                                          "logprob_mean": -0.1, "logprob_min": -0.9},
                                         {"tier": "edge", "input_tokens": 70, "output_tokens": 9,
                                          "logprob_mean": -0.7, "logprob_min": -3.0, "unverified": "grounding"}]),
        # a private request that reached cloud: the benchmark counts it as a violation
        record("c", "tiny", True), record("c", "edge", True, calls=[{"tier": "cloud", "input_tokens": 1,
                                                                      "output_tokens": 1}]),
        record("d", "tiny", True),
    ]
    got = {i.item: i for i in routing_items("e2e-core", items, records, ["tiny", "edge"],
                                            cleared_for_private=["tiny", "edge"],
                                            private_patterns=DEFAULT_PRIVATE_PATTERNS,
                                            budget={"max_tokens": 150, "max_cost": None})}
    assert sorted(got) == ["a", "b", "c"]  # "d" lacks an edge outcome
    a, b, c = got["a"], got["b"], got["c"]
    assert (a.outcomes["tiny"].checks_ok, a.outcomes["tiny"].failed_check) == (False, "schema")
    assert a.outcomes["edge"].passed and a.outcomes["edge"].checks_ok and a.outcomes["edge"].tokens == 120
    assert b.outcomes["tiny"].failed_check == "status"
    # two calls: the item's confidence is its weakest call's, and the kept unverified reply is a failed check
    assert (b.outcomes["edge"].logprob_mean, b.outcomes["edge"].logprob_min) == (-0.7, -3.0)
    assert b.outcomes["edge"].failed_check == "grounding" and b.outcomes["edge"].calls == 2
    assert c.private and c.outcomes["edge"].private_violation and not c.outcomes["tiny"].private_violation
    assert not a.private and a.suite == "e2e-core" and a.outcomes["edge"].wall_s == 1.5
    # a run may use 150 tokens: b's two edge calls (134) fit, a cloud detour of 2 tokens too, nothing went over
    assert not any(o.budget_overrun for i in got.values() for o in i.outcomes.values())
    tight = routing_items("e2e-core", items[:1], records, ["tiny", "edge"], cleared_for_private=["tiny", "edge"],
                          budget={"max_tokens": 119})
    assert tight[0].outcomes["edge"].budget_overrun and tight[0].outcomes["tiny"].budget_overrun  # 120 tokens each
    # today's prices re-price stored calls: 100 input and 20 output tokens at 1 and 2 per 1k, plus 1.5 s at 0.1/s
    [repriced] = routing_items("e2e-core", items[:1], records, ["tiny", "edge"], cleared_for_private=["tiny"],
                               prices={"tiny": (1.0, 2.0, 0.0), "edge": (1.0, 2.0, 0.1)})
    assert repriced.outcomes["tiny"].cost == pytest.approx(0.14)
    assert repriced.outcomes["edge"].cost == pytest.approx(0.14)  # its call has no latency_ms: no compute charge
    assert a.outcomes["edge"].cost == 0.002  # without prices, the cost stored at run time


def test_a_routing_file_is_recognised_and_its_bad_fields_are_named(tmp_path):
    assert is_routing_file("routing") is not None and is_routing_file("bfcl-simple") is None
    shipped = load_routing(is_routing_file("routing"))
    assert shipped.tiers == ["tiny", "mobile", "edge"] and shipped.config.name == "routing.toml"
    bad = tmp_path / "one-tier.yaml"
    bad.write_text("kind: routing\nname: one\nsuites: {bfcl-simple: 2}\ntiers: [tiny]\n")
    with pytest.raises(SuiteError, match="tiers"):
        load_routing(is_routing_file(bad))


@pytest.mark.model
def test_eval_routing_runs_each_tier_alone_and_writes_the_curves(tmp_path):
    # two rungs of the cheapest model, so the test stays fast: 'tiny' answers in at most 24 tokens, 'tiny-long'
    # in up to 256; BFCL calls need room, so the short rung fails more and the cascade has something to do
    (tmp_path / "tiers.toml").write_text(
        '[tiers.tiny]\nmax_tokens = 24\n\n[tiers.tiny-long]\nkind = "llamacpp"\nshipped = "smollm2-135m"\n'
        'n_threads = 1\nmax_tokens = 256\nstrength = 1\ncost_per_cpu_s = 0.00002\n')
    bench = tmp_path / "mini.yaml"
    bench.write_text("kind: routing\nname: mini\nsuites: {bfcl-simple: 4}\ntiers: [tiny, tiny-long]\n"
                     "config: tiers.toml\nfolds: 2\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["eval", str(bench), "--out", str(out), "--json", "--no-progress"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    items = read_items(out / "items.jsonl")
    assert len(items) == 4 and all(set(i.outcomes) == {"tiny", "tiny-long"} for i in items)
    assert all(o.logprob_mean is not None and o.cost > 0 for i in items for o in i.outcomes.values())
    records = [json.loads(line) for line in (out / "bfcl-simple" / "results.jsonl").read_text().splitlines()]
    assert all(c["tier"] == r["tier"] for r in records for c in r["output"]["model_calls"])  # no escalation
    strategies = report["strategies"]
    assert {"tier:tiny", "tier:tiny-long", "static", "cascade", "oracle", "random"} <= set(strategies)
    oracle = strategies["oracle"]["points"][0]
    assert oracle["quality"] == max(s["points"][0]["quality"] for k, s in strategies.items() if k.startswith("tier:"))
    assert not any(report["privacy_violations"].values())
    assert "<img" in (out / "routing.html").read_text() and (out / "routing.md").is_file()
    assert report["benchmark"]["tiers"] == ["tiny", "tiny-long"]
