"""The four collaboration patterns, each a compiled LangGraph subgraph over :class:`graphs.state.TeamState`."""

from __future__ import annotations

from collections.abc import Callable

from langgraph.graph.state import CompiledStateGraph

from agents.worker import WorkerAgent
from graphs.patterns.hierarchical import build_hierarchical
from graphs.patterns.parallel import build_parallel
from graphs.patterns.peer import build_peer
from graphs.patterns.sequential import build_sequential

# What the orchestrator's ``execute`` node may run: pattern name -> builder over the configured worker.
PATTERN_BUILDERS: dict[str, Callable[[WorkerAgent], CompiledStateGraph]] = {
    "sequential": build_sequential,
    "parallel": build_parallel,
    "hierarchical": build_hierarchical,
    "peer": build_peer,
}

__all__ = ["PATTERN_BUILDERS", "build_hierarchical", "build_parallel", "build_peer", "build_sequential"]
