"""The four collaboration patterns, each a compiled LangGraph subgraph over :class:`tierflow.graphs.state.TeamState`."""

from __future__ import annotations

from collections.abc import Callable

from langgraph.graph.state import CompiledStateGraph

from tierflow.agents.worker import WorkerAgent
from tierflow.graphs.patterns.hierarchical import build_hierarchical
from tierflow.graphs.patterns.parallel import build_parallel
from tierflow.graphs.patterns.peer import build_peer
from tierflow.graphs.patterns.sequential import build_sequential

# What the orchestrator's ``execute`` node may run: pattern name -> builder over the configured worker.
PATTERN_BUILDERS: dict[str, Callable[[WorkerAgent], CompiledStateGraph]] = {
    "sequential": build_sequential,
    "parallel": build_parallel,
    "hierarchical": build_hierarchical,
    "peer": build_peer,
}

__all__ = ["PATTERN_BUILDERS", "build_hierarchical", "build_parallel", "build_peer", "build_sequential"]
