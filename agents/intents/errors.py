"""Typed errors of the intent capability, so callers (and the CLI) can report bad input cleanly."""

from __future__ import annotations

from pathlib import Path

from tierflow.runtimes.errors import TierflowError


class IntentDataError(TierflowError, ValueError):
    """Labelled data is unusable; names the file and (1-based) line so the user can fix it."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.reason = message
        where = ""
        if self.path is not None:
            where = self.path if line is None else f"{self.path}:{line}"
            where += ": "
        super().__init__(f"{where}{message}")


class IntentModelError(TierflowError, RuntimeError):
    """A model directory is missing, incomplete or incompatible with this code."""
