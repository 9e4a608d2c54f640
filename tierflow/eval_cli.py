"""``tierflow eval SUITE``: run a suite, write reports, and gate on a baseline."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer


def eval_command(
    suite: Annotated[str, typer.Argument(help="suite YAML file, or a shipped suite name (intents-small, ...)")],
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
    config: Annotated[Path | None, typer.Option("--config", help="settings TOML for run tasks "
                                                "(default: the suite's task.config)")] = None,
) -> None:
    """Run SUITE over its tier × pattern matrix, write report.json/.md/.html, and compare with --baseline."""
    from tierflow.cli import _known_errors, _offline_env, err, fail

    _offline_env()
    from evals.errors import EvalError
    from evals.gate import compare, load_baseline
    from evals.report import summarize, to_markdown, write_reports
    from evals.runner import run_suite
    from evals.suite import load_suite

    try:
        spec = load_suite(suite)
        if tolerance < 0:
            raise EvalError(f"--tolerance must be >= 0, got {tolerance}")
        base = load_baseline(baseline, spec.name) if baseline else None
        folder = out or Path("evals-out") / spec.name
        results = folder / "results.jsonl"
        if fresh and results.exists():
            results.unlink()
        items = spec.dataset.load()
        task = _task(spec, intent_model, config, folder)
        records = run_suite(spec, task, items, results, progress=progress and not as_json)
        report = summarize(spec, records)
        paths = write_reports(report, records, folder, html_report=html)
        regressions = compare(report, base, tolerance, spec.gate or None) if base else []
    except (EvalError, *_known_errors()) as exc:
        raise fail(str(exc)) from None
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


def _task(spec, intent_model: Path | None, config: Path | None, folder: Path):
    from evals.tasks import IntentTask, RunTask

    if spec.task.kind == "intent":
        return IntentTask.from_model(intent_model or spec.task.model)
    return RunTask(_graph_factory(config or spec.task.config, folder), _tier_costs(config or spec.task.config))


def _settings(config: Path | None, folder: Path, tier: str | None = None):
    from tierflow.settings import load_settings, tier_overrides

    # eval runs keep checkpoints and memory to themselves
    overrides: dict[str, object] = {"home": folder / "home", **tier_overrides(tier)}
    settings = load_settings(config, **overrides)
    for name, server in settings.mcp_servers.items():  # suites start demo MCP servers with this interpreter
        if getattr(server, "command", None) == "{python}":
            settings.mcp_servers[name] = server.model_copy(update={"command": sys.executable})
    return settings


def _tier_costs(config: Path | None) -> dict[str, tuple[float, float]]:
    settings = _settings(config, Path("evals-out"))
    return {name: (t.cost_per_1k_input, t.cost_per_1k_output) for name, t in settings.tiers.items()}


def _graph_factory(config: Path | None, folder: Path):
    def build(cell):
        from runtimes.registry import TierRegistry
        from tierflow.app import build_deps, build_graph, check_tiers

        settings = _settings(config, folder, cell.tier)
        registry = TierRegistry(settings.tiers, settings.default_tier)
        check_tiers(registry)
        return build_graph(settings, build_deps(settings, registry=registry), None, cell.pattern)

    return build
