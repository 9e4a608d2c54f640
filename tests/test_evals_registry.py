"""The eval core and its benchmarks: every suite name has one registered implementation, and no import cycles."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest

from tierflow.evals.errors import SuiteError
from tierflow.evals.registry import REGISTRY, Registry
from tierflow.evals.scorers import resolve_scorer
from tierflow.evals.suite import DatasetKind, DatasetSpec, TaskKind, TaskSpec

EVALS = Path(__file__).resolve().parent.parent / "evals"
PACKAGE = "tierflow.evals"


def test_every_kind_a_suite_may_name_is_registered_and_nothing_else():
    assert set(REGISTRY.datasets()) == set(typing.get_args(DatasetKind))
    assert set(REGISTRY.tasks()) == set(typing.get_args(TaskKind))
    assert set(REGISTRY.datasets()["bfcl"].fields) == {"category", "skip_invalid"}
    assert REGISTRY.datasets()["bfcl"].check is not None  # unknown categories fail as the suite loads
    assert REGISTRY.tasks()["plan"].build is not None and REGISTRY.tasks()["run"].build is None
    # a field a kind reads must exist on the spec that carries it in a suite file
    assert set().union(*(d.fields for d in REGISTRY.datasets().values())) <= set(DatasetSpec.model_fields)
    assert set().union(*(t.fields for t in REGISTRY.tasks().values())) <= set(TaskSpec.model_fields)
    assert {"bfcl_ast", "plan_counts", "usage"} <= set(REGISTRY.scorers())
    assert resolve_scorer("plan_counts").metrics == ("plan_calls", "plan_gold_calls", "plan_valid")


def test_a_registry_loads_its_benchmarks_once_and_refuses_a_second_meaning_for_a_name():
    registry = Registry("tierflow.evals.benchmarks")
    assert set(registry.scorers()) == {"bfcl_ast", "bfcl_ast_errors", "plan", "plan_counts"}
    assert registry.scorers() == registry.scorers()  # a second lookup does not register again
    with pytest.raises(ValueError, match="scorer 'plan' is registered twice"):
        registry.add_scorer("plan", lambda item, output: {})
    with pytest.raises(SuiteError, match="no implementation registered for task kind 'intent'"):
        registry.task("intent")  # the core registers its kinds in REGISTRY, not in every registry


def _imports(module: str, path: Path, modules: set[str]) -> set[str]:
    """Modules of tierflow.evals that ``module`` imports at any level (importlib included), not for types only."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
            found.add(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.add(node.value)  # a module named in a string, as importlib.import_module takes it
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {name for name in found if name in modules and name != module}


def test_no_module_of_the_eval_harness_imports_one_that_imports_it_back():
    files = {PACKAGE + "".join(f".{p}" for p in f.relative_to(EVALS).with_suffix("").parts if p != "__init__"): f
             for f in EVALS.rglob("*.py")}
    assert {"tierflow.evals.registry", "tierflow.evals.benchmarks.bfcl"} <= set(files)
    graph = {name: _imports(name, path, set(files)) for name, path in files.items()}
    assert "tierflow.evals.benchmarks" in graph["tierflow.evals.registry"]  # the lazy import is seen

    def reachable(start: str) -> set[str]:
        seen: set[str] = set()
        stack = list(graph[start])
        while stack:
            name = stack.pop()
            if name not in seen:
                seen.add(name)
                stack.extend(graph[name])
        return seen

    in_cycles = {name: sorted(graph[name]) for name in sorted(graph) if name in reachable(name)}
    assert not in_cycles, f"modules in an import cycle, with what they import: {in_cycles}"
