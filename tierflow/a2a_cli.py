"""``tierflow a2a serve``: the orchestrator (or your graph) as an Agent2Agent (A2A) agent over HTTP."""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

a2a_app = typer.Typer(help="serve tierflow over Agent2Agent (A2A)", no_args_is_help=True)
ORCHESTRATOR_DESCRIPTION = ("tierflow multi-agent orchestration: classifies the request's intent, plans subtasks, "
                            "runs them with a team of agents (sequential, parallel, hierarchical or peer) on "
                            "device tiers, and answers with one synthesized result.")


class LazyGraph:
    """Settings → agents → graph, built on a background thread once serving starts; runs wait for it."""

    def __init__(self, settings: Any, graph: str | None, pattern: str | None, confirm_plan: bool) -> None:
        self.settings = settings
        self.spec = graph
        self.pattern = pattern
        self.confirm_plan = confirm_plan
        self.tracing: Any = None
        self._lock = threading.Lock()
        self._built: Any = None
        self._warming: threading.Thread | None = None

    def warm(self) -> None:
        """Start building on a background thread (once); returns at once."""
        if self._warming is None:
            self._warming = threading.Thread(target=self._warm, name="tierflow-a2a-warm", daemon=True)
            self._warming.start()

    def _warm(self) -> None:
        started = time.monotonic()
        try:
            self.graph()
        except Exception as exc:  # runs build again and report it to the caller
            print(f"tierflow A2A server: loading failed ({type(exc).__name__}: {exc}); runs will retry",
                  file=sys.stderr, flush=True)
            return
        print(f"tierflow A2A server: ready ({time.monotonic() - started:.1f} s to load)", file=sys.stderr, flush=True)

    def graph(self) -> Any:
        """The compiled graph (built on first call)."""
        with self._lock:
            if self._built is None:
                from tierflow.app import build_deps, build_graph
                from tierflow.mcp_cli import _open_tracing

                self.tracing = _open_tracing(self.settings)
                deps = build_deps(self.settings, classifier=_LazyClassifier(self.settings) if self.spec else None)
                deps.confirm_plan = self.confirm_plan
                self._built = build_graph(self.settings, deps, self.spec, self.pattern)
            return self._built

    def callbacks(self) -> list[Any]:
        """Each run's tracing handler, when tracing is configured."""
        if self.tracing is None:
            return []
        return [self.tracing.handler(costs=self.settings.tier_costs())]

    def flush(self) -> None:
        """Flush spans after a run (bounded by ``tracing.flush_timeout_s``)."""
        if self.tracing is not None:
            self.tracing.flush()


class _LazyClassifier:
    """The intent model, loaded on first use: your graph (``--graph``) may never classify."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.model: Any = None

    def classify(self, text: str) -> Any:
        if self.model is None:
            from tierflow.app import load_classifier

            self.model = load_classifier(self.settings)
        return self.model.classify(text)


def intent_labels(settings: Any) -> list[str]:
    """The intent model's labels, read from its ``intent_model.json`` (no model is loaded)."""
    from tierflow.agents.intents import DEMO_MODEL_DIR

    folder = Path(settings.intent_model) if settings.intent_model is not None else DEMO_MODEL_DIR
    try:
        return [str(label) for label in json.loads((folder / "intent_model.json").read_text())["labels"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def graph_description(spec: str | None) -> str:
    """What the card says the agent does: the orchestrator's summary, or the first paragraph of your factory's
    docstring (``--graph module:function``)."""
    if not spec:
        return ORCHESTRATOR_DESCRIPTION
    module_name, _, attr = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except Exception:  # the graph's own loading reports it properly
        return f"a tierflow graph ({spec})"
    doc = (getattr(target, "__doc__", None) or "").strip().split("\n\n")[0]
    return " ".join(doc.split()) or f"a tierflow graph ({spec})"


def _loopback(host: str) -> bool:
    """Same answer as ``mcp_servers.serve.is_loopback``, without importing the MCP SDK."""
    import ipaddress

    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@a2a_app.command()
def serve(
    graph: Annotated[str | None, typer.Option("--graph", help="your graph: package.module:function "
                                              "(default: the orchestrator)")] = None,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8766,
    token: Annotated[str | None, typer.Option("--token", envvar="TIERFLOW_A2A_TOKEN",
                                              help="bearer token clients must send (required off loopback)")] = None,
    public_url: Annotated[str | None, typer.Option("--public-url", help="the URL the agent card advertises "
                                                   "(default: http://HOST:PORT/)")] = None,
    allow_origin: Annotated[list[str] | None, typer.Option("--allow-origin", help="an extra browser Origin "
                                                           "allowed on loopback (repeat); default: the server's own")]
    = None,
    pattern: Annotated[str | None, typer.Option("--pattern", help="force a collaboration pattern")] = None,
    confirm_plan: Annotated[bool, typer.Option("--confirm-plan", help="ask the client to approve each plan "
                                               "(the task waits in input-required)")] = False,
    name: Annotated[str, typer.Option("--name", help="the agent's name on its card")] = "tierflow",
    user: Annotated[str, typer.Option("--user", help="user id the runs belong to")] = "a2a",
    config: Annotated[Path | None, typer.Option("--config", help="settings TOML file")] = None,
) -> None:
    """Serve tierflow as an A2A agent: card at /.well-known/agent-card.json, JSON-RPC (1.0 and 0.3) at /."""
    from tierflow.console import fail, offline_env

    offline_env()
    if not _loopback(host) and not token:  # said before the server's imports: they take seconds
        raise fail(f"refusing to serve A2A on {host} without a bearer token: pass --token or set TIERFLOW_A2A_TOKEN")
    # The a2a-sdk wraps its every method in an OpenTelemetry span for the global tracer (tierflow traces through its
    # own provider): about a third of the server's CPU per request. Off unless asked for.
    os.environ.setdefault("OTEL_INSTRUMENTATION_A2A_SDK_ENABLED", "false")
    try:
        from tierflow import __version__
        from tierflow.mcp_servers.a2a_server import (
            GraphRuns,
            SqliteTaskStore,
            a2a_app,
            agent_card,
            check_bind,
            serve_a2a,
        )
        from tierflow.settings import load_settings

        check_bind(host, token)
        settings = load_settings(config)
        lazy = LazyGraph(settings, graph, pattern, confirm_plan)
        url = public_url or f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
        card = agent_card(url, name=name, description=graph_description(graph), version=__version__,
                          intents=[] if graph else intent_labels(settings), token=bool(token))
        runs = GraphRuns(graph=lazy.graph, callbacks=lazy.callbacks, after_run=lazy.flush, user_id=user)
        app = a2a_app(runs, card, SqliteTaskStore(settings.home / "a2a_tasks.sqlite"), host=host, port=port,
                      token=token, allowed_origins=allow_origin or [], warm=lazy.warm)
        print(f"tierflow A2A server: {url} (card at {url}.well-known/agent-card.json); loading models in the "
              "background", file=sys.stderr, flush=True)
        serve_a2a(app, host=host, port=port)
    except ImportError as exc:
        raise fail(f"A2A needs the a2a extra: pip install 'tierflow[a2a]' ({exc})", 1) from None
    except ValueError as exc:  # ServeError and SettingsError are ValueErrors
        raise fail(str(exc)) from None
