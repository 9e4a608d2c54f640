"""The regression gate: compare a report with a baseline report, metric by metric and cell by cell."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tierflow.evals.errors import BaselineError
from tierflow.evals.report import cell_value, quality_metrics


@dataclass(frozen=True)
class Regression:
    """One metric of one cell that fell more than the tolerance below the baseline (or went missing)."""

    cell: str
    metric: str
    baseline: float
    current: float | None

    def __str__(self) -> str:
        now = "missing" if self.current is None else f"{self.current:.4f}"
        return f"{self.cell}: {self.metric} {self.baseline:.4f} -> {now}"


def load_baseline(path: Path, suite_name: str) -> dict[str, Any]:
    """A report JSON written earlier for the same suite."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BaselineError(f"baseline {path} not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise BaselineError(f"baseline {path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), dict) or "repeats" not in data:
        raise BaselineError(f"baseline {path} is not an eval report (no 'cells')")
    if data.get("suite") != suite_name:
        raise BaselineError(f"baseline {path} is for suite {data.get('suite')!r}, not {suite_name!r}")
    return data


def compare(report: dict[str, Any], baseline: dict[str, Any], tolerance: float = 0.0,
            metrics: list[str] | None = None) -> list[Regression]:
    """Higher-is-better metrics that dropped by more than ``tolerance`` (absolute), per baseline cell."""
    if tolerance < 0:
        raise BaselineError(f"tolerance must be >= 0, got {tolerance}")
    names = metrics or quality_metrics(baseline)
    regressions = []
    for key, base_cell in baseline["cells"].items():
        cell = report["cells"].get(key)
        for metric in names:
            before = cell_value(base_cell, metric)
            if before is None:
                continue
            now = None if cell is None else cell_value(cell, metric)
            if now is None or now < before - tolerance - 1e-9:
                regressions.append(Regression(key, metric, before, now))
    return regressions
