"""Wiring: settings → tiers, tools, agents → the orchestrator graph (or a user's graph)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from langgraph.graph.state import CompiledStateGraph

from tierflow.agents.decomposer import TaskDecomposer
from tierflow.agents.intent import IntentClassifier
from tierflow.agents.synthesizer import Synthesizer
from tierflow.agents.worker import WorkerAgent
from tierflow.graphs.loader import GraphContext, load_graph
from tierflow.graphs.orchestrator import OrchestratorDeps, build_orchestrator
from tierflow.graphs.runner import make_checkpointer
from tierflow.memory.config import open_memory
from tierflow.runtimes.registry import TierRegistry
from tierflow.runtimes.router import TierRouter
from tierflow.settings import AGENT_KINDS, AgentKind, Settings
from tierflow.tools.native import native_tools
from tierflow.tools.registry import ToolRegistry

if TYPE_CHECKING:
    from tierflow.agents.route_features import LearnedRouting


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
    registry = registry or settings.registry()
    return TierRouter(registry=registry, policy=settings.routing)


def agent_routers(settings: Settings, router: TierRouter) -> dict[AgentKind, TierRouter]:
    """Each agent kind's view of ``router``, preferring the kind's own tier; ``Settings.tier_for`` names its head."""
    return {kind: router.for_agent(kind, settings.agent_tiers.get(kind)) for kind in AGENT_KINDS}


def build_deps(settings: Settings, classifier: IntentClassifier | None = None,
               registry: TierRegistry | None = None, router: TierRouter | None = None) -> OrchestratorDeps:
    """Agents whose model calls all go through the tier router; an agent kind may prefer a tier."""
    routers = agent_routers(settings, router or build_router(settings, registry))
    classifier = classifier or load_classifier(settings)
    learned = load_learned_routing(settings, classifier, routers["worker"])  # a bad folder fails before servers start
    tools = ToolRegistry(native_tools())
    for tool in mcp_tools(settings):  # tools of the MCP servers declared in settings, same registry
        tools.register(tool)
    worker = WorkerAgent(routers["worker"], tools, max_steps=settings.worker_max_steps)
    if settings.a2a_agents:  # remote A2A agents join the roster as roles, under the worker router's rules
        from tierflow.agents.remote import RosterWorker

        worker = RosterWorker(worker, settings.a2a_agents, routers["worker"])
    return OrchestratorDeps(
        classifier=classifier,
        decomposer=TaskDecomposer(routers["planner"], tools.names, roles=worker.roles,
                                  max_subtasks=settings.max_subtasks),
        worker=worker,
        synthesizer=Synthesizer(routers["synthesizer"]),
        out_of_scope=settings.out_of_scope,
        min_confidence=settings.min_confidence,
        memory=open_memory(settings.memory, settings.memory_path),
        recall_k=settings.memory.recall_k,
        learned_routing=learned,
    )


def load_learned_routing(settings: Settings, classifier: IntentClassifier, router: TierRouter) -> LearnedRouting | None:
    """The learned router of ``routing.learned`` over ``classifier``'s embeddings, or None when none is set.

    A missing or unusable folder fails here, at start-up, with LearnedRouterError naming it. A classifier without
    embeddings (an injected one) is paired with the configured intent model for the features; a lazily loaded one
    is loaded now, so its ``classify`` and the router share one embedding cache.
    """
    if not settings.routing.learned:
        return None
    from tierflow.agents.route_features import EmbeddingClassifier, LearnedRouting

    loaded = getattr(classifier, "loaded", None)  # the API's lazy classifier: the model behind it
    source = loaded() if callable(loaded) else classifier
    if not isinstance(source, EmbeddingClassifier):
        source = load_classifier(settings)
    return LearnedRouting.load(settings.routing.learned, source, router, settings.routing.min_quality)


def build_graph(settings: Settings, deps: OrchestratorDeps, graph_spec: str | None = None,
                pattern: str | None = None) -> CompiledStateGraph:
    """The orchestrator with the configured checkpoints (SQLite by default), or the user's ``module:function`` graph."""
    checkpointer = make_checkpointer(settings.checkpointer, settings.home)
    if graph_spec:
        return load_graph(graph_spec, GraphContext(deps=deps, checkpointer=checkpointer))
    return build_orchestrator(deps, checkpointer, forced_pattern=pattern)
