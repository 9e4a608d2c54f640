"""One price per call: the router's ledger, the eval cost metric and trace cost details share it."""

import pytest

from tierflow.runtimes.config import TierConfig, default_tiers
from tierflow.runtimes.cost import TEMPLATE_TOKENS_PER_MESSAGE, call_cost, chat_prompt_tokens, tier_price, tier_prices


def test_a_call_costs_its_tokens_at_the_tiers_price_per_1k():
    paid = TierConfig(kind="openai", base_url="http://127.0.0.1:1/v1", model="m", cost_per_1k_input=2.0,
                      cost_per_1k_output=6.0)
    cost = call_cost(tier_price(paid), 1500, 500)
    assert (cost.input, cost.output, cost.total) == pytest.approx((3.0, 3.0, 6.0))
    assert cost.details() == {"input": cost.input, "output": cost.output, "total": cost.total}
    assert call_cost(None, 1500, 500).total == 0.0  # a tier without a price is free
    assert tier_prices({"cloud": paid, **default_tiers()})["cloud"] == (2.0, 6.0, 0.0)
    assert call_cost((2.0, 6.0), 1500, 500, wall_s=9.0).total == pytest.approx(6.0)  # a plain pair: tokens only


def test_a_local_tier_costs_its_cpu_seconds_at_the_declared_rate():
    local = TierConfig(kind="llamacpp", n_threads=2, cost_per_cpu_s=0.00001)
    price = tier_price(local)
    assert price.per_s == pytest.approx(0.00002)  # two busy threads: two CPU-seconds per second of wall time
    cost = call_cost(price, 300, 40, wall_s=5.0)
    assert (cost.input, cost.output, cost.compute) == pytest.approx((0.0, 0.0, 0.0001))
    assert cost.details() == pytest.approx({"input": 0.0, "output": 0.0, "total": 0.0001, "compute": 0.0001})
    # the shipped tiers share one rate: a bigger model costs more by the CPU time it takes, not by a guess
    tiers = default_tiers()
    assert {t.cost_per_cpu_s for t in tiers.values()} == {0.00001}
    assert [tier_price(t).per_s for t in tiers.values()] == pytest.approx([0.00001 * t.n_threads
                                                                          for t in tiers.values()])


def test_a_chat_prompt_counts_its_text_and_each_messages_template():
    assert chat_prompt_tokens(100, 3) == 100 + 3 * TEMPLATE_TOKENS_PER_MESSAGE
