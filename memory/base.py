"""The memory contract the orchestrator's recall and remember nodes use."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from tierflow.memory.types import MemoryHit


@runtime_checkable
class Memory(Protocol):
    """Recall relevant memories for a request; remember a finished run (idempotent per run id).

    ``search`` returns hits with their data class (``private``), so a run that recalls a private memory
    becomes private itself; ``recall`` is the texts only.
    """

    def search(self, query: str, k: int = 5, *, user_id: str = "local") -> list[MemoryHit]: ...

    def recall(self, query: str, k: int = 5, *, user_id: str = "local") -> list[str]: ...

    def remember(self, episode: dict[str, Any], *, user_id: str = "local") -> None: ...
