"""Reports from run records: a JSON summary per matrix cell (and per item group), plain-text Markdown, and an
offline HTML page with real tables and inline plots.

Denominators, stated in every report: pass rate and pass^k count every unit run in a cell (an item that errored or
timed out counts as failed); a metric's mean is over the units that produced it, so errored items are left out.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tierflow.evals.datasets import EvalItem
from tierflow.evals.scorers import pass_hat_k
from tierflow.evals.suite import Suite

USAGE_PREFIXES = ("latency_ms", "model_calls", "input_tokens", "output_tokens", "cost", "tier_share.")
HOW_TO_READ = ("pass rate = passed / n: every item run in the cell counts, and an item that errored or timed out "
               "counts as failed. Metric columns are means over the items that produced the metric, their number in "
               "parentheses: errored items produce no metrics and are left out of the means, and some metrics apply "
               "to some items only.")


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _stats(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """n, errors, passed, pass rate, metric means with their counts, latency p50/p95 of some records."""
    values: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        for name, value in row["metrics"].items():
            values[name].append(float(value))
    latencies = [float(r["output"]["latency_ms"]) for r in rows if r.get("output") and "latency_ms" in r["output"]]
    passed = sum(bool(r["passed"]) for r in rows)
    return {"n": len(rows), "errors": sum(1 for r in rows if r.get("error")), "passed": passed,
            "pass_rate": passed / len(rows) if rows else 0.0,
            "metrics": {name: sum(v) / len(v) for name, v in sorted(values.items())},
            "metric_n": {name: len(v) for name, v in sorted(values.items())},
            "latency_p50_ms": _percentile(latencies, 0.5), "latency_p95_ms": _percentile(latencies, 0.95)}


def _dataset_summary(suite: Suite, items: Sequence[EvalItem] | None) -> dict[str, Any]:
    spec = suite.dataset
    source = {"bfcl": lambda: ", ".join([spec.category] if isinstance(spec.category, str) else spec.category),
              "nestful": lambda: spec.collection}.get(spec.kind, lambda: spec.path.name if spec.path else "")()
    summary: dict[str, Any] = {"kind": spec.kind, "source": source}
    if items is not None:
        skipped = list(getattr(items, "skipped", []))
        summary |= {"loaded": len(items), "skipped": len(skipped), "skipped_rows": [str(e) for e in skipped[:10]]}
    return summary


def summarize(suite: Suite, records: list[dict[str, Any]], items: Sequence[EvalItem] | None = None) -> dict[str, Any]:
    """Per cell: pass rate, pass^k, errors, every metric's mean and count, latency p50/p95, and the same per item
    group (e.g. BFCL category). ``items`` (as loaded) adds how many rows the dataset skipped as invalid."""
    by_cell: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_cell[record["cell"]].append(record)
    group_of = {item.id: item.group for item in items or () if item.group is not None}
    cells: dict[str, Any] = {}
    for cell in suite.matrix.cells():
        rows = by_cell.get(cell.key, [])
        passes: dict[str, list[bool]] = defaultdict(list)
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            passes[row["item"]].append(bool(row["passed"]))
            group = row.get("group") or group_of.get(row["item"])
            if group is not None:
                groups[group].append(row)
        cells[cell.key] = {"tier": cell.tier, "pattern": cell.pattern, **_stats(rows),
                           f"pass^{suite.repeats}": pass_hat_k(passes),
                           "error_samples": [f"{r['item']}: {r['error']}" for r in rows if r.get("error")][:5]}
        if groups:
            cells[cell.key]["groups"] = {name: _stats(group_rows) for name, group_rows in groups.items()}
    scorers = suite.resolved_scorers()
    report_only = sorted({m for scorer in scorers if not scorer.quality for m in scorer.metrics})
    return {"suite": suite.name, "task": suite.task.kind, "items": len({r["item"] for r in records}),
            "repeats": suite.repeats, "cells": cells, "report_only": report_only,
            "metric_order": list(dict.fromkeys(m for r in records for m in r["metrics"])),
            "scorers": {s.name: _summary_line(s.fn.__doc__) for s in scorers if s.fn.__doc__},
            "dataset": _dataset_summary(suite, items)}


def _summary_line(doc: str) -> str:
    """A scorer docstring's first paragraph as plain text (what each metric means, for the report's readers)."""
    return " ".join(doc.strip().split("\n\n")[0].split()).replace("``", "")


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


# -- the report as tables, rendered as Markdown or HTML -------------------------------------------------------

@dataclass
class Table:
    """Rows of plain-text cells; ``numeric`` columns are right-aligned."""

    head: list[str]
    rows: list[list[str]] = field(default_factory=list)
    numeric: set[int] = field(default_factory=set)


@dataclass
class Section:
    """A heading with notes (plain text), an optional table and a bullet list."""

    title: str
    notes: list[str] = field(default_factory=list)
    table: Table | None = None
    bullets: list[str] = field(default_factory=list)


def _num(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:,.0f}"


def _mean(stats: dict[str, Any], metric: str) -> str:
    """A metric's mean with the number of items it is over: ``0.770 (50)``."""
    if metric not in stats["metrics"]:
        return "–"
    return f"{_num(stats['metrics'][metric])} ({stats['metric_n'].get(metric, 0)})"


