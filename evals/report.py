"""Reports from run records: a JSON summary per matrix cell, a Markdown table and an offline HTML page with plots."""

from __future__ import annotations

import base64
import html
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from tierflow.evals.scorers import pass_hat_k
from tierflow.evals.suite import Suite

USAGE_PREFIXES = ("latency_ms", "model_calls", "input_tokens", "output_tokens", "cost", "tier_share.")


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summarize(suite: Suite, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per cell: mean of every metric over the items that carry it, pass rate, pass^k, errors, latency p50/p95."""
    by_cell: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_cell[record["cell"]].append(record)
    cells: dict[str, Any] = {}
    for cell in suite.matrix.cells():
        rows = by_cell.get(cell.key, [])
        sums: dict[str, list[float]] = defaultdict(list)
        passes: dict[str, list[bool]] = defaultdict(list)
        for row in rows:
            for name, value in row["metrics"].items():
                sums[name].append(float(value))
            passes[row["item"]].append(bool(row["passed"]))
        latencies = [float(r["output"]["latency_ms"]) for r in rows if r.get("output") and "latency_ms" in r["output"]]
        cells[cell.key] = {
            "tier": cell.tier, "pattern": cell.pattern, "n": len(rows),
            "errors": sum(1 for r in rows if r.get("error")),
            "pass_rate": sum(bool(r["passed"]) for r in rows) / len(rows) if rows else 0.0,
            f"pass^{suite.repeats}": pass_hat_k(passes),
            "metrics": {name: sum(v) / len(v) for name, v in sorted(sums.items())},
            "latency_p50_ms": _percentile(latencies, 0.5), "latency_p95_ms": _percentile(latencies, 0.95),
            "error_samples": [f"{r['item']}: {r['error']}" for r in rows if r.get("error")][:5],
        }
    report_only = sorted({m for scorer in suite.resolved_scorers() if not scorer.quality for m in scorer.metrics})
    return {"suite": suite.name, "task": suite.task.kind, "items": len({r["item"] for r in records}),
            "repeats": suite.repeats, "cells": cells, "report_only": report_only}


def quality_metrics(report: dict[str, Any]) -> list[str]:
    """Higher-is-better metrics of a report: pass rate, pass^k and every metric but usage and report-only ones."""
    names: set[str] = set()
    skip = set(report.get("report_only", ()))
    for cell in report["cells"].values():
        names.update(n for n in cell["metrics"] if not n.startswith(USAGE_PREFIXES) and n not in skip)
    return ["pass_rate", f"pass^{report['repeats']}", *sorted(names)]


def cell_value(cell: dict[str, Any], metric: str) -> float | None:
    """A metric of one cell, whether top-level (pass_rate, pass^k) or a scorer's mean."""
    if metric in cell and isinstance(cell[metric], int | float):
        return float(cell[metric])
    value = cell["metrics"].get(metric)
    return None if value is None else float(value)


def to_markdown(report: dict[str, Any]) -> str:
    """A summary table per cell: quality metrics, latency and tokens."""
    metrics = quality_metrics(report)
    usage = ["input_tokens", "output_tokens", "cost"]
    head = ["cell", "n", "errors", *metrics, "p50 ms", "p95 ms", *usage, "tier mix"]
    lines = [f"# Eval: {report['suite']}", "",
             f"{report['items']} items × {report['repeats']} repeat(s), task `{report['task']}`.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, cell in report["cells"].items():
        values = [cell_value(cell, m) for m in metrics] + [cell["latency_p50_ms"], cell["latency_p95_ms"]]
        values += [cell["metrics"].get(u) for u in usage]
        shown = ["–" if v is None else f"{v:.3f}" if v < 10 else f"{v:.0f}" for v in values]
        mix = ", ".join(f"{name.removeprefix('tier_share.')} {share:.0%}" for name, share in cell["metrics"].items()
                        if name.startswith("tier_share.")) or "–"
        lines.append("| " + " | ".join([key, str(cell["n"]), str(cell["errors"]), *shown, mix]) + " |")
    errors = [s for cell in report["cells"].values() for s in cell["error_samples"]]
    if errors:
        lines += ["", "## Errors (first ones)", ""] + [f"- `{html.escape(e[:200])}`" for e in errors[:10]]
    return "\n".join(lines) + "\n"


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def plots(report: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, str]:
    """Base64 PNGs: score per cell, latency distribution per cell, cost vs. quality."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    keys = list(report["cells"])
    images: dict[str, str] = {}
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(keys)), 3.2))
    ax.bar(range(len(keys)), [report["cells"][k]["pass_rate"] for k in keys], color="#4c72b0")
    ax.set_xticks(range(len(keys)), keys, rotation=20, ha="right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("pass rate")
    ax.set_title("score per tier / pattern")
    images["score per tier/pattern"] = _png(fig)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(keys)), 3.2))
    series = [[float(r["output"]["latency_ms"]) for r in records if r["cell"] == k and r.get("output")] or [0.0]
              for k in keys]
    ax.boxplot(series)
    ax.set_xticks(range(1, len(keys) + 1), keys, rotation=20, ha="right", fontsize=7)
    ax.set_ylabel("latency (ms)")
    ax.set_title("latency distribution")
    images["latency distribution"] = _png(fig)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for k in keys:
        cell = report["cells"][k]
        ax.scatter([cell["metrics"].get("cost", 0.0)], [cell["pass_rate"]], label=k)
    ax.set_xlabel("mean cost per item")
    ax.set_ylabel("pass rate")
    ax.set_title("cost vs. quality")
    ax.legend(fontsize=6)
    images["cost vs. quality"] = _png(fig)
    plt.close(fig)
    return images


def to_html(report: dict[str, Any], records: list[dict[str, Any]]) -> str:
    """A single self-contained page (images inline as base64), readable offline."""
    figures = "".join(f'<figure><img alt="{html.escape(t)}" src="data:image/png;base64,{b}"><figcaption>'
                      f"{html.escape(t)}</figcaption></figure>" for t, b in plots(report, records).items())
    table = html.escape(to_markdown(report))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Eval {html.escape(report['suite'])}</title>"
            "<style>body{font-family:sans-serif;margin:2em}figure{display:inline-block;margin:1em}</style></head>"
            f"<body><h1>Eval {html.escape(report['suite'])}</h1><pre>{table}</pre>{figures}</body></html>")


def write_reports(report: dict[str, Any], records: list[dict[str, Any]], out_dir: Path,
                  html_report: bool = True) -> dict[str, Path]:
    """Write report.json, report.md and (optionally) report.html into ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md"}
    paths["json"].write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    paths["markdown"].write_text(to_markdown(report), encoding="utf-8")
    if html_report:
        paths["html"] = out_dir / "report.html"
        paths["html"].write_text(to_html(report, records), encoding="utf-8")
    return paths
