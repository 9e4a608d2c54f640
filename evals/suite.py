"""Suite declarations: dataset, task, scorers and the tier × pattern matrix, in Python or YAML."""

from __future__ import annotations

import fnmatch
import logging
import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from tierflow.evals.datasets import EvalItem, load_clinc150, load_jsonl
from tierflow.evals.errors import DatasetError, SuiteError
from tierflow.evals.scorers import Scorer, resolve_scorer

SUITES_DIR = Path(__file__).resolve().parent / "suites"
log = logging.getLogger("tierflow.evals")


DatasetKind = Literal["jsonl", "clinc150", "bfcl", "nestful"]
# Fields that only some dataset kinds read; giving one to another kind is a mistake worth an error.
_DATASET_FIELDS: dict[str, set[str]] = {"split": {"clinc150"}, "per_label": {"clinc150"}, "category": {"bfcl"},
                                        "collection": {"nestful"}, "distractors": {"nestful"},
                                        "skip_invalid": {"nestful"}, "ids": {"jsonl"}}


class DatasetSpec(BaseModel):
    """Where the items come from; a relative ``path`` is relative to the suite file.

    ``jsonl`` and ``clinc150`` read ``path``; ``bfcl`` (``category``) and ``nestful`` (``collection``,
    ``distractors``: extra tools offered per item, ``skip_invalid``) read their installed packages, or the
    data folder at ``path`` when given.
    """

    model_config = ConfigDict(extra="forbid")
    kind: DatasetKind = "jsonl"
    path: Path | None = None
    split: str = "test"
    per_label: int | None = Field(None, ge=1)
    category: str = Field("simple_python", pattern=r"^[a-z0-9_]+$")
    collection: Literal["executable", "glaive", "sgd"] = "executable"
    distractors: int = Field(2, ge=0, le=50)
    skip_invalid: bool = False
    limit: int | None = Field(None, ge=1)
    ids: list[str] | None = Field(None, min_length=1, description="keep only items whose id matches one of these "
                                                                  "shell patterns (a slice of a bigger suite)")

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> DatasetSpec:
        if self.kind in ("jsonl", "clinc150") and self.path is None:
            raise ValueError(f"a {self.kind} dataset needs a path")
        for name in sorted(self.model_fields_set & set(_DATASET_FIELDS)):
            if self.kind not in _DATASET_FIELDS[name]:
                raise ValueError(f"dataset.{name} applies to kind {' or '.join(sorted(_DATASET_FIELDS[name]))}, "
                                 f"not {self.kind}")
        return self

    def load(self, seed: int = 0) -> list[EvalItem]:
        """The items; ``seed`` picks NESTFUL's distractor tools (same seed, same tools)."""
        if self.kind == "clinc150":
            assert self.path is not None
            return load_clinc150(self.path, self.split, self.per_label, self.limit)
        if self.kind == "bfcl":
            from tierflow.evals.bfcl import load_bfcl

            return load_bfcl(self.category, self.path, self.limit)
        if self.kind == "nestful":
            from tierflow.evals.nestful import load_nestful

            skipped: list[DatasetError] = []
            items = load_nestful(self.collection, self.path, self.limit, self.distractors, seed,
                                 self.skip_invalid, skipped)
            for error in skipped:
                log.warning("skipped a bad NESTFUL row: %s", error)
            return items
        assert self.path is not None
        if not self.ids:
            return load_jsonl(self.path, self.limit)
        items = [i for i in load_jsonl(self.path) if any(fnmatch.fnmatchcase(i.id, p) for p in self.ids)]
        unmatched = [p for p in self.ids if not any(fnmatch.fnmatchcase(i.id, p) for i in items)]
        if unmatched:
            raise DatasetError(f"dataset.ids {unmatched} match no item of {self.path}")
        return items[: self.limit] if self.limit else items


TaskKind = Literal["intent", "run", "function_call", "plan"]
# Which dataset kinds each task can score; tier-driven tasks read the tiers from ``config``.
TASK_DATASETS: dict[str, set[str]] = {"intent": {"jsonl", "clinc150"}, "run": {"jsonl"},
                                      "function_call": {"bfcl"}, "plan": {"nestful"}}
_TASK_FIELDS: dict[str, set[str]] = {"model": {"intent"}, "config": {"run", "function_call", "plan"},
                                     "max_tokens": {"function_call", "plan"}, "max_calls": {"plan"}}


class TaskSpec(BaseModel):
    """What runs on each item: the intent classifier (``model``: a trained folder, default the demo), a whole
    run, one BFCL function call, or a NESTFUL plan; the last three on each matrix cell's tier.

    ``max_tokens`` overrides the tier's output limit for function_call/plan; ``max_calls`` caps a plan's length.
    """

    model_config = ConfigDict(extra="forbid")
    kind: TaskKind
    model: Path | None = None
    config: Path | None = Field(None, description="settings TOML (tiers, MCP servers); {python} is this interpreter")
    max_tokens: int | None = Field(None, ge=1, le=65_536)
    max_calls: int = Field(8, ge=1, le=32)

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> TaskSpec:
        for name in sorted(self.model_fields_set & set(_TASK_FIELDS)):
            if getattr(self, name) is not None and self.kind not in _TASK_FIELDS[name]:
                raise ValueError(f"task.{name} applies to kind {' or '.join(sorted(_TASK_FIELDS[name]))}, "
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
        allowed = TASK_DATASETS[self.task.kind]
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
        raise SuiteError(f"{path}: {where}: {first['msg']}") from None
    base = path.resolve().parent
    if suite.dataset.path is not None:
        suite.dataset.path = base / Path(os.path.expandvars(suite.dataset.path))
    if suite.task.model is not None:
        suite.task.model = base / Path(os.path.expandvars(suite.task.model))
    if suite.task.config is not None:
        suite.task.config = base / Path(os.path.expandvars(suite.task.config))
    suite.resolved_scorers()  # unknown scorers fail here, before any item runs
    return suite
