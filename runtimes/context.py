"""The run context (run id, user, data class, tier) and the router's decision on a reply: one place spells their keys.

LangGraph hands every node, and LangChain every model call and callback, the run's ``RunnableConfig``; its
``metadata`` is the one channel that reaches the router and the trace handler unchanged, so the context travels
there. Writers build a :class:`RunContext` and call :meth:`RunContext.apply`; readers call :meth:`RunContext.of`
(a config) or :meth:`RunContext.from_metadata`. A reply's routing decision travels in ``response_metadata``
(:func:`route_of`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

RUN_ID_KEY = "tierflow_run_id"
USER_KEY = "user_id"  # the name Langfuse's handler and LangSmith also read
PRIVATE_KEY = "tierflow_private"
TIER_KEY = "tierflow_tier"
CONTEXT_KEYS = (RUN_ID_KEY, USER_KEY, PRIVATE_KEY, TIER_KEY)
ROUTE_KEY = "route"  # response_metadata key of the router's decision (a RouteDecision as a dict)


@dataclass(frozen=True)
class RunContext:
    """Who a run is for and how its data may travel; ``private`` keeps every model call on the device."""

    run_id: str | None = None
    user_id: str | None = None
    private: bool = False
    tier: str | None = None  # a forced tier (evals pin one); None lets the router choose

    @classmethod
    def of(cls, config: Mapping[str, Any] | None) -> RunContext:
        """The context a ``RunnableConfig`` carries in its metadata."""
        return cls.from_metadata((config or {}).get("metadata"))

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None) -> RunContext:
        """The context in callback or config metadata (what LangChain passes to handlers and chat models)."""
        metadata = metadata or {}
        run_id, user, tier = metadata.get(RUN_ID_KEY), metadata.get(USER_KEY), metadata.get(TIER_KEY)
        return cls(run_id=str(run_id) if run_id else None, user_id=str(user) if user else None,
                   private=bool(metadata.get(PRIVATE_KEY)), tier=str(tier) if tier else None)

    def to_metadata(self) -> dict[str, Any]:
        """The metadata entries of this context (unset fields are left out; ``private`` always present)."""
        pairs = {RUN_ID_KEY: self.run_id, USER_KEY: self.user_id, TIER_KEY: self.tier}
        return {**{key: value for key, value in pairs.items() if value is not None}, PRIVATE_KEY: self.private}

    def apply(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """``config`` with this context merged into its metadata (other metadata kept)."""
        return {**config, "metadata": {**(config.get("metadata") or {}), **self.to_metadata()}}

    def made_private(self) -> RunContext:
        """This context with its data class raised to private (a private memory joined the run)."""
        return self if self.private else replace(self, private=True)


def route_of(message: Any) -> dict[str, Any] | None:
    """The router's decision carried by a model reply, or None when the reply did not come through the router."""
    route = (getattr(message, "response_metadata", None) or {}).get(ROUTE_KEY)
    return dict(route) if isinstance(route, Mapping) else None


def set_route(message: Any, decision: Mapping[str, Any]) -> None:
    """Attach the router's decision (and its tier, which LangChain tooling shows) to a model reply."""
    message.response_metadata[ROUTE_KEY] = dict(decision)
    message.response_metadata["tier"] = decision.get("tier")
