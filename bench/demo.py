"""The README's demo as a new user runs it: ``tierflow run "What is 17 times 23?"``, in fresh processes.

Each repeat is a whole ``tierflow run --json`` process on an empty data folder (model load included), so wall
time and peak RSS are what a user waits for and pays. The default tier and ``--tier tiny`` (SmolLM2-135M,
the old default) run side by side in the same session, alternating, so machine noise hits both alike.

    python bench/demo.py [--repeats 10] [--request "..."] [--expect 391] [--tiers default,tiny]

Prints one JSON object: per tier the share of right answers, median/p90 wall seconds, median model calls,
peak RSS (MB) and every run's answer.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def one_run(request: str, tier: str | None, home: Path) -> dict[str, object]:
    """A fresh ``tierflow run --json`` process: wall seconds and that process's own peak RSS (``wait4``)."""
    tierflow = str(Path(sys.executable).with_name("tierflow"))
    cmd = [tierflow, "run", "--json", request] + (["--tier", tier] if tier else [])
    env = {**os.environ, "TIERFLOW_HOME": str(home)}
    env.pop("TIERFLOW_DEFAULT_TIER", None)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=REPO, text=True)
        _, status, usage = os.wait4(child.pid, 0)  # this child's rusage, not the max over all children
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    try:
        payload = json.loads(stdout)
    except json.JSONDecodeError:
        payload = {"answer": "", "status": "crashed", "model_calls": [], "stderr": stderr[-500:]}
    return {"wall_s": round(wall, 2), "rc": child.returncode, "answer": payload.get("answer", ""),
            "status": payload.get("status"), "model_calls": len(payload.get("model_calls", [])),
            "peak_rss_mb": round(usage.ru_maxrss / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--request", default="What is 17 times 23?")
    parser.add_argument("--expect", default="391", help="the right answer must contain this number")
    parser.add_argument("--tiers", default="default,tiny", help="comma list; 'default' = no --tier")
    args = parser.parse_args()
    tiers = [t.strip() for t in args.tiers.split(",") if t.strip()]
    runs: dict[str, list[dict[str, object]]] = {t: [] for t in tiers}
    expect = re.compile(rf"(?<![\d.]){re.escape(args.expect)}(?![\d])")
    with tempfile.TemporaryDirectory(prefix="tierflow-demo-") as tmp:
        for i in range(args.repeats):
            for tier in tiers:  # alternate, so noise hits every tier alike
                home = Path(tmp) / f"{tier}-{i}"
                runs[tier].append(one_run(args.request, None if tier == "default" else tier, home))
                print(f"{tier} #{i + 1}: {runs[tier][-1]['answer']!r} in {runs[tier][-1]['wall_s']} s",
                      file=sys.stderr)
    summary = {}
    for tier, items in runs.items():
        walls = sorted(float(r["wall_s"]) for r in items)  # type: ignore[arg-type]
        rss = [int(r["peak_rss_mb"]) for r in items if r["peak_rss_mb"]]  # type: ignore[arg-type]
        summary[tier] = {
            "right": sum(bool(expect.search(str(r["answer"]))) for r in items), "runs": len(items),
            "exit_0": sum(r["rc"] == 0 for r in items),
            "wall_median_s": round(statistics.median(walls), 2),
            "wall_p90_s": round(walls[min(len(walls) - 1, int(0.9 * len(walls)))], 2),
            "model_calls_median": statistics.median(int(r["model_calls"]) for r in items),  # type: ignore[arg-type]
            "peak_rss_mb_max": max(rss) if rss else None,
            "answers": [r["answer"] for r in items],
        }
    print(json.dumps({"request": args.request, "expect": args.expect, "repeats": args.repeats,
                      "tiers": summary}, indent=2))


if __name__ == "__main__":
    main()
