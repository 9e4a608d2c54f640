"""``tierflow mcp serve NAME``: tierflow's MCP servers over stdio or streamable HTTP."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

mcp_app = typer.Typer(help="serve tierflow's MCP servers (tierflow, notes, calculator)", no_args_is_help=True)
SERVERS = ("tierflow", "notes", "calculator")


class LazyTierflow:
    """Settings → agents → orchestrator, built in the background once serving starts, so a handshake never waits.

    :meth:`warm` starts the build on a thread when the server starts serving; every tool call waits for it (or
    builds, if it failed, and reports the error). When tracing is configured (settings or ``LANGFUSE_*``), each
    ``run_task`` is traced; the server runs it inside the caller's trace context, so its spans join the caller's
    trace. Spans are flushed after each run.
    """

    def __init__(self, config: Path | None) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._built: tuple[Any, Any, Any] | None = None
        self._warming: threading.Thread | None = None
        self._warm_once = threading.Lock()  # (the build lock is held for the whole build; warm() must not wait)
        self.tracing: Any = None

    def warm(self) -> None:
        """Start building settings, models and tiers on a background thread (once); returns at once."""
        with self._warm_once:
            if self._warming is not None:  # an HTTP server starts serving once per session
                return
            self._warming = threading.Thread(target=self._warm, name="tierflow-mcp-warm", daemon=True)
        # One line on stderr (an MCP host's log), also the mark a module-import log is split at: what was imported
        # before it is what serving needed (tests/test_mcp_serve_startup.py).
        print("tierflow MCP server: serving; loading models in the background", file=sys.stderr, flush=True)
        self._warming.start()

    def _warm(self) -> None:
        started = time.monotonic()
        try:
            self.parts()
        except Exception as exc:  # the tool calls build again and report it to the caller
            print(f"tierflow MCP server: loading failed ({type(exc).__name__}: {exc}); tool calls will retry",
                  file=sys.stderr, flush=True)
            return
        print(f"tierflow MCP server: ready ({time.monotonic() - started:.1f} s to load)", file=sys.stderr, flush=True)

    def parts(self) -> tuple[Any, Any, Any]:
        with self._lock:
            if self._built is None:
                from tierflow.app import build_deps, build_graph
                from tierflow.settings import load_settings

                settings = load_settings(self.config)
                self.tracing = _open_tracing(settings)
                deps = build_deps(settings)
                self._built = (settings, deps, build_graph(settings, deps))
            return self._built

    def run_task(self, request: str, progress: Any) -> Any:
        # parts() first: it waits for the background build, and importing LangChain modules here while that
        # thread imports them too trips Python's import-deadlock detection (seen in tests/test_tracing_mcp.py).
        settings, _, graph = self.parts()
        from tierflow.graphs.runner import run_request
        from tierflow.mcp_servers.tierflow_server import NodeProgress

        callbacks: list[Any] = [NodeProgress(progress)]
        if self.tracing is not None:
            callbacks.append(self.tracing.handler(costs=settings.tier_costs()))
        try:
            return run_request(graph, request, callbacks=callbacks)
        finally:
            if self.tracing is not None:
                self.tracing.flush()  # bounded by tracing.flush_timeout_s; a server may be stopped any time

    def classify(self, text: str) -> dict[str, Any]:
        return self.parts()[1].classifier.classify(text).model_dump()

    def plan(self, request: str) -> dict[str, Any]:
        deps = self.parts()[1]
        intent = deps.classifier.classify(request)
        return deps.decomposer.decompose(request, None if intent.out_of_scope else intent.label).model_dump()

    def catalog(self) -> dict[str, Any]:
        settings, deps, _ = self.parts()
        labels = getattr(deps.classifier, "labels", None) or []
        return {"graphs": [{"name": "orchestrator", "patterns": sorted(deps.patterns)}],
                "intents": list(labels),
                "agents": [{"role": r.name, "instructions": r.instructions} for r in deps.worker.roles.values()],
                "tiers": sorted(settings.tiers)}


def _open_tracing(settings: Any) -> Any:
    """The serving process's Tracing (closed, bounded, at exit), or None when tracing is off."""
    import atexit

    from tierflow import __version__
    from tierflow.tracing import open_tracing

    tracing = open_tracing(settings.tracing, release=__version__)
    if tracing is not None:
        atexit.register(tracing.close)
    return tracing


def build_server(name: str, config: Path | None = None, root: Path | None = None) -> Any:
    """The FastMCP server called ``name``; raises ValueError for an unknown name."""
    if name == "tierflow":
        from tierflow.mcp_servers.tierflow_server import build_tierflow_server

        lazy = LazyTierflow(config)
        return build_tierflow_server(lazy.run_task, lazy.classify, lazy.plan, lazy.catalog, warm=lazy.warm)
    if name == "notes":
        from tierflow.mcp_servers.notes import build_notes_server
        from tierflow.settings import load_settings

        return build_notes_server(root or load_settings(config).home / "notes")
    if name == "calculator":
        from tierflow.mcp_servers.calculator import build_calculator_server

        return build_calculator_server()
    raise ValueError(f"unknown MCP server {name!r}; available: {', '.join(SERVERS)}")


@mcp_app.command()
def serve(
    name: Annotated[str, typer.Argument(help=f"server: {', '.join(SERVERS)}")],
    http: Annotated[bool, typer.Option("--http", help="streamable HTTP at http://HOST:PORT/mcp instead of stdio")]
    = False,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8765,
    token: Annotated[str | None, typer.Option("--token", envvar="TIERFLOW_MCP_TOKEN",
                                              help="bearer token clients must send (required off loopback)")] = None,
    root: Annotated[Path | None, typer.Option("--root", help="notes: the folder (default: HOME/notes)")] = None,
    allow_origin: Annotated[list[str] | None, typer.Option("--allow-origin", help="an extra browser Origin "
                                                           "allowed on loopback (repeat); default: the server's own")]
    = None,
    config: Annotated[Path | None, typer.Option("--config", help="settings TOML file")] = None,
) -> None:
    """Serve the MCP server NAME on stdio (for MCP hosts) or, with --http, over streamable HTTP."""
    from tierflow.console import fail, offline_env
    from tierflow.mcp_servers.serve import serve as run_server

    offline_env()
    try:
        server = build_server(name, config, root)
        run_server(server, http=http, host=host, port=port, token=token, allowed_origins=allow_origin)
    except ValueError as exc:  # ServeError and SettingsError are ValueErrors (settings are not imported to serve)
        raise fail(str(exc)) from None
