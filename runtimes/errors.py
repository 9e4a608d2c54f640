"""Typed errors of the runtime layer; the CLI turns each into a one-line message and exit code."""

from __future__ import annotations

from collections.abc import Mapping


class TierflowError(Exception):
    """Root of every error tierflow raises on purpose; the CLI catches it once and prints one line.

    It lives in the lowest layer so every folder can derive from it without importing upwards. Errors that
    are also ``ValueError`` or ``LookupError`` mean bad input (exit 2); the others mean the run could not be
    done (exit 1).
    """


class RuntimeLayerError(TierflowError):
    """Base of every error raised by ``runtimes``."""


class TierConfigError(RuntimeLayerError, ValueError):
    """A tier is declared wrongly (missing base URL, unreadable model file, bad values)."""


class UnknownTierError(RuntimeLayerError, KeyError):
    """A call named a tier that settings do not declare."""

    def __init__(self, tier: str, known: list[str], who: str | None = None) -> None:
        super().__init__(tier)
        self.tier = tier
        self.known = known
        self.who = who  # the setting that named it (``default_tier``, ``routing.order``), when known

    def __str__(self) -> str:
        named = f"{self.who} names unknown tier" if self.who else "unknown tier"
        return f"{named} {self.tier!r}; declared tiers: {', '.join(self.known) or '(none)'}"


class TierUnavailableError(RuntimeLayerError):
    """A tier could not be started or reached (model file missing, server down, timeout)."""

    def __init__(self, tier: str, reason: str) -> None:
        super().__init__(f"tier {tier!r} is unavailable: {reason}")
        self.tier = tier
        self.reason = reason


class ContextLengthExceeded(RuntimeLayerError, ValueError):
    """The prompt plus the reserved output does not fit the tier's context window."""

    def __init__(self, tier: str, prompt_tokens: int, limit: int) -> None:
        super().__init__(
            f"prompt of {prompt_tokens} tokens does not fit tier {tier!r} "
            f"(context {limit} tokens, including room for the answer)"
        )
        self.tier = tier
        self.prompt_tokens = prompt_tokens
        self.limit = limit


class TierTimeoutError(RuntimeLayerError, TimeoutError):
    """A call ran past its tier's deadline and was cut off."""

    def __init__(self, tier: str, timeout_s: float) -> None:
        super().__init__(f"tier {tier!r} did not finish within {timeout_s:g} s")
        self.tier = tier
        self.timeout_s = timeout_s


class BudgetExceeded(RuntimeLayerError):
    """A run crossed one of its budgets; ``usage`` is what it had used when it stopped."""

    def __init__(self, limit: str, usage: dict[str, float], budget: dict[str, float | None]) -> None:
        super().__init__(f"run budget exceeded: {limit} (used {usage}, budget {budget})")
        self.limit = limit
        self.usage = usage
        self.budget = budget


class NoTierAvailable(RuntimeLayerError):
    """No declared tier may serve a call (privacy, capabilities, context, open circuits, or all failed)."""

    def __init__(self, reasons: dict[str, str], tried: list[str] | None = None,
                 errors: Mapping[str, BaseException] | None = None) -> None:
        detail = "; ".join(f"{tier}: {why}" for tier, why in reasons.items()) or "no tiers declared"
        super().__init__(f"no tier can serve this call — {detail}")
        self.reasons = reasons
        # Tiers that were called and failed, in order (empty: none was allowed to take the call).
        self.tried = list(tried or [])
        # What each tried tier raised (or the schema mismatch that escalated past it), as exception objects.
        self.errors = dict(errors or {})

    @property
    def rule(self) -> str:
        """How the router ended: every allowed tier failed, or none was allowed."""
        return "all_failed" if self.tried else "none_allowed"


class StructuredOutputError(RuntimeLayerError, ValueError):
    """The model's output is not JSON that matches the requested schema."""

    def __init__(self, tier: str, reason: str, raw: str) -> None:
        super().__init__(f"tier {tier!r} returned unusable structured output: {reason}")
        self.tier = tier
        self.reason = reason
        self.raw = raw


class SchemaMismatch(StructuredOutputError):
    """A tier's reply is not JSON that satisfies the call's schema; the router escalates it to a stronger tier."""


class CheckFailed(RuntimeLayerError):
    """A tier's reply failed one of the cascade's checks (confidence, grounding, ...); the router escalated it."""

    def __init__(self, tier: str, check: str, value: float | str, threshold: float | None = None,
                 detail: str = "") -> None:
        bound = f" (threshold {threshold:g})" if threshold is not None else ""
        super().__init__(f"tier {tier!r} reply failed check {check}: {value}{bound}{'; ' + detail if detail else ''}")
        self.tier, self.check, self.value, self.threshold, self.detail = tier, check, value, threshold, detail


def _model_call_errors() -> tuple[type[BaseException], ...]:
    import httpx
    import openai

    return (RuntimeLayerError, openai.APIError, httpx.HTTPError, TimeoutError, ConnectionError)


def __getattr__(name: str) -> object:
    # MODEL_CALL_ERRORS: everything a model call may raise that is the tier's fault rather than a bug; callers
    # that degrade gracefully (a failed subtask, a fallback plan) catch exactly these. Built on first use: it
    # needs openai (~1 s to import), and the CLI imports this module just for the error root.
    if name == "MODEL_CALL_ERRORS":
        value = _model_call_errors()
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Errors that end the whole run instead of one subtask: agents re-raise them rather than degrade.
RUN_ENDING_ERRORS: tuple[type[BaseException], ...] = (ContextLengthExceeded, BudgetExceeded)
