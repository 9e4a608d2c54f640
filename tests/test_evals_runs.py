"""Whole-run tasks: the orchestrator with scripted models per pattern, scored on answers, tools and usage."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scripted import ScriptedChatModel
from tests.test_orchestrator import PLAN, PLANNED
from tierflow.agents.decomposer import TaskDecomposer
from tierflow.agents.synthesizer import Synthesizer
from tierflow.agents.worker import WorkerAgent
from tierflow.evals.datasets import EvalItem
from tierflow.evals.report import summarize
from tierflow.evals.runner import run_suite
from tierflow.evals.suite import Cell, DatasetSpec, Matrix, Suite, TaskSpec
from tierflow.evals.tasks import RunTask
from tierflow.graphs.orchestrator import OrchestratorDeps, build_orchestrator
from tierflow.tools.native import native_tools
from tierflow.tools.registry import ToolRegistry


def scripted_graph(cell: Cell):
    """A fresh orchestrator per cell whose models follow one script: plan, calculator call, answers."""
    tools = ToolRegistry(native_tools())
    planner, synth = ScriptedChatModel.of([PLAN]), ScriptedChatModel.of(["17 times 23 is 391."])
    worker = ScriptedChatModel.of([{"action": "call_tool", "tool": "calculator", "args": {"expression": "17*23"}},
                                   {"action": "finish", "answer": "391"}, "It is 391."])
    planner.tier = synth.tier = "edge"
    worker.tier = "mobile"
    deps = OrchestratorDeps(classifier=PLANNED, decomposer=TaskDecomposer(planner, tools.names),
                            worker=WorkerAgent(worker, tools), synthesizer=Synthesizer(synth))
    return build_orchestrator(deps, forced_pattern=cell.pattern)


def test_run_task_scores_answers_tool_calls_tokens_cost_and_tier_mix(tmp_path: Path):
    suite = Suite(name="e2e", dataset=DatasetSpec(path=Path("unused")), task=TaskSpec(kind="run"),
                  scorers=["contains", "regex", "tool_calls", "usage"],
                  matrix=Matrix(tiers=[None], patterns=["sequential", "parallel"]))
    item = EvalItem(id="calc", input="what is 17*23?", expected={
        "contains": ["391"], "regex": r"\b391\b",
        "tool_calls": [{"tool": "calculator", "args": {"expression": "17*23"}}, "word_count"]})
    task = RunTask(scripted_graph, costs={"edge": (1.0, 2.0)})
    records = run_suite(suite, task, [item], tmp_path / "r.jsonl", progress=False)
    assert [r["error"] for r in records] == [None, None]
    by_pattern = {r["pattern"]: r for r in records}
    sequential = by_pattern["sequential"]
    assert sequential["output"]["pattern"] == "sequential" and sequential["output"]["answer"] == "17 times 23 is 391."
    metrics = sequential["metrics"]
    assert metrics["answer_contains"] == 1.0 and metrics["answer_regex"] == 1.0
    assert metrics["tool_recall"] == 0.5 and sequential["passed"] is False  # word_count was expected, never called
    # planner + synthesizer on edge (2 calls), three worker calls on mobile; 10 in / 5 out tokens each
    assert metrics["model_calls"] == 5 and metrics["input_tokens"] == 50
    assert metrics["tier_share.edge"] == pytest.approx(0.4) and metrics["tier_share.mobile"] == pytest.approx(0.6)
    assert metrics["cost"] == pytest.approx(2 * (10 / 1000 * 1.0 + 5 / 1000 * 2.0))
    report = summarize(suite, records)
    assert set(report["cells"]) == {"tier=default,pattern=sequential", "tier=default,pattern=parallel"}
    assert by_pattern["parallel"]["output"]["pattern"] == "parallel"
    same = ("answer_contains", "tool_recall", "model_calls", "cost")
    assert {k: by_pattern["parallel"]["metrics"][k] for k in same} == {k: metrics[k] for k in same}
