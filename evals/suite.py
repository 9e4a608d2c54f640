"""Suite declarations: dataset, task, scorers and the tier × pattern matrix, in Python or YAML."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evals.datasets import EvalItem, load_clinc150, load_jsonl
from evals.errors import SuiteError
from evals.scorers import Scorer, resolve_scorer

SUITES_DIR = Path(__file__).resolve().parent / "suites"


class DatasetSpec(BaseModel):
    """Where the items come from; a relative ``path`` is relative to the suite file."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["jsonl", "clinc150"] = "jsonl"
    path: Path
    split: str = "test"
    per_label: int | None = Field(None, ge=1)
    limit: int | None = Field(None, ge=1)

    def load(self) -> list[EvalItem]:
        if self.kind == "clinc150":
            return load_clinc150(self.path, self.split, self.per_label, self.limit)
        return load_jsonl(self.path, self.limit)


class TaskSpec(BaseModel):
    """What runs on each item: the intent classifier (``model``: a trained folder, default the demo) or a whole run."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["intent", "run"]
    model: Path | None = None
    config: Path | None = Field(None, description="settings TOML for run tasks; {python} is this interpreter")


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
        raise SuiteError(f"{path}: {where}: {first['msg']}") from None
    base = path.resolve().parent
    suite.dataset.path = base / Path(os.path.expandvars(suite.dataset.path))
    if suite.task.model is not None:
        suite.task.model = base / Path(os.path.expandvars(suite.task.model))
    if suite.task.config is not None:
        suite.task.config = base / Path(os.path.expandvars(suite.task.config))
    suite.resolved_scorers()  # unknown scorers fail here, before any item runs
    return suite
