"""What one model call uses and costs: the chat-template token guess and the price of tokens on a tier.

One definition for the router's budget ledger, the eval cost metric and the trace handler's cost details. It
imports nothing heavy, so tracing can price a generation without importing the router.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tierflow.runtimes.config import TierConfig

# Per-message overhead of chat templates (role markers, separators); a deliberate over-estimate.
TEMPLATE_TOKENS_PER_MESSAGE = 8

Price = tuple[float, float]
"""A tier's price per 1k input tokens and per 1k output tokens."""


@dataclass(frozen=True)
class CallCost:
    """The price of one call's input and output tokens."""

    input: float
    output: float

    @property
    def total(self) -> float:
        return self.input + self.output

    def details(self) -> dict[str, float]:
        """``{"input", "output", "total"}``, the shape Langfuse's ``cost_details`` takes."""
        return {"input": self.input, "output": self.output, "total": self.total}


def chat_prompt_tokens(text_tokens: int, n_messages: int) -> int:
    """Tokens of a chat prompt: its text plus each message's template overhead."""
    return text_tokens + TEMPLATE_TOKENS_PER_MESSAGE * n_messages


def tier_price(config: TierConfig) -> Price:
    """The (input, output) price per 1k tokens a tier declares."""
    return config.cost_per_1k_input, config.cost_per_1k_output


def tier_prices(tiers: Mapping[str, TierConfig]) -> dict[str, Price]:
    """Every tier's price by name, as tracing and the eval cost metric take it."""
    return {name: tier_price(config) for name, config in tiers.items()}


def call_cost(price: Price | None, input_tokens: int, output_tokens: int) -> CallCost:
    """What a call with these token counts costs at ``price`` (a tier without a price is free)."""
    price_in, price_out = price or (0.0, 0.0)
    return CallCost(input_tokens / 1000 * price_in, output_tokens / 1000 * price_out)
