"""``tierflow mcp serve NAME``: tierflow's MCP servers over stdio or streamable HTTP."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Any

import typer

mcp_app = typer.Typer(help="serve tierflow's MCP servers (tierflow, notes, calculator)", no_args_is_help=True)
SERVERS = ("tierflow", "notes", "calculator")


class LazyTierflow:
    """Settings → agents → orchestrator, built on first use so a client's handshake is not kept waiting.

    When tracing is configured (settings or ``LANGFUSE_*``), each ``run_task`` is traced; the server runs it
    inside the caller's trace context, so its spans join the caller's trace. Spans are flushed after each run.
    """

    def __init__(self, config: Path | None) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._built: tuple[Any, Any, Any] | None = None
        self.tracing: Any = None

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
        from tierflow.graphs.runner import run_request
        from tierflow.mcp_servers.tierflow_server import NodeProgress

        settings, _, graph = self.parts()
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
        return build_tierflow_server(lazy.run_task, lazy.classify, lazy.plan, lazy.catalog)
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
    from tierflow.mcp_servers.serve import ServeError
    from tierflow.mcp_servers.serve import serve as run_server
    from tierflow.settings import SettingsError

    offline_env()
    try:
        server = build_server(name, config, root)
        run_server(server, http=http, host=host, port=port, token=token, allowed_origins=allow_origin)
    except (ServeError, SettingsError, ValueError) as exc:
        raise fail(str(exc)) from None
