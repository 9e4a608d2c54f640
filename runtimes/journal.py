"""The call journal: the seam through which an executor makes a run's model and tool calls durable.

With no journal installed (the in-process executor) calls simply run. An executor that installs one
(``graphs/dbos_executor.py``) runs each call at most once per identity, hands back the recorded outcome when a
recovered run makes the same call again, and charges a run's budget once per call, whichever process asks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar

from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult

T = TypeVar("T")


class CallJournal(Protocol):
    """Records the calls of one run; installed for the run's whole execution with :func:`journaled`."""

    def model_call(self, tier: str, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any],
                   call: Callable[[], ChatResult]) -> tuple[ChatResult, str]:
        """Run (or replay) one call to ``tier``; returns its result and the call's durable key."""
        ...

    def tool_call(self, name: str, args: dict[str, Any], call: Callable[[], T]) -> T:
        """Run (or replay) one tool call; ``call`` must return, not raise, what the agent sees."""
        ...

    def charge(self, run_id: str, key: str, tokens: int, cost: float) -> None:
        """Charge call ``key`` to ``run_id``'s budget; a key already charged is not charged again."""
        ...

    def usage(self, run_id: str) -> tuple[int, float]:
        """Tokens and cost charged to ``run_id`` so far, over every process that worked on it."""
        ...


_CURRENT: ContextVar[CallJournal | None] = ContextVar("tierflow_call_journal", default=None)


def current_journal() -> CallJournal | None:
    """The journal of the run executing in this context, or None (calls run directly)."""
    return _CURRENT.get()


@contextmanager
def journaled(journal: CallJournal) -> Iterator[CallJournal]:
    """Install ``journal`` for the calls made inside the block (graph threads inherit it with the context)."""
    token = _CURRENT.set(journal)
    try:
        yield journal
    finally:
        _CURRENT.reset(token)
