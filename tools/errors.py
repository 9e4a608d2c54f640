"""Typed errors of the tool layer."""

from __future__ import annotations

from tierflow.runtimes.errors import TierflowError


class ToolLayerError(TierflowError):
    """Base of every error raised by ``tools``."""


class UnknownToolError(ToolLayerError, KeyError):
    """A plan or agent named a tool that no registry holds."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.known = known

    def __str__(self) -> str:
        return f"unknown tool {self.name!r}; available: {', '.join(self.known) or '(none)'}"


class ToolInputError(ToolLayerError, ValueError):
    """Arguments a tool refuses: wrong type, too large, not allowed."""
