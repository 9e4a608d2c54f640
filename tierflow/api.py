"""The public API: ``tierflow.load()`` reads the settings and builds the configured pieces once, on first use.

>>> tf = tierflow.load()                       # ./tierflow.toml, $TIERFLOW_CONFIG or defaults, plus TIERFLOW_*
>>> tf.chat_model("worker").invoke("hi")       # a LangChain chat model routed over the tiers
>>> tf.run("What is 17 times 23?").answer      # the orchestrator, checkpointed
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, cast

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph

from tierflow.agents.intent import IntentResult
from tierflow.agents.worker import WorkerAgent
from tierflow.graphs.events import EventSink
from tierflow.graphs.loader import GraphContext
from tierflow.graphs.orchestrator import OrchestratorDeps, build_orchestrator
from tierflow.graphs.patterns.common import TeamError
from tierflow.graphs.runner import RunResult, make_checkpointer, resume_run, run_request
from tierflow.graphs.state import RunState
from tierflow.graphs.team import Team
from tierflow.memory.store import MemoryStore
from tierflow.runtimes.errors import UnknownTierError
from tierflow.runtimes.router import TierRouter
from tierflow.settings import AGENT_KINDS, Settings, load_settings
from tierflow.tools.mcp.config import McpServerConfig
from tierflow.tools.registry import ToolRegistry


class State(RunState, total=False):
    """The state the prebuilt nodes read and write (see README, *Python API*); subclass it to add your own keys."""

    decisions: Annotated[list[dict[str, Any]], operator.add]  # the hierarchical supervisors' decisions


class _LazyClassifier:
    """The configured intent model, loaded on the first ``classify`` (a graph that never classifies never loads it)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model: Any = None

    def classify(self, text: str) -> IntentResult:
        return self.loaded().classify(text)

    def loaded(self) -> Any:
        """The model itself, loaded now if it was not (a learned router reads its embeddings and labels)."""
        if self.model is None:
            from tierflow.app import load_classifier

            self.model = load_classifier(self.settings)
        return self.model


