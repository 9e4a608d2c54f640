"""What makes a request runnable at all, checked before anything heavy is imported or loaded."""

from __future__ import annotations

from tierflow.runtimes.errors import TierflowError

MAX_REQUEST_CHARS = 20_000


class RequestError(TierflowError, ValueError):
    """A request that cannot be run at all (empty, too long, not text)."""


class RunNotFoundError(RequestError):
    """``resume`` named a run id that has no checkpoint, or a run that cannot take what was passed."""


def check_request(request: str, max_chars: int = MAX_REQUEST_CHARS) -> str:
    """The request stripped; empty or oversized requests raise RequestError before any work starts."""
    if not isinstance(request, str):
        raise RequestError(f"request must be text, got {type(request).__name__}")
    text = request.strip()
    if not text:
        raise RequestError("request is empty")
    if len(text) > max_chars:
        raise RequestError(f"request has {len(text)} characters; the limit is {max_chars}")
    return text
