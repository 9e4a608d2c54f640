"""The memory contract the orchestrator's recall and remember nodes use."""

from __future__ import annotations

from typing import Any, NotRequired, Protocol, Required, TypedDict, runtime_checkable

from tierflow.memory.types import MemoryHit


class Episode(TypedDict, total=False):
    """A finished run as memory stores it: the stores hash and keep exactly these keys, so it stays a dict.

    Every key but ``run_id`` and ``request`` may be None; ``private`` is present only when the run was private.
    """

    run_id: Required[str]
    request: Required[str]
    intent: dict[str, Any] | None
    plan: dict[str, Any] | None
    pattern: str | None
    results: list[dict[str, Any]] | None
    answer: str | None
    private: NotRequired[bool]  # the data class: recalling a private run's memory makes the recalling run private
    session_id: NotRequired[str]
    entities: NotRequired[list[str]]


@runtime_checkable
class Memory(Protocol):
    """Recall relevant memories for a request; remember a finished run (idempotent per run id).

    ``search`` returns hits with their data class (``private``), so a run that recalls a private memory
    becomes private itself; ``recall`` is the texts only.
    """

    def search(self, query: str, k: int = 5, *, user_id: str = "local") -> list[MemoryHit]: ...

    def recall(self, query: str, k: int = 5, *, user_id: str = "local") -> list[str]: ...

    def remember(self, episode: Episode, *, user_id: str = "local") -> None: ...
