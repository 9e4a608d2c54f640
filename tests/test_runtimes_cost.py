"""One price per call: the router's ledger, the eval cost metric and trace cost details share it."""

import pytest

from tierflow.runtimes.config import LOCAL_CPU_SECOND_PRICE, TierConfig, default_tiers
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
    # the shipped tiers are priced per token at what their tokens take in CPU-seconds at one rate: deterministic
    # (a busy machine does not make the same tokens dearer), and a bigger model's tokens cost more
    tiers = default_tiers()
    assert all(t.cost_per_cpu_s == 0 for t in tiers.values())
    assert tiers["edge"].cost_per_1k_input == pytest.approx(1000 / 45 * LOCAL_CPU_SECOND_PRICE, rel=1e-5)
    assert tiers["tiny"].cost_per_1k_output < tiers["mobile"].cost_per_1k_output < tiers["edge"].cost_per_1k_output


def test_a_chat_prompt_counts_its_text_and_each_messages_template():
    assert chat_prompt_tokens(100, 3) == 100 + 3 * TEMPLATE_TOKENS_PER_MESSAGE
