"""Offline review: spans written as JSON lines and ``tierflow traces show RUN_ID`` printing the run's tree."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tests.test_tracing_export import scripted_graph
from tierflow.cli import app
from tierflow.graphs.runner import run_request
from tierflow.tracing import open_tracing, read_spans


def write_trace(tmp_path, run_id: str = "run-f", times: int = 1):
    path = tmp_path / "spans.jsonl"
    for _ in range(times):  # the same thread id again = a resumed run / follow-up: a second trace
        tracing = open_tracing({}, env={}, trace_file=path, release="1.2.3")
        run_request(scripted_graph(tmp_path), "what is 17*23? api_key=abc123", run_id=run_id, user_id="bob",
                    callbacks=[tracing.handler(costs={"scripted": (1.0, 1.0)})])
        assert tracing.close() is True
    return path


def test_a_trace_file_alone_turns_tracing_on_and_sends_nothing(tmp_path, monkeypatch):
    for name in ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    path = write_trace(tmp_path)
    spans = list(read_spans(path))
    assert {s["session_id"] for s in spans} == {"run-f"} and {s["user_id"] for s in spans} == {"bob"}
    [root] = [s for s in spans if s["parent_id"] is None]
    assert root["name"] == "tierflow.run" and {"intent:calculator", "pattern:sequential"} <= set(root["tags"])
    generations = [s for s in spans if s["type"] == "generation"]
    assert len(generations) == 5
    assert all(g["metadata"]["tier"] == "scripted" and g["usage_details"]["input"] == 10 for g in generations)
    assert all(g["cost_details"]["total"] == 0.015 for g in generations)
    assert "abc123" not in path.read_text()  # masked like the Langfuse export


def test_traces_show_prints_the_tree_with_timings_tiers_and_tokens(tmp_path):
    path = write_trace(tmp_path)
    result = CliRunner().invoke(app, ["traces", "show", "run-f", "--file", str(path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "run=run-f" in lines[0] and "user=bob" in lines[0] and "5 model calls, 75 tokens" in lines[0]
    assert any("tierflow.run" in line and " ms" in line for line in lines)
    work = [line for line in lines if "ScriptedChatModel" in line]
    assert len(work) == 5 and all("tier=scripted" in line and "tokens=10+5" in line for line in work)
    # nesting: the calculator tool is drawn deeper than the work agent that called it
    depth = {name: next(line.index(name) for line in lines if f"{name}  " in line) for name in
             ("tierflow.run", "execute", "work", "calculator")}
    assert depth["tierflow.run"] < depth["execute"] < depth["work"] < depth["calculator"]


def test_traces_show_json_nests_children_and_keeps_each_invocation_of_a_thread(tmp_path):
    path = write_trace(tmp_path, times=2)
    result = CliRunner().invoke(app, ["traces", "show", "run-f", "--file", str(path), "--json"])
    assert result.exit_code == 0, result.output
    roots = json.loads(result.output)
    assert [r["name"] for r in roots] == ["tierflow.run", "tierflow.run"]
    assert roots[0]["trace_id"] != roots[1]["trace_id"] and roots[0]["start_ns"] < roots[1]["start_ns"]
    execute = next(c for c in roots[0]["children"] if c["name"] == "execute")
    assert execute["children"][0]["name"] == "sequential"


def test_traces_show_errors_are_one_line(tmp_path):
    path = write_trace(tmp_path)
    missing = CliRunner().invoke(app, ["traces", "show", "nope", "--file", str(path)])
    assert missing.exit_code == 1 and "no trace for run 'nope'" in missing.output
    absent = CliRunner().invoke(app, ["traces", "show", "run-f", "--file", str(tmp_path / "none.jsonl")])
    assert absent.exit_code == 2 and "does not exist" in absent.output
    broken = tmp_path / "broken.jsonl"
    broken.write_text(path.read_text() + "{not json\n")
    corrupt = CliRunner().invoke(app, ["traces", "show", "run-f", "--file", str(broken)])
    assert corrupt.exit_code == 2 and "is not JSON" in corrupt.output and "Traceback" not in corrupt.output
