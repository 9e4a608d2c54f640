"""What one model call uses and costs: the chat-template token guess and the price of a call on a tier.

The one cost model of tierflow, used by the router's budget ledger, the eval cost metric, the trace handler's cost
details and the routing benchmark. A tier declares a price per 1k input and output tokens (what remote servers
bill) and, for a local tier, a price per CPU-second: a call's CPU-seconds are its wall time times the tier's
threads (llama.cpp keeps its threads busy while it decodes). It imports nothing heavy, so tracing can price a
generation without importing the router.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from tierflow.runtimes.config import TierConfig

# Per-message overhead of chat templates (role markers, separators); a deliberate over-estimate.
TEMPLATE_TOKENS_PER_MESSAGE = 8



class Price(NamedTuple):
    """A tier's price per 1k input tokens, per 1k output tokens and per second of a call's wall time.

    ``per_s`` is the declared price per CPU-second times the tier's threads; a plain ``(input, output)`` pair is a
    price too (per_s 0).
    """

    input: float
    output: float
    per_s: float = 0.0


@dataclass(frozen=True)
class CallCost:
    """The price of one call's input and output tokens."""

    input: float
    output: float
    compute: float = 0.0  # CPU-seconds of a local tier at its declared rate

    @property
    def total(self) -> float:
        return self.input + self.output + self.compute

    def details(self) -> dict[str, float]:
        """``{"input", "output", "total"}`` (plus ``compute`` when priced), the shape Langfuse's ``cost_details``
        takes."""
        out = {"input": self.input, "output": self.output, "total": self.total}
        if self.compute:
            out["compute"] = self.compute
        return out


def chat_prompt_tokens(text_tokens: int, n_messages: int) -> int:
    """Tokens of a chat prompt: its text plus each message's template overhead."""
    return text_tokens + TEMPLATE_TOKENS_PER_MESSAGE * n_messages


def tier_price(config: TierConfig) -> Price:
    """The price a tier declares: per 1k input and output tokens, and per second of wall time (local tiers:
    CPU-second rate times threads)."""
    per_s = config.cost_per_cpu_s * config.n_threads if config.kind != "openai" else config.cost_per_cpu_s
    return Price(config.cost_per_1k_input, config.cost_per_1k_output, per_s)


def tier_prices(tiers: Mapping[str, TierConfig]) -> dict[str, Price]:
    """Every tier's price by name, as tracing and the eval cost metric take it."""
    return {name: tier_price(config) for name, config in tiers.items()}


def call_cost(price: tuple[float, ...] | None, input_tokens: int, output_tokens: int,
              wall_s: float = 0.0) -> CallCost:
    """What a call with these token counts and this wall time costs at ``price`` (a tier without a price is
    free); ``price`` is a :class:`Price` or a plain ``(input, output)`` pair."""
    price_in, price_out, per_s = (*(price or ()), 0.0, 0.0, 0.0)[:3]
    return CallCost(input_tokens / 1000 * price_in, output_tokens / 1000 * price_out, max(0.0, wall_s) * per_s)
