"""What a suite's names stand for: dataset kinds, task kinds and scorers, each mapped to its implementation.

The core registers its own (``jsonl``/``clinc150``, ``intent``/``run``, the answer scorers) when its modules load;
benchmarks register theirs through ``tierflow.evals.benchmarks.register``, which the registry calls on the first
lookup. Benchmark modules never import this module at run time, so no import leads back from them to the core.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tierflow.evals.errors import SuiteError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from tierflow.evals.datasets import EvalItem
    from tierflow.evals.suite import Cell, DatasetSpec, TaskSpec
    from tierflow.evals.tasks import Task

BENCHMARKS = "tierflow.evals.benchmarks"  # the package whose register(registry) adds every benchmark

Output = Mapping[str, Any]
ScoreFn = Callable[["EvalItem", Output], dict[str, float]]
Costs = Mapping[str, tuple[float, float]]
ModelFor = Callable[["Cell"], "BaseChatModel"]


@dataclass(frozen=True)
class Scorer:
    """A named metric function; ``quality`` metrics decide pass/fail, the others (latency, tokens) only report."""

    name: str
    fn: ScoreFn
    quality: bool = True
    # Names of the metrics a report-only scorer emits, so gates never read them as higher-is-better.
    metrics: tuple[str, ...] = ()

    def __call__(self, item: EvalItem, output: Output) -> dict[str, float]:
        return self.fn(item, output)


@dataclass(frozen=True)
class DatasetEntry:
    """A ``dataset.kind``: how it loads ``(spec, seed)``, the spec fields only it reads, whether it needs a path.

    ``check(spec)``, when given, runs as the suite loads and raises ValueError for a field value the kind cannot
    use (an unknown BFCL category), so a bad suite fails before any item runs.
    """

    name: str
    load: Callable[[DatasetSpec, int], list[EvalItem]]
    fields: frozenset[str] = field(default_factory=frozenset)
    needs_path: bool = False
    check: Callable[[DatasetSpec], None] | None = None


@dataclass(frozen=True)
class TaskEntry:
    """A ``task.kind``: the dataset kinds it can score, the spec fields it reads, and how a tier-driven one is built.

    ``build(spec, models, costs)`` gets the chat model of each cell and the tiers' prices; None for the kinds the
    CLI wires itself (``intent``, ``run``: they need a classifier or a whole graph rather than a model).
    """

    name: str
    datasets: frozenset[str]
    fields: frozenset[str] = field(default_factory=frozenset)
    build: Callable[[TaskSpec, ModelFor, Costs], Task] | None = None


class Registry:
    """Dataset kinds, task kinds and scorers by name; lookups load the benchmarks package once, on first use.

    The core's own entries are in :data:`REGISTRY` once ``tierflow.evals.suite`` (which imports the scorers) is.
    """

    def __init__(self, benchmarks: str | None = BENCHMARKS) -> None:
        self._benchmarks = benchmarks
        self._datasets: dict[str, DatasetEntry] = {}
        self._tasks: dict[str, TaskEntry] = {}
        self._scorers: dict[str, Scorer] = {}
        self._lock = threading.RLock()

    def add_dataset(self, name: str, load: Callable[[DatasetSpec, int], list[EvalItem]], *,
                    fields: Iterable[str] = (), needs_path: bool = False,
                    check: Callable[[DatasetSpec], None] | None = None) -> None:
        """Register ``dataset.kind: name``; plain arguments, so a benchmark needs no import of this module."""
        self._add(self._datasets, DatasetEntry(name, load, frozenset(fields), needs_path, check), "dataset kind")

    def add_task(self, name: str, datasets: Iterable[str], *, fields: Iterable[str] = (),
                 build: Callable[[TaskSpec, ModelFor, Costs], Task] | None = None) -> None:
        """Register ``task.kind: name``, scoring items of the given dataset kinds."""
        self._add(self._tasks, TaskEntry(name, frozenset(datasets), frozenset(fields), build), "task kind")

    def add_scorer(self, name: str, fn: ScoreFn, *, quality: bool = True, metrics: Iterable[str] = ()) -> None:
        """Register a scorer a suite can name; ``metrics`` lists what a report-only (not quality) one emits."""
        self._add(self._scorers, Scorer(name, fn, quality, tuple(metrics)), "scorer")

    def _add(self, table: dict[str, Any], entry: Any, what: str) -> None:
        with self._lock:
            if table.get(entry.name, entry) != entry:
                raise ValueError(f"{what} {entry.name!r} is registered twice")
            table[entry.name] = entry

    def _loaded(self) -> Registry:
        """Self, after the benchmarks package has registered its kinds (imported once, under a lock)."""
        with self._lock:
            if self._benchmarks is not None:
                package, self._benchmarks = self._benchmarks, None
                try:
                    importlib.import_module(package).register(self)
                except BaseException:
                    self._benchmarks = package  # a failed import is retried, and reported, by the next lookup
                    raise
        return self

    def datasets(self) -> dict[str, DatasetEntry]:
        """Every registered dataset kind, in registration order."""
        return dict(self._loaded()._datasets)

    def tasks(self) -> dict[str, TaskEntry]:
        """Every registered task kind, in registration order."""
        return dict(self._loaded()._tasks)

    def scorers(self) -> dict[str, Scorer]:
        """Every registered scorer, in registration order (the order an unknown-scorer error lists them in)."""
        return dict(self._loaded()._scorers)

    def dataset(self, name: str) -> DatasetEntry:
        """The dataset kind ``name``; SuiteError naming the known ones when none is registered."""
        return self._get(self.datasets(), name, "dataset kind")

    def task(self, name: str) -> TaskEntry:
        """The task kind ``name``; SuiteError naming the known ones when none is registered."""
        return self._get(self.tasks(), name, "task kind")

    @staticmethod
    def _get(table: Mapping[str, Any], name: str, what: str) -> Any:
        if name not in table:
            raise SuiteError(f"no implementation registered for {what} {name!r}; known: {', '.join(table)}")
        return table[name]


REGISTRY = Registry()
