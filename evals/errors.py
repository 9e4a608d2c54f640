"""Typed errors of the eval harness; each message names the file, line or field that was wrong."""

from __future__ import annotations

from pathlib import Path

from tierflow.runtimes.errors import TierflowError


class EvalError(TierflowError, ValueError):
    """Base of every eval-harness error the CLI reports as one line."""


class DatasetError(EvalError):
    """A dataset file or row is unusable; ``path`` and ``line`` say where."""

    def __init__(self, message: str, path: str | Path, line: int | None = None) -> None:
        self.path, self.line, self.reason = Path(path), line, message
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


class SuiteError(EvalError):
    """A suite declaration is malformed or names something that does not exist."""


class BaselineError(EvalError):
    """A baseline file is missing, unreadable or does not match the suite."""
