"""Wiring: settings → tiers, tools, agents → the orchestrator graph (or a user's graph)."""

from __future__ import annotations

from collections.abc import Iterable

from langgraph.graph.state import CompiledStateGraph

from tierflow.agents.decomposer import TaskDecomposer
from tierflow.agents.intent import IntentClassifier
from tierflow.agents.synthesizer import Synthesizer
from tierflow.agents.worker import WorkerAgent
from tierflow.graphs.loader import GraphContext, load_graph
from tierflow.graphs.orchestrator import OrchestratorDeps, build_orchestrator
from tierflow.graphs.runner import make_checkpointer
from tierflow.memory.config import open_memory
from tierflow.runtimes.errors import TierUnavailableError
from tierflow.runtimes.registry import TierRegistry
from tierflow.runtimes.router import TierRouter
from tierflow.settings import AGENT_KINDS, Settings
from tierflow.tools.native import native_tools
from tierflow.tools.registry import ToolRegistry


def load_classifier(settings: Settings) -> IntentClassifier:
    """The trained intent model named in settings, or the demo model shipped with tierflow."""
    from tierflow.agents.intents import load_default_classifier
    from tierflow.agents.intents.model import TrainedIntentClassifier

    if settings.intent_model is not None:
        return TrainedIntentClassifier.load(settings.intent_model, precision=settings.intent_precision)
    return load_default_classifier(settings.intent_precision)


def mcp_tools(settings: Settings) -> list:
    """Tools of the MCP servers in ``settings.mcp_servers``; their sessions stay open until process exit."""
    if not settings.mcp_servers:
        return []
    from tierflow.tools.mcp.client import McpClient

    return McpClient(settings.mcp_servers).start().tools()


def build_router(settings: Settings, registry: TierRegistry | None = None) -> TierRouter:
    """The router every agent's model calls go through, with the routing policy from settings."""
    registry = registry or TierRegistry(settings.tiers, settings.default_tier)
    return TierRouter(registry=registry, policy=settings.routing)


def build_deps(settings: Settings, classifier: IntentClassifier | None = None,
               registry: TierRegistry | None = None, router: TierRouter | None = None) -> OrchestratorDeps:
    """Agents whose model calls all go through the tier router; an agent kind may prefer a tier."""
    router = router or build_router(settings, registry)
    tools = ToolRegistry(native_tools())
    for tool in mcp_tools(settings):  # tools of the MCP servers declared in settings, same registry
        tools.register(tool)
    return OrchestratorDeps(
        classifier=classifier or load_classifier(settings),
        decomposer=TaskDecomposer(router.for_agent("planner", settings.agent_tiers.get("planner")), tools.names,
                                  max_subtasks=settings.max_subtasks),
        worker=WorkerAgent(router.for_agent("worker", settings.agent_tiers.get("worker")), tools,
                           max_steps=settings.worker_max_steps),
        synthesizer=Synthesizer(router.for_agent("synthesizer", settings.agent_tiers.get("synthesizer"))),
        out_of_scope=settings.out_of_scope,
        min_confidence=settings.min_confidence,
        memory=open_memory(settings.memory, settings.memory_path),
        recall_k=settings.memory.recall_k,
    )


def check_fits(settings: Settings, registry: TierRegistry, request: str) -> None:
    """Refuse a request that cannot fit the context of a tier this run's agents use, before any work."""
    registry.ensure_fits(request, run_tiers(settings))


def run_tiers(settings: Settings) -> set[str]:
    """The tiers a run's agents try first: their own tier, or the head of ``routing.order``."""
    return {settings.tier_for(kind) for kind in AGENT_KINDS}


def check_tiers(registry: TierRegistry, names: Iterable[str | None] | None = None) -> None:
    """Fail at start, not mid-run, when a tier cannot load or be reached (what doctor reports).

    ``names`` limits the check to those tiers (None in it: the default tier); unknown names raise
    UnknownTierError. Without it every declared tier is checked.
    """
    wanted = registry.names if names is None else list(dict.fromkeys(n or registry.default_tier for n in names))
    for name in wanted:
        registry.config(name)  # an unknown name raises UnknownTierError, naming the declared tiers
    broken = {h.tier: h.detail for h in (registry.check(name) for name in wanted) if not h.usable}
    if broken:
        raise TierUnavailableError(", ".join(sorted(broken)), "; ".join(f"{t}: {d}" for t, d in broken.items())
                                   + " (see `tierflow doctor`)")


def build_graph(settings: Settings, deps: OrchestratorDeps, graph_spec: str | None = None,
                pattern: str | None = None) -> CompiledStateGraph:
    """The orchestrator with the configured checkpoints (SQLite by default), or the user's ``module:function`` graph."""
    checkpointer = make_checkpointer(settings.checkpointer, settings.home)
    if graph_spec:
        return load_graph(graph_spec, GraphContext(deps=deps, checkpointer=checkpointer))
    return build_orchestrator(deps, checkpointer, forced_pattern=pattern)
