"""Load a user's graph factory from ``package.module:function`` and build it."""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph

from tierflow.graphs.orchestrator import OrchestratorDeps
from tierflow.runtimes.errors import TierflowError


class GraphLoadError(TierflowError, ValueError):
    """A ``--graph`` spec that is malformed, does not import, or does not build a graph."""


@dataclass
class GraphContext:
    """What a user's ``build_graph(ctx)`` receives: the configured agents and the checkpointer."""

    deps: OrchestratorDeps
    checkpointer: BaseCheckpointSaver | None = None


def load_graph(spec: str, ctx: GraphContext) -> CompiledStateGraph:
    """Import ``module:function``, call it (with ``ctx`` if it takes an argument), compile if needed.

    The graph's state must accept ``{"request": str}`` and should produce ``answer``.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise GraphLoadError(f"--graph {spec!r} must look like package.module:function")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure of user code is reported, not dumped
        raise GraphLoadError(f"cannot import {module_name!r} for --graph: {type(exc).__name__}: {exc}") from exc
    factory: Any = module
    for part in attr.split("."):
        if not hasattr(factory, part):
            raise GraphLoadError(f"module {module_name!r} has no attribute {attr!r}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise GraphLoadError(f"{spec!r} is not callable")
    try:
        takes_ctx = bool(inspect.signature(factory).parameters)
        graph = factory(ctx) if takes_ctx else factory()
    except GraphLoadError:
        raise
    except Exception as exc:
        raise GraphLoadError(f"{spec} failed while building the graph: {type(exc).__name__}: {exc}") from exc
    if isinstance(graph, StateGraph):
        return graph.compile(checkpointer=ctx.checkpointer)
    if isinstance(graph, CompiledStateGraph):
        if ctx.checkpointer is not None and graph.checkpointer is None:
            graph.checkpointer = ctx.checkpointer
        return graph
    raise GraphLoadError(f"{spec} returned {type(graph).__name__}, expected a StateGraph or compiled graph")
