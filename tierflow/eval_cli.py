"""``tierflow eval SUITE``: run a suite, write reports, and gate on a baseline."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer


def eval_command(
    suite: Annotated[str, typer.Argument(help="suite YAML file, or a shipped suite name (intents-small, ...); "
                                         "`routing` (or a YAML with kind: routing) runs the routing benchmark")],
    out: Annotated[Path | None, typer.Option("--out", help="folder for results.jsonl and reports "
                                             "(default: ./evals-out/SUITE); rerunning resumes")] = None,
    baseline: Annotated[Path | None, typer.Option("--baseline", help="report.json of an earlier run")] = None,
    fail_on_regression: Annotated[bool, typer.Option("--fail-on-regression",
                                                     help="exit 1 when a metric falls below the baseline")] = False,
    tolerance: Annotated[float, typer.Option("--tolerance", help="allowed absolute drop per metric")] = 0.0,
    fresh: Annotated[bool, typer.Option("--fresh", help="discard earlier results instead of resuming")] = False,
    html: Annotated[bool, typer.Option("--html/--no-html", help="also write report.html with plots")] = True,
    intent_model: Annotated[Path | None, typer.Option("--intent-model", help="trained intent model folder for "
                                                      "intent tasks (default: the suite's, else the demo)")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="progress bar on stderr")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as one JSON object")] = False,
    config: Annotated[Path | None, typer.Option("--config", help="settings TOML for run, function_call and plan "
                                                "tasks: tiers, MCP servers, tracing (default: the suite's "
                                                "task.config)")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="run this many items instead of the "
                                              "suite's dataset.limit")] = None,
    all_items: Annotated[bool, typer.Option("--all", help="run every item of the dataset "
                                            "(ignore the suite's dataset.limit)")] = False,
    tiers: Annotated[list[str] | None, typer.Option("--tier", help="run on this tier instead of the suite's "
                                                    "matrix.tiers (repeat for several)")] = None,
    executor: Annotated[str, typer.Option("--executor", help="inprocess, or dbos: every (item, cell, repeat) "
                                          "becomes a workflow for `tierflow worker` processes on the database of "
                                          "the executor settings (no Langfuse experiment then)")] = "inprocess",
) -> None:
    """Run SUITE over its tier × pattern matrix, write report.json/.md/.html, and compare with --baseline.

    When Langfuse is configured (settings [tracing] or LANGFUSE_* variables), the run is also a Langfuse
    experiment: one trace per item with its metrics as scores; tracing problems never fail the eval.

    `tierflow eval routing` runs the routing benchmark instead: each of its suites on every tier alone (--limit
    items of each, --tier to choose the tiers), then routing.json/.md/.html with each strategy's quality-cost curve.
    """
    from tierflow.console import err, exit_code, fail, offline_env
    from tierflow.runtimes.errors import TierflowError

    offline_env()
    from tierflow.evals.errors import EvalError
    from tierflow.evals.gate import compare, load_baseline
    from tierflow.evals.report import summarize, to_markdown, write_reports
    from tierflow.evals.routing_bench import is_routing_file
    from tierflow.evals.runner import run_suite
    from tierflow.evals.suite import load_suite

    routing_file = is_routing_file(suite)
    if routing_file is not None:  # a routing benchmark: its suites on every tier, then the strategies' curves
        _run_routing(routing_file, out=out, limit=limit, tiers=tiers, config=config, fresh=fresh,
                     progress=progress and not as_json, as_json=as_json)
        return
    experiment = None
    try:
        spec = load_suite(suite)
        if tolerance < 0:
            raise EvalError(f"--tolerance must be >= 0, got {tolerance}")
        if limit is not None and all_items:
            raise EvalError("--limit and --all contradict each other; pass one")
        if limit is not None or all_items:
            spec.dataset.limit = limit
        if tiers:
            spec.matrix.tiers = list(dict.fromkeys(tiers))
        base = load_baseline(baseline, spec.name) if baseline else None
        folder = out or Path("evals-out") / spec.name
        results = folder / "results.jsonl"
        if fresh and results.exists():
            results.unlink()
        items = spec.dataset.load(seed=spec.seed)
        if items.skipped and not as_json:
            err.print(f"dataset: {len(items.skipped)} invalid row(s) skipped (listed in the report); first: "
                      f"{items.skipped[0]}", highlight=False, markup=False)
        if executor not in ("inprocess", "dbos"):
            raise EvalError(f"--executor must be inprocess or dbos, got {executor!r}")
        if executor == "dbos":
            records = _run_distributed(spec, items, results, config, folder, intent_model, progress and not as_json)
        else:
            task = _task(spec, intent_model, config, folder)
            experiment = _experiment(spec, items, config or spec.task.config, folder)
            records = run_suite(spec, task, items, results, progress=progress and not as_json, observer=experiment)
        report = summarize(spec, records, items)
        if experiment is not None:
            experiment.close()
            report["langfuse"] = experiment.summary()
        paths = write_reports(report, records, folder, html_report=html)
        regressions = compare(report, base, tolerance, spec.gate or None) if base else []
    except TierflowError as exc:  # EvalError among them
        raise fail(str(exc), exit_code(exc)) from None
    finally:
        if experiment is not None:
            experiment.close()  # a second close is a no-op; flushing is bounded either way
    if experiment is not None and not as_json:
        lf = report["langfuse"]
        err.print(f"langfuse: experiment {lf['run_name']}: {lf['traces']} traces, {lf['scores']} scores"
                  + (f"; {len(lf['failures'])} problem(s), first: {lf['failures'][0]}" if lf["failures"] else ""),
                  highlight=False, markup=False)
    if as_json:
        print(json.dumps(report | {"regressions": [str(r) for r in regressions]}))
    else:
        print(to_markdown(report))
        err.print(f"reports: {', '.join(str(p) for p in paths.values())}", highlight=False, markup=False)
    if base is not None:
        for regression in regressions:
            err.print(f"regression: {regression}", highlight=False, markup=False)
        if not regressions:
            err.print(f"no regression against {baseline} (tolerance {tolerance:g})", highlight=False, markup=False)
    if regressions and fail_on_regression:
        raise typer.Exit(1)


def _run_routing(path: Path, *, out: Path | None, limit: int | None, tiers: list[str] | None,
                 config: Path | None, fresh: bool, progress: bool, as_json: bool) -> None:
    """``tierflow eval routing``: run each suite of the benchmark on each tier alone (no escalation), keep one
    routing item per item, and replay the routing strategies over them (tierflow.evals.routing)."""
    from tierflow.console import err, exit_code, fail
    from tierflow.evals.report import summarize, write_reports
    from tierflow.evals.routing import (
        analyze,
        held_out_recommendation,
        routing_markdown,
        write_items,
        write_routing_report,
    )
    from tierflow.evals.routing_bench import load_routing, routing_items
    from tierflow.evals.runner import run_suite
    from tierflow.evals.suite import load_suite
    from tierflow.runtimes.errors import TierflowError

    try:
        bench = load_routing(path)
        if tiers:
            bench.tiers = list(dict.fromkeys(tiers))
        config = config or bench.config
        folder = out or Path("evals-out") / bench.name
        settings = _settings(config, folder, no_escalation=True)
        registry = settings.registry()
        registry.validate(bench.tiers, who="routing benchmark tiers")
        cleared = [t for t in bench.tiers if registry.config(t).cleared_for(True)]
        items = []
        for name, count in bench.suites.items():
            spec = load_suite(name)
            spec.dataset.limit = limit or count or spec.dataset.limit
            spec.matrix.tiers = list(bench.tiers)
            if spec.task.kind == "run":
                spec.matrix.patterns = [bench.pattern]
            sub = folder / spec.name
            results = sub / "results.jsonl"
            if fresh and results.exists():
                results.unlink()
            dataset = spec.dataset.load(seed=spec.seed)
            if not as_json:
                err.print(f"routing: {spec.name}: {len(dataset)} items x {len(bench.tiers)} tiers",
                          highlight=False, markup=False)
            task = _task(spec, None, config, sub, no_escalation=True)
            records = run_suite(spec, task, dataset, results, progress=progress)
            write_reports(summarize(spec, records, dataset), records, sub, html_report=False)
            items += routing_items(spec.name, dataset, records, bench.tiers, cleared_for_private=cleared,
                                   private_patterns=settings.routing.private_patterns,
                                   budget=settings.routing.budget.model_dump(), prices=settings.tier_costs())
        write_items(items, folder / "items.jsonl")
        report = analyze(items, bench.tiers, cleared_for_private=cleared, fit=_learned_fit(items, settings,
                                                                                             bench.tiers),
                         folds=bench.folds, seed=bench.seed)
        report["recommendation_held_out"] = held_out_recommendation(items, bench.tiers, cleared_for_private=cleared,
                                                                    folds=bench.folds, seed=bench.seed)
        report["benchmark"] = {"name": bench.name, "suites": {Path(s).stem: n for s, n in bench.suites.items()},
                               "tiers": bench.tiers, "pattern": bench.pattern}
        paths = write_routing_report(report, folder)
    except TierflowError as exc:
        raise fail(str(exc), exit_code(exc)) from None
    if as_json:
        print(json.dumps(report))
    else:
        print(routing_markdown(report))
        err.print(f"reports: {', '.join(str(p) for p in paths.values())}; items: {folder / 'items.jsonl'}",
                  highlight=False, markup=False)


def _learned_fit(items, settings, tiers: list[str]):
    """The learned router's ``fit`` for the benchmark, on the run's intent model (its embeddings are the
    features); None when that model has no embeddings (then the benchmark leaves the learned router out)."""
    from tierflow.app import load_classifier
    from tierflow.console import err
    from tierflow.route_training import learned_fit
    from tierflow.runtimes.learned_router import LearnedRouterError

    try:
        return learned_fit(items, load_classifier(settings), tiers)
    except LearnedRouterError as exc:
        err.print(f"warning: no learned router in this benchmark: {exc}", highlight=False, markup=False)
        return None


def _run_distributed(spec, items, results: Path, config: Path | None, folder: Path, intent_model: Path | None,
                     progress: bool) -> list[dict]:
    """The suite's units as DBOS workflows on the settings' [executor] database, executed by workers."""
    from tierflow.evals.distributed import run_suite_distributed
    from tierflow.graphs.dbos_executor import DbosClient

    settings = _settings(config or spec.task.config, folder)
    client = DbosClient(settings.executor, settings.home)
    context = {"config": str(Path(config).resolve()) if config else None, "folder": str(folder.resolve()),
               "intent_model": str(Path(intent_model).resolve()) if intent_model else None}
    try:
        return run_suite_distributed(spec, items, results, client, context, progress=progress,
                                     poll_s=settings.executor.poll_s)
    finally:
        client.close()


def register_eval_jobs(config: Path | None = None) -> None:
    """Let this worker execute eval units (``tierflow eval --executor dbos``); ``config`` is unused: each unit
    carries the settings file its coordinator named."""
    import threading

    from tierflow.evals.distributed import UNIT_JOB, run_unit
    from tierflow.graphs.dbos_executor import register_job

    cache: dict = {}
    lock = threading.Lock()

    def task_for(suite, context):
        config_path = Path(context["config"]) if context.get("config") else None
        model = Path(context["intent_model"]) if context.get("intent_model") else None
        return _task(suite, model, config_path, Path(context["folder"]))

    def handler(payload: dict) -> dict:
        return run_unit(payload, task_for, cache, lock)

    register_job(UNIT_JOB, handler)


def _task(spec, intent_model: Path | None, config: Path | None, folder: Path, no_escalation: bool = False):
    from tierflow.evals.errors import EvalError
    from tierflow.evals.registry import REGISTRY
    from tierflow.evals.tasks import IntentTask, RunTask

    config = config or spec.task.config
    if spec.task.kind == "intent":
        return IntentTask.from_model(intent_model or spec.task.model)
    settings = _settings(config, folder, no_escalation=no_escalation)
    if spec.task.kind == "run":
        return RunTask(_graph_factory(config, folder, no_escalation), settings.tier_costs())
    build = REGISTRY.task(spec.task.kind).build  # a benchmark's tier-driven task (function_call, plan, ...)
    if build is None:
        raise EvalError(f"task kind {spec.task.kind!r} registers no builder for a tier-driven task")
    models = _tier_models(settings, [cell.tier for cell in spec.matrix.cells()])
    return build(spec.task, models, settings.tier_costs())


def _tier_models(settings, tiers: list[str | None]):
    """The chat model of each cell's tier (None: the default tier), checked before any item runs."""
    registry = settings.registry()
    registry.ensure_usable(tiers)  # unknown or unusable tiers fail here, naming them

    def model(cell):
        return registry.chat_model(cell.tier)

    return model


