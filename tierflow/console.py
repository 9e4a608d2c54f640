"""How every ``tierflow`` command reports an error: one line on stderr, never markup, a meaningful exit code."""

from __future__ import annotations

import logging
import os

import typer
from rich.console import Console
from rich.text import Text

err = Console(stderr=True, soft_wrap=True)


def exit_code(exc: BaseException) -> int:
    """2 for bad input (a tierflow error that is also a ValueError or LookupError), 1 for a failure."""
    return 2 if isinstance(exc, ValueError | LookupError) else 1


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one clear line on stderr and return the Exit to raise (no traceback for known errors).

    The message is printed as it is: user text such as ``[bold]`` in a request is never read as markup.
    """
    line = " ".join(str(message).split()) or "unknown error"
    err.print(Text.assemble(("error: ", "bold red"), line), highlight=False)
    return typer.Exit(code)


def offline_env() -> None:
    """Models ship inside PyPI packages: never let a library try a model hub at run time; quiet HTTP logs."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    logging.getLogger("httpx").setLevel(logging.WARNING)