def _rate(stats: dict[str, Any]) -> str:
    return f"{stats['pass_rate']:.3f} ({stats['passed']}/{stats['n']})" if stats["n"] else "–"


def _duration(ms: float) -> str:
    return f"{ms / 1000:.1f} s" if ms >= 1000 else f"{ms:.0f} ms"


def _metric_names(report: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(quality metrics, report-only metrics) that appear in any cell, in a stable order."""
    skip = set(report.get("report_only", ()))
    present = {n for c in report["cells"].values() for n in c["metrics"] if not n.startswith(USAGE_PREFIXES)}
    order = [n for n in report.get("metric_order", []) if n in present] + sorted(present - set(
        report.get("metric_order", [])))  # the order the scorers report them in
    return [n for n in order if n not in skip], [n for n in order if n in skip]


def sections(report: dict[str, Any]) -> list[Section]:
    """The report's content once, for both renderings: summary per cell, per group, diagnostics, skipped, errors."""
    quality, diagnostic = _metric_names(report)
    cells = report["cells"]
    repeats = report["repeats"]
    costly = any(c["metrics"].get("cost") for c in cells.values())
    head = ["cell", "n", "errors", "pass rate", *([f"pass^{repeats}"] if repeats > 1 else []), *quality,
            "p50", "p95", "tokens in / out (mean)", *(["cost"] if costly else []), "tier mix"]
    summary = Table(head, numeric=set(range(1, len(head) - 1)))
    for key, cell in cells.items():
        tokens = f"{cell['metrics'].get('input_tokens', 0):.0f} / {cell['metrics'].get('output_tokens', 0):.0f}" \
            if "input_tokens" in cell["metrics"] else "–"
        mix = ", ".join(f"{name.removeprefix('tier_share.')} {share:.0%}" for name, share in cell["metrics"].items()
                        if name.startswith("tier_share.")) or "–"
        summary.rows.append([key, str(cell["n"]), str(cell["errors"]), _rate(cell),
                             *([f"{cell[f'pass^{repeats}']:.3f}"] if repeats > 1 else []),
                             *(_mean(cell, m) for m in quality), _duration(cell["latency_p50_ms"]),
                             _duration(cell["latency_p95_ms"]), tokens,
                             *([_num(cell["metrics"].get("cost"))] if costly else []), mix])
    notes = [HOW_TO_READ]
    notes += [f"Scorer {name}: {line}" for name, line in (report.get("scorers") or {}).items()]
    if repeats > 1:
        notes.append(f"pass^{repeats}: the share of items that passed all {repeats} repeats.")
    dataset = report.get("dataset") or {}
    if dataset.get("skipped"):
        notes.append(f"{dataset['skipped']} dataset row(s) were skipped as invalid and are in no denominator "
                     "(see Skipped rows).")
    out = [Section("Summary per cell", notes, summary)]

    group_names = list(dict.fromkeys(g for c in cells.values() for g in c.get("groups", {})))
    if len(group_names) > 1:
        head = ["cell", "category", "n", "errors", "pass rate", *quality, "p50"]
        table = Table(head, numeric=set(range(2, len(head))))
        for key, cell in cells.items():
            for name in group_names:
                stats = cell.get("groups", {}).get(name)
                if stats:
                    table.rows.append([key, name, str(stats["n"]), str(stats["errors"]), _rate(stats),
                                       *(_mean(stats, m) for m in quality), _duration(stats["latency_p50_ms"])])
        out.append(Section("By category", ["The same figures per item group (BFCL category, NESTFUL collection)."],
                           table))
    if diagnostic:
        table = Table(["cell", *diagnostic], numeric=set(range(1, len(diagnostic) + 1)))
        for key, cell in cells.items():
            table.rows.append([key, *(_mean(cell, m) for m in diagnostic)])
        out.append(Section("Diagnostics (report only, never gated)",
                           ["Means per item, over the items in parentheses."], table))
    if dataset.get("skipped"):
        shown = dataset["skipped_rows"]
        more = dataset["skipped"] - len(shown)
        out.append(Section("Skipped rows", [f"{dataset['skipped']} row(s) of the dataset were invalid and skipped "
                                            "(dataset.skip_invalid)" + (f"; the first {len(shown)}:" if more else ":")],
                           bullets=list(shown)))
    errors = [f"{key}: {sample}" for key, cell in cells.items() for sample in cell["error_samples"]]
    if errors:
        out.append(Section("Errors (first ones)", ["Up to five per cell: cell, item, error."],
                           bullets=[" ".join(e.split())[:300] for e in errors[:10]]))
    return out


def _intro(report: dict[str, Any]) -> str:
    dataset = report.get("dataset") or {}
    source = f"dataset {dataset.get('kind', '?')}" + (f" ({dataset['source']})" if dataset.get("source") else "")
    if "loaded" in dataset:
        source += f": {dataset['loaded']} items loaded"
        if dataset.get("skipped"):
            source += f", {dataset['skipped']} invalid row(s) skipped"
    return (f"{report['items']} items × {report['repeats']} repeat(s), task {report['task']}; {source}.")


def _code(text: str) -> str:
    """Text as a Markdown code span, shown as written (no markup, no HTML) whatever backticks it holds."""
    text = " ".join(text.split())
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _md_cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def to_markdown(report: dict[str, Any]) -> str:
    """The report as plain-text Markdown (tables, no HTML): readable in a terminal and rendered on a forge."""
    return sections_markdown(f"Eval: {report['suite']}", _intro(report), sections(report))


def sections_markdown(title: str, intro: str, parts: Iterable[Section]) -> str:
    """A titled document of report sections as plain-text Markdown (shared by the eval and routing reports)."""
    lines = [f"# {title}", "", intro]
    for section in parts:
        lines += ["", f"## {section.title}", ""]
        for note in section.notes:
            lines += [note, ""]
        if section.table is not None:
            table = section.table
            lines.append("| " + " | ".join(_md_cell(h) for h in table.head) + " |")
            lines.append("|" + "".join("---:|" if i in table.numeric else "---|" for i in range(len(table.head))))
            lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in table.rows]
        lines += [f"- {_code(b)}" for b in section.bullets]
        while lines[-1] == "":
            lines.pop()
    return "\n".join(lines) + "\n"


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _bar_labels(ax: Any, bars: Iterable[Any], labels: Sequence[str]) -> None:
    for bar, label in zip(bars, labels, strict=True):
        ax.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), xytext=(0, 2),
                    textcoords="offset points", ha="center", va="bottom", fontsize=7)


