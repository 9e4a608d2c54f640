"""Langfuse's LangChain/LangGraph CallbackHandler with what tierflow adds to every trace.

On top of the SDK's graph/node spans, generations, tool and retriever observations it adds:
session (= the run's thread id) and user from the run's config metadata, tags for intent and
pattern as soon as the graph knows them, tier/model/route metadata and cost on each generation, and
tierflow's node names mapped to observation types (``recall`` is a retriever, agents are agents).

With a :class:`~tierflow.tracing.masking.Masker` it also keeps private runs private: every callback of a run whose
config metadata has ``tierflow_private`` (or whose input state is marked ``{"private": true}``), and of
everything under it, runs inside ``Masker.private_scope()``, so the SDK's mask replaces that observation's
input, output and metadata whole. Trace-level metadata and error messages, which the SDK exports without
calling its mask, are masked here.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from uuid import UUID

from langchain_core.outputs import LLMResult
from langfuse._client.attributes import LangfuseOtelSpanAttributes
from langfuse.langchain import CallbackHandler

from tierflow.runtimes.context import PRIVATE_KEY, RunContext, route_of
from tierflow.runtimes.cost import call_cost
from tierflow.tracing.masking import Masker

ROUTE_KEYS = ("tier", "rule", "fallback_from", "attempt")
START_EVENTS = ("on_chain_start", "on_chat_model_start", "on_llm_start", "on_tool_start", "on_retriever_start")
END_EVENTS = ("on_chain_end", "on_chain_error", "on_llm_end", "on_llm_error", "on_tool_end", "on_tool_error",
              "on_retriever_end", "on_retriever_error")
OTHER_EVENTS = ("on_llm_new_token", "on_agent_action", "on_agent_finish")


class TierflowCallbackHandler(CallbackHandler):
    """One handler per run; pass it in ``callbacks`` (``tierflow.graphs.runner.run_request(callbacks=[...])``).

    ``costs`` maps a tier name to its price per 1k input and output tokens; ``node_types`` maps graph
    node names to Langfuse observation types; ``masker`` (the Langfuse client's mask) masks what the SDK
    exports unmasked and is told which observations belong to a private run.
    """

    def __init__(self, *, public_key: str, tags: Iterable[str] = (), release: str | None = None,
                 costs: Mapping[str, tuple[float, float]] | None = None,
                 node_types: Mapping[str, str] | None = None, trace_context: Any = None,
                 masker: Masker | None = None) -> None:
        super().__init__(public_key=public_key, trace_context=trace_context)
        self.masker = masker
        self._private: dict[UUID, UUID] = {}  # run id of a private run -> its root run id
        self.tags: list[str] = list(dict.fromkeys(tags))
        self.release = release
        self.costs = dict(costs or {})
        self.node_types = dict(node_types or {})
        self.trace_ids: list[str] = []
        self._root_runs: set[UUID] = set()
        self._tiers: dict[UUID, str] = {}
        self._started: dict[UUID, float] = {}  # when each generation started: local tiers are priced by time
        self._lock = threading.Lock()

    # -- the run: session, user, tags, release --------------------------------------------------
    def on_chain_start(self, serialized: dict[str, Any] | None, inputs: Any, *, run_id: UUID,
                       parent_run_id: UUID | None = None, tags: list[str] | None = None,
                       metadata: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        if parent_run_id is None:
            metadata = self._trace_metadata(metadata)
        super().on_chain_start(serialized, inputs, run_id=run_id, parent_run_id=parent_run_id, tags=tags,
                               metadata=metadata, **kwargs)
        if parent_run_id is None and run_id in self._runs:
            with self._lock:
                self._root_runs.add(run_id)
                self.trace_ids.append(self._runs[run_id].trace_id)

    def _trace_metadata(self, metadata: dict[str, Any] | None) -> dict[str, Any]:
        meta = dict(metadata or {})
        context = RunContext.from_metadata(meta)
        run_id = context.run_id or meta.get("thread_id")
        if run_id and "langfuse_session_id" not in meta:
            meta["langfuse_session_id"] = str(run_id)
        if context.user_id and "langfuse_user_id" not in meta:
            meta["langfuse_user_id"] = context.user_id
        meta["langfuse_tags"] = sorted(set(meta.get("langfuse_tags") or []) | set(self.tags))
        if self.release:
            meta.setdefault("tierflow_version", self.release)
        return meta

    def on_chain_end(self, outputs: dict[str, Any], *, run_id: UUID, parent_run_id: UUID | None = None,
                     **kwargs: Any) -> Any:
        if isinstance(outputs, Mapping):
            self._learn_tags(outputs)
        if run_id in self._root_runs:
            self._tag_root(run_id)
        return super().on_chain_end(outputs, run_id=run_id, parent_run_id=parent_run_id, **kwargs)

    def _learn_tags(self, outputs: Mapping[str, Any]) -> None:
        intent = outputs.get("intent")
        found = []
        if isinstance(intent, Mapping) and intent.get("label"):
            found.append(f"intent:{intent['label']}")
        pattern = outputs.get("pattern")
        if isinstance(pattern, str) and pattern:
            found.append(f"pattern:{pattern}")
        if found:
            with self._lock:
                self.tags = list(dict.fromkeys([*self.tags, *found]))
                roots = list(self._root_runs)
            for root in roots:
                self._tag_root(root)

    def _tag_root(self, run_id: UUID) -> None:
        root = self._runs.get(run_id)
        if root is not None and root._otel_span.is_recording():
            current = root._otel_span.attributes.get(LangfuseOtelSpanAttributes.TRACE_TAGS) or ()  # type: ignore[attr-defined]
            root._otel_span.set_attribute(LangfuseOtelSpanAttributes.TRACE_TAGS,
                                          sorted(set(current) | set(self.tags)))

    def _parse_langfuse_trace_attributes(self, *, metadata: dict[str, Any] | None,
                                         tags: list[str] | None) -> dict[str, Any]:
        # The SDK propagates the root's metadata to every span as trace metadata without its mask.
        attributes = super()._parse_langfuse_trace_attributes(metadata=metadata, tags=tags)
        if self.masker is not None and attributes.get("metadata"):
            masked = self.masker(data=attributes["metadata"])
            attributes["metadata"] = masked if isinstance(masked, dict) else {}
        return attributes

    def _get_error_level_and_status_message(self, error: BaseException) -> Any:
        # The status message is the error's text, exported without the SDK's mask.
        level, message = super()._get_error_level_and_status_message(error)
        if self.masker is not None and self.masker.settings.enabled:
            masked = self.masker(data=message)
            message = f"{type(error).__name__}: {masked}" if self.masker.in_private_scope() else str(masked)
        return level, message

    # -- private runs: every callback of one runs in the masker's private scope ---------------------
    def _is_private_start(self, event: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Whether the run starting now is private (flag in its metadata or input state, or a private parent)."""
        assert self.masker is not None
        run_id, parent = kwargs.get("run_id"), kwargs.get("parent_run_id")
        with self._lock:
            root = self._private.get(parent) if parent is not None else None
        if root is None:
            metadata = kwargs.get("metadata")
            inputs = args[1] if len(args) > 1 else kwargs.get("inputs")
            private = (isinstance(metadata, Mapping) and metadata.get(PRIVATE_KEY) is True) or (
                event == "on_chain_start" and isinstance(inputs, Mapping) and self.masker.is_private(inputs))
            if not private:
                return False
            root = run_id  # the top of a private subtree; its end forgets the subtree
        if run_id is not None:
            with self._lock:
                self._private[run_id] = root
        return True

    def _end_private(self, run_id: UUID) -> None:
        with self._lock:
            if self._private.pop(run_id, None) == run_id:  # a private root ended: forget its whole tree
                for child in [r for r, root in self._private.items() if root == run_id]:
                    del self._private[child]

    # -- node types ------------------------------------------------------------------------------
    def _get_observation_type_from_serialized(self, serialized: dict[str, Any] | None, callback_type: str,
                                              **kwargs: Any) -> Any:
        if callback_type == "chain":
            mapped = self.node_types.get(self.get_langchain_run_name(serialized, **kwargs))
            if mapped:
                return mapped
        return super()._get_observation_type_from_serialized(serialized, callback_type, **kwargs)

    # -- generations: tier, model, route, cost -------------------------------------------------------
    def on_chat_model_start(self, serialized: dict[str, Any] | None, messages: Any, *, run_id: UUID,
                            parent_run_id: UUID | None = None, **kwargs: Any) -> Any:
        super().on_chat_model_start(serialized, messages, run_id=run_id, parent_run_id=parent_run_id, **kwargs)
        params = kwargs.get("invocation_params") or {}
        tier = RunContext.from_metadata(kwargs.get("metadata")).tier or params.get("tier")
        generation = self._runs.get(run_id)
        self._started[run_id] = time.perf_counter()
        if generation is not None and tier:
            self._tiers[run_id] = str(tier)
            generation.update(metadata={"tier": str(tier)})

    def _parse_model_and_log_errors(self, *, serialized: dict[str, Any] | None, metadata: dict[str, Any] | None,
                                    kwargs: dict[str, Any]) -> str | None:
        # tierflow's tiers name their model in the invocation params; ask the SDK's heuristics only after.
        params = kwargs.get("invocation_params") or {}
        named = params.get("model_name") or params.get("model")
        if named:
            return str(named)
        if params.get("_type") == "tierflow-router":  # known only once routed; on_llm_end sets it
            return None
        return super()._parse_model_and_log_errors(serialized=serialized, metadata=metadata, kwargs=kwargs)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, parent_run_id: UUID | None = None,
                   **kwargs: Any) -> Any:
        generation = self._runs.get(run_id)
        tier = self._tiers.pop(run_id, None)
        started = self._started.pop(run_id, None)
        if generation is not None:
            try:
                meta, usage = _route_and_usage(response)
                tier = str(meta.get("tier") or tier or "")
                update: dict[str, Any] = {"metadata": meta} if meta else {}
                if meta.get("model"):
                    update["model"] = meta["model"]
                price = self.costs.get(tier)
                if price is not None and usage:
                    wall_s = time.perf_counter() - started if started is not None else 0.0
                    update["cost_details"] = call_cost(price, usage[0], usage[1], wall_s).details()
                if update:
                    generation.update(**update)
            except Exception:  # tracing must never break a run
                pass
        return super().on_llm_end(response, run_id=run_id, parent_run_id=parent_run_id, **kwargs)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None,
                     **kwargs: Any) -> Any:
        self._tiers.pop(run_id, None)
        self._started.pop(run_id, None)
        return super().on_llm_error(error, run_id=run_id, parent_run_id=parent_run_id, **kwargs)


