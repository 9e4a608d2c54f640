"""Benchmarks shipped with tierflow; each module's ``register`` adds its dataset kind, task kind and scorers.

The eval core reaches them only through :mod:`tierflow.evals.registry`, which imports this package on its first
lookup and calls :func:`register`; a new benchmark is a module here plus one entry in ``BENCHMARKS``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tierflow.evals.benchmarks import bfcl, nestful

if TYPE_CHECKING:
    from tierflow.evals.registry import Registry

BENCHMARKS = (bfcl, nestful)


def register(registry: Registry) -> None:
    """Register every shipped benchmark with ``registry``."""
    for benchmark in BENCHMARKS:
        benchmark.register(registry)