def _experiment(spec, items, config: Path | None, folder: Path):
    """A Langfuse experiment for this run when tracing is configured, else None; config problems only warn."""
    from tierflow import __version__
    from tierflow.console import err

    try:
        from tierflow.evals.experiment import LangfuseExperiment
        from tierflow.tracing import open_tracing

        settings = _settings(config, folder)
        tracing = open_tracing(settings.tracing, release=__version__)
        if tracing is None:
            return None
        return LangfuseExperiment(tracing, spec, items, costs=settings.tier_costs())
    except Exception as exc:  # tracing must never make an eval fail
        err.print(f"warning: tracing is off for this eval: {exc}", highlight=False, markup=False)
        return None


def _settings(config: Path | None, folder: Path, tier: str | None = None, no_escalation: bool = False):
    from tierflow.settings import load_settings, tier_overrides

    # eval runs keep checkpoints and memory to themselves
    overrides: dict[str, object] = {"home": folder / "home", **tier_overrides(tier)}
    settings = load_settings(config, **overrides)
    if no_escalation:  # the routing benchmark measures each tier alone
        settings.routing.max_escalations = 0
    for name, server in settings.mcp_servers.items():  # suites start demo MCP servers with this interpreter
        if getattr(server, "command", None) == "{python}":
            settings.mcp_servers[name] = server.model_copy(update={"command": sys.executable})
    return settings


def _graph_factory(config: Path | None, folder: Path, no_escalation: bool = False):
    def build(cell):
        from tierflow.app import build_deps, build_graph

        settings = _settings(config, folder, cell.tier, no_escalation)
        registry = settings.registry()
        registry.ensure_usable(settings.run_tiers())  # the tiers this cell's runs start on, not every tier
        return build_graph(settings, build_deps(settings, registry=registry), None, cell.pattern)

    return build