def _scoped(event: str, method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` run inside the masker's private scope when its run is private."""
    kind = "start" if event in START_EVENTS else "end" if event in END_EVENTS else "other"

    @functools.wraps(method)
    def call(self: TierflowCallbackHandler, *args: Any, **kwargs: Any) -> Any:
        if self.masker is None:
            return method(self, *args, **kwargs)
        run_id = kwargs.get("run_id")
        if kind == "start":
            private = self._is_private_start(event, args, kwargs)
        else:
            with self._lock:
                private = run_id in self._private
        try:
            if not private:
                return method(self, *args, **kwargs)
            with Masker.private_scope():
                return method(self, *args, **kwargs)
        finally:
            if kind == "end" and private and run_id is not None:
                self._end_private(run_id)

    return call


for _event in (*START_EVENTS, *END_EVENTS, *OTHER_EVENTS):
    setattr(TierflowCallbackHandler, _event, _scoped(_event, getattr(TierflowCallbackHandler, _event)))


def _route_and_usage(response: LLMResult) -> tuple[dict[str, Any], tuple[int, int] | None]:
    """Tier and router decision (``response_metadata["route"]``) and token usage of a model response."""
    meta: dict[str, Any] = {}
    usage: tuple[int, int] | None = None
    for generations in response.generations:
        for generation in generations:
            message = getattr(generation, "message", None)
            response_meta = getattr(message, "response_metadata", None) or {}
            if response_meta.get("tier"):
                meta["tier"] = str(response_meta["tier"])
            if response_meta.get("model_name"):
                meta["model"] = str(response_meta["model_name"])
            route = route_of(message)
            if route is not None:
                meta["route"] = route
                meta.update({key: route[key] for key in ROUTE_KEYS if route.get(key) is not None})
            counts = getattr(message, "usage_metadata", None) or {}
            if counts:
                usage = (int(counts.get("input_tokens", 0)), int(counts.get("output_tokens", 0)))
    return meta, usage
