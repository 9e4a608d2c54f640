"""Suite declarations: dataset, task, scorers and the tier × pattern matrix, in Python or YAML."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tierflow.evals.datasets import EvalItem, LoadedItems, load_clinc150, load_jsonl
from tierflow.evals.errors import DatasetError, SuiteError
from tierflow.evals.registry import REGISTRY, DatasetEntry, TaskEntry
from tierflow.evals.scorers import Scorer, resolve_scorer

SUITES_DIR = Path(__file__).resolve().parent / "suites"

# The names a suite file may use; what each stands for (loader, task, the fields it reads) is in the registry,
# where the core registers jsonl, clinc150, intent and run below and each benchmark registers its own.
DatasetKind = Literal["jsonl", "clinc150", "bfcl", "nestful"]


class DatasetSpec(BaseModel):
    """Where the items come from; a relative ``path`` is relative to the suite file.

    ``jsonl`` and ``clinc150`` read ``path``; the benchmarks ``bfcl`` (``category``: one or a list, interleaved)
    and ``nestful`` (``collection``, ``distractors``: extra tools offered per item) read their installed packages,
    or the data folder at ``path`` when given. Both skip invalid rows and count them (``skip_invalid: false``
    stops at the first instead); ``limit`` takes the first rows before any is checked. A field another kind
    reads is an error.
    """

    model_config = ConfigDict(extra="forbid")
    kind: DatasetKind = "jsonl"
    path: Path | None = None
    split: str = "test"
    per_label: int | None = Field(None, ge=1)
    category: str | list[str] = "simple_python"
    collection: Literal["executable", "glaive", "sgd"] = "executable"
    distractors: int = Field(2, ge=0, le=50)
    skip_invalid: bool = True
    limit: int | None = Field(None, ge=1)
    ids: list[str] | None = Field(None, min_length=1, description="keep only items whose id matches one of these "
                                                                  "shell patterns (a slice of a bigger suite)")

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> DatasetSpec:
        if REGISTRY.dataset(self.kind).needs_path and self.path is None:
            raise ValueError(f"a {self.kind} dataset needs a path")
        owners = _owners(REGISTRY.datasets().values())
        for name in sorted(self.model_fields_set & set(owners)):
            if self.kind not in owners[name]:
                raise ValueError(f"dataset.{name} applies to kind {' or '.join(sorted(owners[name]))}, "
                                 f"not {self.kind}")
        check = REGISTRY.dataset(self.kind).check
        if check is not None:
            check(self)
        return self

    def load(self, seed: int = 0) -> LoadedItems:
        """The items, by the loader registered for ``kind`` (``skipped``: rows left out as invalid); ``seed``
        picks NESTFUL's distractor tools."""
        items = REGISTRY.dataset(self.kind).load(self, seed)
        return items if isinstance(items, LoadedItems) else LoadedItems(items)


def _owners(entries: Iterable[DatasetEntry | TaskEntry]) -> dict[str, set[str]]:
    """Which kinds read each kind-specific field: giving one to another kind is a mistake worth an error."""
    owners: dict[str, set[str]] = {}
    for entry in entries:
        for name in entry.fields:
            owners.setdefault(name, set()).add(entry.name)
    return owners


def _load_jsonl(spec: DatasetSpec, seed: int) -> list[EvalItem]:
    """A JSONL file, or the items whose id matches one of ``spec.ids`` (every pattern must match one)."""
    assert spec.path is not None
    if not spec.ids:
        return load_jsonl(spec.path, spec.limit)
    items = [i for i in load_jsonl(spec.path) if any(fnmatch.fnmatchcase(i.id, p) for p in spec.ids)]
    unmatched = [p for p in spec.ids if not any(fnmatch.fnmatchcase(i.id, p) for i in items)]
    if unmatched:
        raise DatasetError(f"dataset.ids {unmatched} match no item of {spec.path}")
    return items[: spec.limit] if spec.limit else items


def _load_clinc150(spec: DatasetSpec, seed: int) -> list[EvalItem]:
    assert spec.path is not None
    return load_clinc150(spec.path, spec.split, spec.per_label, spec.limit)


REGISTRY.add_dataset("jsonl", _load_jsonl, fields={"ids"}, needs_path=True)
REGISTRY.add_dataset("clinc150", _load_clinc150, fields={"split", "per_label"}, needs_path=True)

