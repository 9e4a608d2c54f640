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
    assert tier_prices({"cloud": paid, **default_tiers()})["cloud"] == (2.0, 6.0)


def test_a_chat_prompt_counts_its_text_and_each_messages_template():
    assert chat_prompt_tokens(100, 3) == 100 + 3 * TEMPLATE_TOKENS_PER_MESSAGE
