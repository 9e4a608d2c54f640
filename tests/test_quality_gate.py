"""The answer-quality gate CI runs: a slice of e2e-core on the default mobile tier against its baseline.

Whole orchestrator runs on the real Qwen2.5-Coder-0.5B (the default install), scored with exact checks
(contains / regex / tool calls); ``--fail-on-regression`` exits 1 when a cell's pass rate drops more than
one item below the committed baseline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BASELINE = REPO / "evals" / "baselines" / "e2e-core-ci.mobile.json"


@pytest.mark.model
def test_the_e2e_core_slice_holds_its_baseline_on_the_default_tier(tmp_path):
    out = tmp_path / "gate"
    env = {**os.environ, "TIERFLOW_HOME": str(tmp_path / "home")}
    env.pop("TIERFLOW_DEFAULT_TIER", None)  # the suite names its tier; the gate is about the default install
    done = subprocess.run(
        [str(Path(sys.executable).with_name("tierflow")), "eval", "e2e-core-ci", "--out", str(out),
         "--baseline", str(BASELINE), "--fail-on-regression", "--tolerance", "0.1", "--no-html", "--no-progress"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    cells = report["cells"]
    assert set(cells) == {"tier=mobile,pattern=sequential", "tier=mobile,pattern=parallel"}
    for cell in cells.values():
        assert cell["n"] == 10 and cell["errors"] == 0
    # every item's calls ran on the default mobile tier, none fell back
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    tiers = {c["tier"] for r in records for c in (r.get("output") or {}).get("model_calls", [])}
    assert tiers <= {"mobile"}, tiers