def plots(report: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, str]:
    """Base64 PNGs: pass rate by tier × pattern, by category (several groups), latency per cell, cost vs. quality
    (only when some tier costs money)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    cells = report["cells"]
    images: dict[str, str] = {}
    tiers = list(dict.fromkeys(c["tier"] or "default" for c in cells.values()))
    patterns = list(dict.fromkeys(c["pattern"] or "auto" for c in cells.values()))
    width = min(0.8 / len(patterns), 0.45)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(tiers) * max(1, len(patterns)) + 1.5), 3.2))
    for index, pattern in enumerate(patterns):
        chosen = [next((c for c in cells.values() if (c["tier"] or "default") == tier
                        and (c["pattern"] or "auto") == pattern), None) for tier in tiers]
        xs = [t + (index - (len(patterns) - 1) / 2) * width for t in range(len(tiers))]
        bars = ax.bar(xs, [c["pass_rate"] if c else 0.0 for c in chosen], width * 0.9, label=pattern)
        _bar_labels(ax, bars, [f"{c['pass_rate']:.2f}\n{c['passed']}/{c['n']}" if c else "" for c in chosen])
    ax.set_xticks(range(len(tiers)), tiers)
    ax.set_xlim(-0.6, len(tiers) - 0.4)
    ax.set_xlabel("tier")
    ax.set_ylim(0, 1.18)
    ax.set_ylabel("pass rate (errors count as failed)")
    ax.set_title("pass rate by tier × pattern")
    if len(patterns) > 1:
        ax.legend(title="pattern", fontsize=7, ncols=min(4, len(patterns)), loc="upper left")
    images["pass rate by tier × pattern"] = _png(fig)
    plt.close(fig)

    groups = list(dict.fromkeys(g for c in cells.values() for g in c.get("groups", {})))
    if len(groups) > 1:
        keys = list(cells)
        width = 0.8 / len(keys)
        fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(groups) * max(1, len(keys)) + 1.5), 3.4))
        for index, key in enumerate(keys):
            stats = [cells[key].get("groups", {}).get(g) for g in groups]
            xs = [g + (index - (len(keys) - 1) / 2) * width for g in range(len(groups))]
            bars = ax.bar(xs, [s["pass_rate"] if s else 0.0 for s in stats], width * 0.9, label=key)
            _bar_labels(ax, bars, [f"{s['passed']}/{s['n']}" if s else "" for s in stats])
        ax.set_xticks(range(len(groups)), groups, rotation=20, ha="right", fontsize=8)
        ax.set_ylim(0, 1.12)
        ax.set_ylabel("pass rate")
        ax.set_title("pass rate by category")
        if len(keys) > 1:
            ax.legend(fontsize=7)
        images["pass rate by category"] = _png(fig)
        plt.close(fig)

    keys = list(cells)
    series = [[float(r["output"]["latency_ms"]) for r in records
               if r["cell"] == k and r.get("output") and "latency_ms" in r["output"]] for k in keys]
    seconds = max((v for s in series for v in s), default=0.0) >= 2000
    scale, unit = (1000.0, "s") if seconds else (1.0, "ms")
    fig, ax = plt.subplots(figsize=(max(4.5, 1.3 * len(keys) + 1.5), 3.2))
    ax.boxplot([[v / scale for v in s] or [0.0] for s in series], showfliers=False)
    for index, values in enumerate(series, start=1):  # every item as a dot, spread sideways to stay visible
        spread = [index + ((i * 0.6180339) % 1 - 0.5) * 0.3 for i in range(len(values))]
        ax.scatter(spread, [v / scale for v in values], s=8, alpha=0.5, color="#4c72b0", zorder=3)
    labels = [f"{k}\n(n={len(s)})" for k, s in zip(keys, series, strict=True)]
    ax.set_xticks(range(1, len(keys) + 1), labels, fontsize=7)
    ax.set_ylabel(f"latency per item ({unit})")
    ax.set_ylim(0, max((v / scale for s in series for v in s), default=1.0) * 1.12 or 1.0)
    ax.set_title("latency distribution (items with an output)")
    images["latency distribution"] = _png(fig)
    plt.close(fig)

    if any(c["metrics"].get("cost") for c in cells.values()):
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for key, cell in cells.items():
            ax.scatter([cell["metrics"].get("cost", 0.0)], [cell["pass_rate"]], label=key)
        ax.set_xlabel("mean cost per item")
        ax.set_ylabel("pass rate")
        ax.set_title("cost vs. quality")
        ax.legend(fontsize=6)
        images["cost vs. quality"] = _png(fig)
        plt.close(fig)
    return images


_CSS = """body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1200px;
padding:0 1em;color:#222;line-height:1.45}h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em}
p.intro{color:#444}p.note{color:#555;font-size:.9em;max-width:60em}
table{border-collapse:collapse;font-size:.88em;margin:.6em 0}th,td{border:1px solid #ccd;padding:.3em .6em}
th{background:#eef1f7;text-align:left}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;
white-space:nowrap}tbody tr:nth-child(even){background:#f7f8fb}li{font-family:ui-monospace,monospace;
font-size:.85em;margin:.2em 0;word-break:break-word}figure{display:inline-block;margin:.8em 1.2em .8em 0;
vertical-align:top}figure img{max-width:100%}"""


def _html_table(table: Table) -> str:
    def cls(i: int) -> str:
        return ' class="num"' if i in table.numeric else ""

    head = "".join(f"<th{cls(i)}>{html.escape(h)}</th>" for i, h in enumerate(table.head))
    rows = "".join("<tr>" + "".join(f"<td{cls(i)}>{html.escape(v)}</td>" for i, v in enumerate(row)) + "</tr>"
                   for row in table.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def to_html(report: dict[str, Any], records: list[dict[str, Any]]) -> str:
    """A single self-contained page: the tables as HTML tables, the plots inline as base64 PNGs (works offline)."""
    return sections_html(f"Eval: {report['suite']}", f"Eval {report['suite']}", _intro(report), sections(report),
                         plots(report, records))


def sections_html(heading: str, title: str, intro: str, parts: Sequence[Section], images: dict[str, str]) -> str:
    """A self-contained page of report sections, the plots (base64 PNGs by caption) after the first section; shared
    by the eval and routing reports."""
    out = [f"<h1>{html.escape(heading)}</h1>", f'<p class="intro">{html.escape(intro)}</p>']
    for index, section in enumerate(parts):
        out.append(f"<h2>{html.escape(section.title)}</h2>")
        out += [f'<p class="note">{html.escape(n)}</p>' for n in section.notes]
        if section.table is not None:
            out.append(_html_table(section.table))
        if section.bullets:
            out.append("<ul>" + "".join(f"<li>{html.escape(b)}</li>" for b in section.bullets) + "</ul>")
        if index == 0:
            out.append("<h2>Plots</h2>")
            out += [f'<figure><img alt="{html.escape(t)}" src="data:image/png;base64,{b}"></figure>'
                    for t, b in images.items()]
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{_CSS}</style></head>"
            f"<body>{''.join(out)}</body></html>\n")


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
