"""``tierflow traces``: review runs offline from a trace file; and the tracing wiring of ``tierflow run``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from tierflow import __version__

if TYPE_CHECKING:
    from langchain_core.callbacks import BaseCallbackHandler

traces_app = typer.Typer(name="traces", help="Review traced runs offline (spans written with --trace-file).",
                         no_args_is_help=True, pretty_exceptions_enable=False)
DEFAULT_TRACE_FILE = "traces.jsonl"


class RunTracing:
    """Tracing around one ``tierflow run``: ``with run_tracing as callbacks:``; a no-op when tracing is off."""

    def __init__(self, settings: Any, trace_file: Path | None = None) -> None:
        from tierflow.tracing import open_tracing

        self.tracing = open_tracing(settings.tracing, trace_file=trace_file, release=__version__)
        self.costs = settings.tier_costs()
        self.handler: Any = None

    def __enter__(self) -> list[BaseCallbackHandler]:
        if self.tracing is None:
            return []
        self.handler = self.tracing.handler(costs=self.costs)
        return [self.handler]

    def __exit__(self, *exc: object) -> None:
        if self.tracing is not None:
            self.tracing.close()  # bounded by tracing.flush_timeout_s; never raises

    @property
    def trace_ids(self) -> list[str]:
        return list(self.handler.trace_ids) if self.handler is not None else []


def open_run_tracing(settings: Any, trace_file: Path | None = None) -> RunTracing:
    """Tracing as settings, ``LANGFUSE_*`` and ``--trace-file`` configure it; TracingConfigError if malformed."""
    return RunTracing(settings, trace_file)


@traces_app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="the run's id (its thread id)")],
    file: Annotated[Path | None, typer.Option("--file", help="trace file (default: tracing.trace_file, "
                                                             "else traces.jsonl in the data folder)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the tree as JSON")] = False,
    config: Annotated[Path | None, typer.Option("--config", help="settings TOML file")] = None,
) -> None:
    """Print run RUN_ID as a tree of spans with timings, tiers and tokens."""
    from tierflow.console import fail
    from tierflow.settings import SettingsError, load_settings
    from tierflow.tracing import RunNotFoundError, TraceFileError, read_spans, render, run_trees

    try:
        if file is None:
            settings = load_settings(config)
            file = settings.tracing.trace_file or settings.home / DEFAULT_TRACE_FILE
        roots = run_trees(read_spans(file), run_id)
    except (SettingsError, TraceFileError) as exc:
        raise fail(str(exc)) from None
    except RunNotFoundError as exc:
        raise fail(f"{exc} {file}", code=1) from None
    if as_json:
        print(json.dumps([_as_dict(root) for root in roots], default=str))
        return
    # Piped output (files, pagers, tests) is not wrapped at 80 columns: one span per line.
    console = Console() if sys.stdout.isatty() else Console(width=240)
    for tree in render(roots):
        console.print(tree)


def _as_dict(node: Any) -> dict[str, Any]:
    return {**node.record, "children": [_as_dict(child) for child in node.children]}