TaskKind = Literal["intent", "run", "function_call", "plan"]
# The CLI builds these two itself (a classifier; a whole graph); tier-driven tasks read the tiers from ``config``.
REGISTRY.add_task("intent", datasets={"jsonl", "clinc150"}, fields={"model"})
REGISTRY.add_task("run", datasets={"jsonl"}, fields={"config"})


class TaskSpec(BaseModel):
    """What runs on each item: the intent classifier (``model``: a trained folder, default the demo), a whole
    run, one BFCL function call, or a NESTFUL plan; the last three on each matrix cell's tier.

    ``max_tokens`` overrides the tier's output limit for function_call/plan; ``max_calls`` caps how many calls a
    plan or a function_call reply may have.
    """

    model_config = ConfigDict(extra="forbid")
    kind: TaskKind
    model: Path | None = None
    config: Path | None = Field(None, description="settings TOML (tiers, MCP servers); {python} is this interpreter")
    max_tokens: int | None = Field(None, ge=1, le=65_536)
    max_calls: int = Field(8, ge=1, le=32)

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> TaskSpec:
        owners = _owners(REGISTRY.tasks().values())
        for name in sorted(self.model_fields_set & set(owners)):
            if getattr(self, name) is not None and self.kind not in owners[name]:
                raise ValueError(f"task.{name} applies to kind {' or '.join(sorted(owners[name]))}, "
                                 f"not {self.kind}")
        return self


class Cell(BaseModel):
    """One point of the matrix: the tier every agent prefers and the forced pattern (None: settings decide)."""

    model_config = ConfigDict(frozen=True)
    tier: str | None = None
    pattern: str | None = None

    @property
    def key(self) -> str:
        return f"tier={self.tier or 'default'},pattern={self.pattern or 'auto'}"


class Matrix(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tiers: list[str | None] = Field(default_factory=lambda: [None], min_length=1)
    patterns: list[str | None] = Field(default_factory=lambda: [None], min_length=1)

    def cells(self) -> list[Cell]:
        return [Cell(tier=t, pattern=p) for t in self.tiers for p in self.patterns]


class Suite(BaseModel):
    """A complete eval: ``repeats`` > 1 measures pass^k; ``gate`` lists the metrics a baseline comparison checks."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    dataset: DatasetSpec
    task: TaskSpec
    scorers: list[str] = Field(min_length=1)
    matrix: Matrix = Field(default_factory=Matrix)
    repeats: int = Field(1, ge=1, le=50)
    concurrency: int = Field(1, ge=1, le=64)
    seed: int = 0
    timeout_s: float = Field(300.0, gt=0)
    gate: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _task_fits_dataset(self) -> Suite:
        allowed = REGISTRY.task(self.task.kind).datasets
        if self.dataset.kind not in allowed:
            raise ValueError(f"a {self.task.kind} task needs a {' or '.join(sorted(allowed))} dataset, "
                             f"not {self.dataset.kind}")
        if self.task.kind != "run" and any(p is not None for p in self.matrix.patterns):
            raise ValueError(f"matrix.patterns apply to run tasks only, not {self.task.kind}")
        return self

    def resolved_scorers(self) -> list[Scorer]:
        return [resolve_scorer(name) for name in self.scorers]


def load_suite(spec: str | Path) -> Suite:
    """A suite from a YAML file, or by the name of a shipped suite in ``evals/suites/``."""
    path = Path(spec)
    if not path.suffix and not path.exists():
        path = SUITES_DIR / f"{spec}.yaml"
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in SUITES_DIR.glob("*.yaml")))
        raise SuiteError(f"suite {spec!r} not found (a YAML file, or one of: {shipped})")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SuiteError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise SuiteError(f"{path}: expected a mapping with name, dataset, task, scorers")
    try:
        suite = Suite.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "suite"
        raise SuiteError(f"{path}: {where}: {first['msg'].removeprefix('Value error, ')}") from None
    base = path.resolve().parent
    if suite.dataset.path is not None:
        suite.dataset.path = base / Path(os.path.expandvars(suite.dataset.path))
    if suite.task.model is not None:
        suite.task.model = base / Path(os.path.expandvars(suite.task.model))
    if suite.task.config is not None:
        suite.task.config = base / Path(os.path.expandvars(suite.task.config))
    suite.resolved_scorers()  # unknown scorers fail here, before any item runs
    return suite
