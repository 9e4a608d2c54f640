"""The ``tierflow`` command: run requests, check the installation, manage intent models."""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tierflow import __version__
from tierflow.console import err, exit_code, fail, offline_env
from tierflow.runtimes.errors import TierflowError

if TYPE_CHECKING:  # only for annotations: the CLI imports heavy modules when a command needs them
    from langchain_core.callbacks import BaseCallbackHandler

    from tierflow.graphs.events import EventSink, RunEvent
    from tierflow.graphs.runner import RunResult
    from tierflow.settings import Settings

    # Starts a prepared run (or resume) with the tracing callbacks and the stream printer (None: no --stream).
    Start = Callable[[Sequence[BaseCallbackHandler], EventSink | None], RunResult]

app = typer.Typer(name="tierflow", help="Multi-agent orchestration with device-tier routing.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
out = Console()

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="settings TOML file (default: ./tierflow.toml)")]
CheckpointerOpt = Annotated[str | None, typer.Option("--checkpointer", help="sqlite (default), sqlite:///PATH or "
                                                     "postgres://user@host:port/db")]


MAX_REQUEST_BYTES = 4 * 1024 * 1024  # read at most this much of --file / stdin; the request limit is lower


def read_request(request: str | None, file: Path | None) -> str:
    """The request text from the argument, ``--file PATH`` or standard input (``-``), as checked UTF-8."""
    from tierflow.graphs.requests import RequestError

    if request is not None and file is not None:
        raise RequestError("give the request as an argument or with --file, not both")
    if request is None and file is None:
        raise RequestError("no request: pass it as an argument, with --file PATH, or as - to read standard input")
    if file is None and request != "-":
        try:
            request.encode("utf-8")  # type: ignore[union-attr]
        except UnicodeEncodeError:  # bytes that are not UTF-8 arrive as lone surrogates
            raise RequestError("the request is not valid UTF-8 text") from None
        return request  # type: ignore[return-value]
    source = "standard input" if file is None or str(file) == "-" else f"--file {file}"
    try:
        if source == "standard input":
            data = sys.stdin.buffer.read(MAX_REQUEST_BYTES + 1)
        else:
            with open(file, "rb") as handle:  # type: ignore[arg-type]
                data = handle.read(MAX_REQUEST_BYTES + 1)
    except FileNotFoundError:
        raise RequestError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise RequestError(f"{source} is a folder, not a file") from None
    except OSError as exc:
        raise RequestError(f"{source} cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_REQUEST_BYTES:
        raise RequestError(f"{source} is larger than {MAX_REQUEST_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(f"{source} is not UTF-8 text (invalid byte at offset {exc.start})") from None


@app.command()
def run(
    request: Annotated[str | None, typer.Argument(help="what you want done; - reads it from standard input")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="read the request from this file "
                                              "(for long requests)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    graph: Annotated[str | None, typer.Option("--graph", help="your graph: package.module:function")] = None,
    tier: Annotated[str | None, typer.Option("--tier", help="tier for every agent of this run")] = None,
    pattern: Annotated[str | None, typer.Option("--pattern", help="force a collaboration pattern")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="thread id (default: new)")] = None,
    user: Annotated[str, typer.Option("--user", help="user id the run belongs to")] = "local",
    private: Annotated[bool, typer.Option("--private", help="keep every model call on tiers cleared for "
                                          "private data")] = False,
    stream: Annotated[bool, typer.Option("--stream", help="print node events and tokens as they happen")] = False,
    confirm_plan: Annotated[bool, typer.Option("--confirm-plan", help="ask a human before running the plan")] = False,
    trace_file: Annotated[Path | None, typer.Option("--trace-file", help="also write the run's spans here "
                                                    "as JSON lines (see: tierflow traces show)")] = None,
    checkpointer: CheckpointerOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Run REQUEST through the orchestrator and print the answer with a short summary."""
    offline_env()
    from tierflow.graphs.requests import check_request

    try:  # bad input is answered before anything heavy is imported or loaded
        request = check_request(read_request(request, file))
    except TierflowError as exc:
        raise fail(str(exc), exit_code(exc)) from None

    def prepare(settings: Settings) -> Start:
        from tierflow.app import build_deps, build_graph
        from tierflow.graphs.executor import RunSpec
        from tierflow.worker_cli import execute

        registry = settings.registry()
        tiers = settings.run_tiers(private=private)  # only what this run starts on: others load when routed to
        registry.ensure_usable(tiers)
        registry.ensure_fits(request, tiers)
        deps = build_deps(settings, registry=registry, classifier=_LazyClassifier(settings) if graph else None)
        deps.confirm_plan = confirm_plan
        compiled = build_graph(settings, deps, graph, pattern)
        spec = RunSpec(request=request, user_id=user, private=private, graph=graph, pattern=pattern, tier=tier,
                       confirm_plan=confirm_plan, **({"run_id": run_id} if run_id else {}))
        # [executor] kind: in this process, or as a DBOS workflow (durable, recoverable by any worker)
        return lambda callbacks, on_event: execute(settings, spec, compiled, callbacks, on_event, config)

    _execute(prepare, config=config, tier=tier, checkpointer=checkpointer, trace_file=trace_file, as_json=as_json,
             stream=stream)


def _execute(prepare: Callable[[Settings], Start], *, config: Path | None, tier: str | None,
             checkpointer: str | None, trace_file: Path | None, as_json: bool, stream: bool) -> None:
    """The one path of ``run`` and ``resume``: settings, tracing (flushed at the end), the run, errors and output.

    ``prepare`` loads what the command needs and returns how to start it; everything around that is shared.
    """
    from tierflow.settings import load_settings, tier_overrides
    from tierflow.traces_cli import open_run_tracing

    try:
        overrides = tier_overrides(tier)
        if checkpointer:
            overrides["checkpointer"] = checkpointer
        settings = load_settings(config, **overrides)
        run_tracing = open_run_tracing(settings, trace_file)
        with err.status("loading models…", spinner="dots") if not as_json else _null():
            start = prepare(settings)
        with err.status("running…", spinner="dots") if not (as_json or stream) else _null():
            with run_tracing as callbacks:  # Langfuse / trace file when configured; flush is bounded
                result = start(callbacks, _event_printer(as_json) if stream else None)
    except TierflowError as exc:
        raise fail(str(exc), exit_code(exc)) from None
    except ValueError as exc:  # e.g. an unknown --pattern
        raise fail(str(exc)) from None
    if result.already_finished and not as_json:
        err.print(f"run {result.run_id} had finished already ({result.status}); nothing was run again. Its result:",
                  highlight=False, markup=False)
    _print_result(result, as_json)


def _print_result(result: RunResult, as_json: bool) -> None:
    """Print the answer (or one JSON object); a failed run exits 1 after saying why."""
    if as_json:
        payload = result.model_dump(include={"answer", "intent", "plan", "pattern", "model_calls", "run_id",
                                             "elapsed_s", "results", "notes", "status", "errors", "interrupt",
                                             "already_finished"})
        for call in payload["model_calls"]:
            call["latency_ms"] = round(call["latency_ms"], 1)
        out.print_json(json.dumps(payload)) if sys.stdout.isatty() else print(json.dumps(payload))
    elif result.status == "waiting":
        out.print(Text.assemble(("question: ", "bold"), str((result.interrupt or {}).get("question"))), highlight=False)
        out.print(f"continue with: tierflow resume {result.run_id} --answer '...'", highlight=False, markup=False)
    else:
        _print_summary(result)
    if result.status == "failed":
        raise typer.Exit(1)


class _LazyClassifier:
    """Loads the intent model on first use: a resumed run was classified already, a custom graph may never ask."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.model = None

    def classify(self, text: str):
        if self.model is None:
            from tierflow.app import load_classifier

            self.model = load_classifier(self.settings)
        return self.model.classify(text)


def _event_printer(as_json: bool) -> EventSink:
    """Print stream events: one JSON line each on stderr with --json, readable lines on stdout otherwise."""
    from tierflow.graphs.events import NodeEvent, TokenEvent

    mid_line = [False]  # tokens were printed since the last newline

    def show(event: RunEvent) -> None:
        if as_json:
            print(event.to_json(), file=sys.stderr, flush=True)
            return
        if isinstance(event, TokenEvent):
            print(event.text, end="", flush=True)
            mid_line[0] = True
            return
        if mid_line[0]:
            print()
            mid_line[0] = False
        if isinstance(event, NodeEvent):
            where = f"{event.graph}/" if event.graph else ""
            print(f"▸ {where}{event.node}", flush=True)
        else:
            print(f"? {event.question}", flush=True)
    return show


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="the run to continue (its run id)")],
    answer: Annotated[str | None, typer.Option("--answer", help="answer to the question the run asked")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    graph: Annotated[str | None, typer.Option("--graph", help="the run's graph: package.module:function")] = None,
    tier: Annotated[str | None, typer.Option("--tier", help="tier for every agent from here on")] = None,
    pattern: Annotated[str | None, typer.Option("--pattern", help="the pattern the run was forced to")] = None,
    stream: Annotated[bool, typer.Option("--stream", help="print node events and tokens as they happen")] = False,
    trace_file: Annotated[Path | None, typer.Option("--trace-file", help="also write the resumed run's spans "
                                                    "here as JSON lines (see: tierflow traces show)")] = None,
    checkpointer: CheckpointerOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Continue RUN_ID from its last checkpoint: answer its question, or finish a run that was killed."""
    offline_env()

    def prepare(settings: Settings) -> Start:
        from tierflow.app import build_deps, build_graph
        from tierflow.graphs.executor import RunSpec
        from tierflow.worker_cli import execute

        deps = build_deps(settings, classifier=_LazyClassifier(settings))
        compiled = build_graph(settings, deps, graph, pattern)
        # a run paused for plan approval asks again on resume, which hands it the answer
        if "confirm_plan" in compiled.get_state({"configurable": {"thread_id": run_id}}).next:
            deps.confirm_plan = True
            compiled = build_graph(settings, deps, graph, pattern)
        spec = RunSpec(run_id=run_id, answer=answer, graph=graph, pattern=pattern, tier=tier,
                       confirm_plan=deps.confirm_plan)
        return lambda callbacks, on_event: execute(settings, spec, compiled, callbacks, on_event, config)

    _execute(prepare, config=config, tier=tier, checkpointer=checkpointer, trace_file=trace_file, as_json=as_json,
             stream=stream)


def _print_summary(result) -> None:
    if result.status == "failed":
        out.print("The run failed; no answer.", highlight=False, markup=False)
    else:
        out.print(result.answer, highlight=False, markup=False)
    out.print()
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="dim")
    table.add_column()
    intent = result.intent or {}
    if intent:
        table.add_row("intent", Text(f"{intent.get('label')} ({intent.get('confidence', 0):.2f})"
                      + (" out of scope" if intent.get("out_of_scope") else "")))
    if result.plan:
        steps = ", ".join(f"{s['id']}:{s['role']}" for s in result.plan["subtasks"])
        table.add_row("plan", Text(f"{result.plan['source']} — {steps}"))  # model-made ids: never markup
    table.add_row("pattern", Text(str(result.pattern)))
    tiers = ", ".join(f"{c.tier}({c.input_tokens}+{c.output_tokens} tok, {c.latency_ms:.0f} ms)" if not c.error
                      else f"{c.tier}({c.rule or 'direct'}: failed)" for c in result.model_calls) or "none"
    table.add_row("model calls", Text(tiers))
    table.add_row("status", result.status)
    table.add_row("run id", Text(result.run_id))
    table.add_row("wall time", f"{result.elapsed_s:.2f} s")
    out.print(table)
    if result.errors:  # why it failed or is partial; failed model calls name their tier and rule
        err.print("reasons:", highlight=False, markup=False)
        for reason in result.errors:
            err.print(f"  - {reason}", highlight=False, markup=False)


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    config: ConfigOpt = None,
) -> None:
    """Report which tiers, models, servers (memory, MCP) and data folders are usable, and why not."""
    offline_env()
    from tierflow.settings import SettingsError, load_settings

    try:
        settings = load_settings(config)
    except SettingsError as exc:
        raise fail(str(exc)) from None
    registry = settings.registry()
    checks: list[dict[str, object]] = [h.model_dump() | {"component": "tier"} for h in
                                       (registry.check(name) for name in registry.names)]
    checks.append(_check_intents(settings))
    checks.append(_check_home(settings.home))
    checks.append(_check_memory(settings))
    checks += [_check_mcp(name, server) for name, server in settings.mcp_servers.items()]
    ok = all(c["usable"] for c in checks)  # `run` refuses to start while any of these is broken
    if as_json:
        print(json.dumps({"version": __version__, "ok": ok, "checks": checks}, default=str))
    else:
        table = Table(title=f"tierflow {__version__}")
        for column in ("component", "name", "usable", "detail"):
            table.add_column(column)
        for c in checks:
            table.add_row(str(c["component"]), str(c.get("tier") or c.get("name")),
                          "[green]yes[/]" if c["usable"] else "[red]no[/]", str(c["detail"]))
        out.print(table)
    if not ok:
        raise typer.Exit(1)


def _check_intents(settings) -> dict[str, object]:
    from tierflow.app import load_classifier

    try:
        classifier = load_classifier(settings)
        label = classifier.classify("what is 2 plus 2").label
    except Exception as exc:  # doctor reports every failure instead of stopping at it
        return {"component": "intents", "name": str(settings.intent_model or "demo"), "usable": False,
                "detail": f"{type(exc).__name__}: {exc}"}
    return {"component": "intents", "name": str(settings.intent_model or "demo"), "usable": True,
            "detail": f"loaded; 'what is 2 plus 2' -> {label}"}


def _check_memory(settings) -> dict[str, object]:
    from tierflow.memory.config import open_memory

    name = "off" if not settings.memory.enabled else settings.memory.backend
    try:
        store = open_memory(settings.memory, settings.memory_path)
    except Exception as exc:  # doctor reports every failure instead of stopping at it
        return {"component": "memory", "name": name, "usable": False, "detail": f"{type(exc).__name__}: {exc}"}
    if store is None:
        return {"component": "memory", "name": name, "usable": True, "detail": "disabled in settings"}
    close = getattr(store, "close", None)
    if callable(close):
        close()
    return {"component": "memory", "name": name, "usable": True, "detail": "opened"}


def _check_mcp(name: str, server) -> dict[str, object]:
    from tierflow.tools.mcp.client import McpClient

    try:
        with McpClient({name: server}) as client:
            tools = [t.name for t in client.tools()]
    except Exception as exc:  # doctor reports every failure instead of stopping at it
        return {"component": "mcp", "name": name, "usable": False, "detail": f"{type(exc).__name__}: {exc}"}
    return {"component": "mcp", "name": name, "usable": True, "detail": f"{len(tools)} tools: {', '.join(tools)}"}


def _check_home(home: Path) -> dict[str, object]:
    try:
        home.mkdir(parents=True, exist_ok=True)
        probe = home / ".doctor"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return {"component": "data", "name": str(home), "usable": False, "detail": f"not writable: {exc}"}
    return {"component": "data", "name": str(home), "usable": True, "detail": "writable (checkpoints here)"}


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


config_app = typer.Typer(help="the effective settings", no_args_is_help=True)


@config_app.command("show")
def config_show(config: ConfigOpt = None) -> None:
    """Print the effective settings (defaults, file, TIERFLOW_* variables) as TOML, with secrets masked."""
    from tierflow.settings import load_settings

    print(load_settings(config).to_toml(mask_secrets=True), end="")  # plain print: TOML is never markup


def _register_subcommands() -> None:
    from tierflow.a2a_cli import a2a_app
    from tierflow.eval_cli import eval_command
    from tierflow.intents_cli import intents_app
    from tierflow.mcp_cli import mcp_app
    from tierflow.memory_cli import memory_app
    from tierflow.route_cli import route_app
    from tierflow.traces_cli import traces_app
    from tierflow.worker_cli import register as register_scale_out

    app.add_typer(intents_app, name="intents", help="train, evaluate and try intent models")
    app.add_typer(mcp_app, name="mcp")
    app.add_typer(a2a_app, name="a2a")
    app.add_typer(memory_app, name="memory")
    app.add_typer(route_app, name="route", help="train and evaluate the learned tier router")
    app.add_typer(traces_app, name="traces")
    app.add_typer(config_app, name="config")
    app.command("eval")(eval_command)
    # worker, submit, status, runs, cancel, workers
    register_scale_out(app, read_request=read_request, print_result=_print_result)


_register_subcommands()


def main() -> None:
    """The ``tierflow`` entry point: any tierflow error, from any command, ends as one line on stderr.

    Commands catch what they expect; this is the one place that catches the project's error root for the
    rest, plus the two foreign errors bad files raise deep inside libraries (a corrupt SQLite database,
    undecodable text), so no bad input ends in a traceback.
    """
    try:
        app()  # command-line syntax errors (unknown option, bad --limit) get typer's usage message, exit 2
    except TierflowError as exc:
        raise SystemExit(fail(str(exc), exit_code(exc)).exit_code) from None
    except sqlite3.DatabaseError as exc:
        raise SystemExit(fail(f"a database file is unreadable (corrupt, or not a tierflow database): {exc}")
                         .exit_code) from None
    except UnicodeError as exc:
        raise SystemExit(fail(f"text is not valid UTF-8: {exc.reason}").exit_code) from None


if __name__ == "__main__":
    main()