class Tierflow:
    """The settings and what they configure: routed chat models, tools, agents, memory, checkpoints, teams.

    Everything is built on first use and shared; ``close()`` (or ``with``) stops MCP servers and closes stores.
    """

    def __init__(self, settings: Settings, *, deps: OrchestratorDeps | None = None,
                 checkpointer: BaseCheckpointSaver | None = None) -> None:
        self.settings = settings
        if deps is not None:
            self.__dict__["deps"] = deps
        if checkpointer is not None:
            self.__dict__["checkpointer"] = checkpointer
        self._clients: list[Any] = []
        self._nodes: dict[str | None, dict[str, Any]] = {}

    @cached_property
    def deps(self) -> OrchestratorDeps:
        """The configured agents (classifier, planner, worker, synthesizer) and memory: what the orchestrator runs."""
        from tierflow.app import build_deps

        return build_deps(self.settings, classifier=_LazyClassifier(self.settings))

    @cached_property
    def checkpointer(self) -> BaseCheckpointSaver:
        """The configured checkpointer (``settings.checkpointer``: SQLite under ``home`` by default)."""
        return make_checkpointer(self.settings.checkpointer, self.settings.home)

    @property
    def memory(self) -> MemoryStore | None:
        """The configured memory (embedded SQLite by default), or None when ``[memory] enabled = false``."""
        return cast("MemoryStore | None", self.deps.memory)

    @property
    def worker(self) -> WorkerAgent:
        """The configured worker agent: every role, the native and MCP tools of the settings."""
        return self.deps.worker

    @property
    def tools(self) -> ToolRegistry:
        """The tools the configured worker may call (native tools plus the settings' MCP servers)."""
        return self.deps.worker.tools

    def chat_model(self, name: str = "worker") -> BaseChatModel:
        """A LangChain chat model routed over the tiers: an agent kind's (planner, worker, synthesizer) or one
        preferring tier ``name``; privacy, budgets and circuits still apply."""
        models: dict[str, BaseChatModel] = {"planner": self.deps.decomposer.model, "worker": self.deps.worker.model,
                                            "synthesizer": self.deps.synthesizer.model}
        if name in models:
            return models[name]
        router = models["worker"]
        if isinstance(router, TierRouter) and name in router.registry.names:
            return router.for_agent("worker", name)
        tiers = router.registry.names if isinstance(router, TierRouter) else []
        raise UnknownTierError(name, [*AGENT_KINDS, *tiers], who="chat_model (an agent kind or a tier)")

    def mcp_tools(self, servers: Mapping[str, McpServerConfig | Mapping[str, Any]]) -> list[BaseTool]:
        """The tools of these MCP servers (declared like ``[mcp_servers.NAME]``); they stop on ``close()``."""
        from tierflow.tools.mcp.client import McpClient

        client = McpClient({name: McpServerConfig.model_validate(cfg) for name, cfg in servers.items()}).start()
        self._clients.append(client)
        return client.tools()

    def team(self, pattern: str, members: Any = None, *, tools: Iterable[BaseTool] | None = None,
             **options: Any) -> Team:
        """A team of ``pattern`` over ``members`` (default: the configured worker; with ``tools``, a worker that has
        only those tools); ``options`` go to the pattern (``max_concurrency``, ``supervisor``, ``ask``, ...)."""
        if members is not None and tools is not None:
            raise TeamError("give a team members or tools, not both")
        if members is None:
            members = self.worker if tools is None else WorkerAgent(
                self.worker.model, ToolRegistry(tools), self.worker.roles, max_steps=self.worker.max_steps)
        return Team(pattern, members, **options)

    def orchestrator(self, *, pattern: str | None = None, confirm_plan: bool = False,
                     checkpointer: BaseCheckpointSaver | bool = True) -> CompiledStateGraph:
        """The orchestrator graph (classify → recall → plan → execute → synthesize → remember); ``checkpointer``:
        True the configured one, False none (a server brings its own), or a saver."""
        deps = dataclasses.replace(self.deps, confirm_plan=True) if confirm_plan else self.deps
        return build_orchestrator(deps, self._saver(checkpointer), forced_pattern=pattern)

    def compile(self, graph: StateGraph, *, checkpointer: BaseCheckpointSaver | bool = True) -> CompiledStateGraph:
        """Compile your graph with the configured checkpointer (True), none (False) or ``checkpointer``."""
        return graph.compile(checkpointer=self._saver(checkpointer))

    def run(self, request: str, *, graph: CompiledStateGraph | StateGraph | None = None, pattern: str | None = None,
            confirm_plan: bool = False, run_id: str | None = None, user_id: str = "local", private: bool = False,
            callbacks: Sequence[BaseCallbackHandler] = (), on_event: EventSink | None = None) -> RunResult:
        """Run ``request`` through ``graph`` (default: the orchestrator); a StateGraph is compiled with checkpoints."""
        compiled = self._compiled(graph, pattern, confirm_plan)
        return run_request(compiled, request, run_id=run_id, user_id=user_id, private=private, callbacks=callbacks,
                           on_event=on_event)

    def resume(self, run_id: str, *, answer: str | None = None, graph: CompiledStateGraph | StateGraph | None = None,
               pattern: str | None = None, callbacks: Sequence[BaseCallbackHandler] = (),
               on_event: EventSink | None = None) -> RunResult:
        """Continue run ``run_id`` of ``graph`` (default: the orchestrator): answer its question, or finish it."""
        compiled = self._compiled(graph, pattern, False)
        if graph is None and "confirm_plan" in compiled.get_state({"configurable": {"thread_id": run_id}}).next:
            compiled = self._compiled(None, pattern, True)  # a run paused for plan approval asks again, then resumes
        return resume_run(compiled, run_id, answer=answer, callbacks=callbacks, on_event=on_event)

    def close(self) -> None:
        """Stop the MCP servers started here and close the memory store and checkpoint database."""
        for client in self._clients:
            client.close()
        self._clients.clear()
        deps = self.__dict__.get("deps")
        close = getattr(deps.memory, "close", None) if deps is not None else None
        if callable(close):
            close()
        conn = getattr(self.__dict__.get("checkpointer"), "conn", None)
        if conn is not None and hasattr(conn, "close"):
            conn.close()

    def __enter__(self) -> Tierflow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _saver(self, checkpointer: BaseCheckpointSaver | bool) -> BaseCheckpointSaver | None:
        if checkpointer is True:
            return self.checkpointer
        return None if checkpointer is False else checkpointer

    def _compiled(self, graph: CompiledStateGraph | StateGraph | None, pattern: str | None,
                  confirm_plan: bool) -> CompiledStateGraph:
        if graph is None:
            return self.orchestrator(pattern=pattern, confirm_plan=confirm_plan)
        if pattern is not None or confirm_plan:
            raise TeamError("pattern and confirm_plan apply to the orchestrator, not to your graph")
        return self.compile(graph) if isinstance(graph, StateGraph) else graph


def load(config: Tierflow | GraphContext | Settings | str | Path | None = None, **overrides: Any) -> Tierflow:
    """Settings and the pieces they configure, built once on first use.

    ``config``: a settings TOML file, a ``Settings``, or None (./tierflow.toml, $TIERFLOW_CONFIG, defaults; always
    under TIERFLOW_* variables); ``overrides`` set fields (``load(default_tier="tiny")``). A ``Tierflow`` is returned
    as it is, and the ``GraphContext`` that ``tierflow run --graph`` passes keeps the CLI's agents.
    """
    if isinstance(config, Tierflow | GraphContext) and overrides:
        raise TypeError(f"load() takes no overrides with a {type(config).__name__}: its pieces are built already")
    if isinstance(config, Tierflow):
        return config
    if isinstance(config, GraphContext):
        return Tierflow(load_settings(), deps=config.deps, checkpointer=config.checkpointer)
    if isinstance(config, Settings):
        return Tierflow(Settings(**{**dict(config), **overrides}) if overrides else config)
    return Tierflow(load_settings(Path(config) if config is not None else None, **overrides))
