"""How tierflow installs and how its modules depend on each other.

The layer folders DESIGN.md fixes (agents/, graphs/, ...) sit beside tierflow/ and install under it, so a wheel
puts one name into site-packages. Imports follow DESIGN.md's table and never run in a circle.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

from tests.paths import REPO

LAYERS = ("agents", "graphs", "tools", "memory", "mcp_servers", "evals", "runtimes", "tracing", "examples")
# DESIGN.md's "may import" column, by layer (tierflow/, the CLI and public API, may import everything).
MAY_IMPORT = {
    "runtimes": set(),
    "tools": {"runtimes"},
    "memory": {"runtimes"},  # only runtimes.errors / runtimes.privacy: the error root and the private patterns
    "tracing": {"runtimes"},  # same
    "agents": {"runtimes", "tools", "memory"},
    "graphs": {"agents", "runtimes", "tools", "memory"},
    "mcp_servers": {"graphs", "agents", "memory", "runtimes", "tools"},
    "evals": {"graphs", "agents", "runtimes"},
    "examples": {"tierflow", "graphs", "agents", "runtimes", "tools", "memory"},  # user code: the public API too
}


def _source_packages() -> set[str]:
    """Every package in the tree, named as it installs (tierflow.agents.intents for agents/intents/)."""
    found = {"tierflow"}
    for layer in LAYERS:
        for folder, subfolders, files in os.walk(REPO / layer):
            subfolders[:] = [name for name in subfolders if name != "__pycache__"]
            if "__init__.py" in files:
                found.add("tierflow." + Path(folder).relative_to(REPO).as_posix().replace("/", "."))
    return found


def test_pyproject_installs_every_layer_package_under_tierflow() -> None:
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(setuptools["packages"]) == _source_packages()
    assert setuptools["package-dir"] == {"tierflow": "tierflow", **{f"tierflow.{layer}": layer for layer in LAYERS}}


def test_the_wheel_adds_one_top_level_name_and_works_in_a_clean_venv(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", "tests", "bench", ".tierflow", "evals-out"))
    build = ("import sys; from setuptools import build_meta; "
             "print(build_meta.build_wheel(sys.argv[1]))")
    out = subprocess.run([sys.executable, "-c", build, str(tmp_path / "dist")], cwd=source, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = tmp_path / "dist" / out.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert {name.split("/")[0] for name in names} == {"tierflow", "tierflow-0.1.0.dist-info"}
    # Data the layers read at run time travels with them.
    for data in ("tierflow/evals/suites/e2e-core.yaml", "tierflow/evals/baselines/e2e-core.mobile.json",
                 "tierflow/evals/data/e2e-core.jsonl", "tierflow/agents/intents/demo_model/head.safetensors",
                 "tierflow/agents/intents/demo_intents.jsonl"):
        assert data in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    site = next((venv / "lib").glob("python3*/site-packages"))
    before = set(os.listdir(site))
    install = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)]
    subprocess.run(install, check=True, timeout=300, capture_output=True)
    assert set(os.listdir(site)) - before == {"tierflow", "tierflow-0.1.0.dist-info"}
    assert (venv / "bin" / "tierflow").is_file()
    # Modules that need nothing outside the standard library import from the installed copy, not this checkout.
    probe = ("import tierflow.runtimes.context as c, tierflow.runtimes.errors as e; "
             "print(c.__file__); assert issubclass(e.TierUnavailableError, e.TierflowError)")
    ran = subprocess.run([str(venv / "bin" / "python"), "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60, env={"PATH": os.environ.get("PATH", "")})
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().startswith(str(site))


def _imports(path: Path) -> Iterator[str]:
    """Modules ``path`` imports anywhere (functions included), leaving out ``if TYPE_CHECKING:`` blocks."""
    def visit(node: ast.AST) -> Iterator[str]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                yield from (name for branch in child.orelse for name in visit(ast.Module([branch], [])))
                continue
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                yield child.module
                yield from (f"{child.module}.{alias.name}" for alias in child.names)
            elif isinstance(child, ast.Import):
                yield from (alias.name for alias in child.names)
            yield from visit(child)
    yield from visit(ast.parse(path.read_text()))


def _module_graph() -> dict[str, set[str]]:
    modules: dict[str, Path] = {}
    for folder in ("tierflow", *LAYERS):
        for path in (REPO / folder).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            modules[".".join(parts) if parts[0] == "tierflow" else "tierflow." + ".".join(parts)] = path
    return {name: {dep for dep in _imports(path) if dep in modules and dep != name}
            for name, path in modules.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "tierflow"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import circles found by a depth-first walk, each as the path that closes it."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def walk(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep):], dep])
            elif dep not in state:
                walk(dep, [*path, dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    return cycles


def test_no_module_imports_one_that_imports_it_back() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles(_module_graph()) == []


def test_layers_import_only_what_design_md_allows() -> None:
    wrong = sorted(f"{module} imports {dep}" for module, deps in _module_graph().items() for dep in deps
                   if _layer(module) in MAY_IMPORT and _layer(dep) not in {_layer(module), *MAY_IMPORT[_layer(module)]})
    assert wrong == []
