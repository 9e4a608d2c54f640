"""Reports: plain-text Markdown, HTML with real tables and plots, stated denominators, per-category breakdown."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

from tierflow.evals.datasets import EvalItem, LoadedItems
from tierflow.evals.errors import DatasetError
from tierflow.evals.report import summarize, to_markdown, write_reports
from tierflow.evals.runner import run_suite
from tierflow.evals.suite import Cell, DatasetSpec, Matrix, Suite, TaskSpec


def answer_task(item: EvalItem, cell: Cell) -> dict:
    """Answers "yes" except on the items marked to fail, and raises on the ones marked to break."""
    if "break" in item.input:
        raise RuntimeError("tier went away <b>[bold]</b> & more")
    return {"answer": "no" if "wrong" in item.input else "yes", "latency_ms": 1500.0 + 100 * len(item.input),
            "model_calls": [{"tier": cell.tier, "input_tokens": 30, "output_tokens": 4}]}


def run(tmp_path: Path) -> tuple[dict, list[dict]]:
    suite = Suite(name="mixed", dataset=DatasetSpec(path=Path("unused")), task=TaskSpec(kind="run"),
                  scorers=["contains", "usage"], matrix=Matrix(tiers=["mobile", "edge"]))
    texts = {"a-1": "fine", "a-2": "wrong", "b-1": "fine", "b-2": "break it", "b-3": "fine"}
    items = LoadedItems([EvalItem(id=k, input=v, expected={"contains": "yes"}, group=f"group {k[0]}")
                         for k, v in texts.items()],
                        skipped=[DatasetError("answer has no acceptable values", "data.json", 7)])
    records = run_suite(suite, answer_task, items, tmp_path / "results.jsonl", progress=False)
    return summarize(suite, records, items), records


def test_every_figure_states_its_denominator(tmp_path):
    report, _ = run(tmp_path)
    cell = report["cells"]["tier=mobile,pattern=auto"]
    # pass rate counts the errored item as failed (3 of 5); the metric mean leaves it out (3 of 4)
    assert (cell["n"], cell["errors"], cell["passed"], cell["pass_rate"]) == (5, 1, 3, 0.6)
    assert cell["metrics"]["answer_contains"] == 0.75 and cell["metric_n"]["answer_contains"] == 4
    assert cell["groups"]["group b"]["n"] == 3 and cell["groups"]["group b"]["pass_rate"] == 2 / 3
    assert report["dataset"] == {"kind": "jsonl", "source": "unused", "loaded": 5, "skipped": 1,
                                 "skipped_rows": ["data.json:7: answer has no acceptable values"]}

    text = to_markdown(report)
    assert "| tier=mobile,pattern=auto | 5 | 1 | 0.600 (3/5) | 0.750 (4) |" in text
    assert "an item that errored or timed out counts as failed" in text and "left out of the means" in text
    assert "## By category" in text and "| tier=edge,pattern=auto | group b | 3 | 1 | 0.667 (2/3) |" in text
    assert "- `data.json:7: answer has no acceptable values`" in text and "1 invalid row(s) skipped" in text
    # plain text: error messages appear as written (in code spans, so a forge shows them literally too)
    assert "- `tier=edge,pattern=auto: b-2: RuntimeError: tier went away <b>[bold]</b> & more`" in text
    assert "&lt;" not in text and "&amp;" not in text


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_the_html_page_has_tables_and_plots_and_works_offline(tmp_path):
    report, records = run(tmp_path)
    paths = write_reports(report, records, tmp_path / "out")
    page = paths["html"].read_text()
    parsed = _Page()
    parsed.feed(page)
    assert parsed.tags.count("table") == 2 and "pre" not in parsed.tags  # summary and by-category, as tables
    assert "| --- |" not in page and "|---" not in page  # no Markdown left in the page
    text = "".join(parsed.text)
    assert "tier went away <b>[bold]</b> & more" in text  # escaped in the source, literal on screen
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', page)
    assert [alt for alt, _ in images] == ["pass rate by tier × pattern", "pass rate by category",
                                          "latency distribution"]
    assert all(base64.b64decode(data).startswith(b"\x89PNG") for _, data in images)
    assert "http://" not in page and "https://" not in page
    assert json.loads(paths["json"].read_text())["dataset"]["skipped"] == 1
