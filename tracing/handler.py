"""Langfuse's LangChain/LangGraph CallbackHandler with what tierflow adds to every trace.

On top of the SDK's graph/node spans, generations, tool and retriever observations it adds:
session (= the run's thread id) and user from the run's config metadata, tags for intent and
pattern as soon as the graph knows them, tier/model/route metadata and cost on each generation, and
tierflow's node names mapped to observation types (``recall`` is a retriever, agents are agents).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID

from langchain_core.outputs import LLMResult
from langfuse._client.attributes import LangfuseOtelSpanAttributes
from langfuse.langchain import CallbackHandler

ROUTE_KEYS = ("tier", "rule", "fallback_from", "attempt")


class TierflowCallbackHandler(CallbackHandler):
    """One handler per run; pass it in ``callbacks`` (``graphs.runner.run_request(callbacks=[...])``).

    ``costs`` maps a tier name to its price per 1k input and output tokens; ``node_types`` maps graph
    node names to Langfuse observation types.
    """

    def __init__(self, *, public_key: str, tags: Iterable[str] = (), release: str | None = None,
                 costs: Mapping[str, tuple[float, float]] | None = None,
                 node_types: Mapping[str, str] | None = None, trace_context: Any = None) -> None:
        super().__init__(public_key=public_key, trace_context=trace_context)
        self.tags: list[str] = list(dict.fromkeys(tags))
        self.release = release
        self.costs = dict(costs or {})
        self.node_types = dict(node_types or {})
        self.trace_ids: list[str] = []
        self._root_runs: set[UUID] = set()
        self._tiers: dict[UUID, str] = {}
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
        run_id = meta.get("tierflow_run_id") or meta.get("thread_id")
        if run_id and "langfuse_session_id" not in meta:
            meta["langfuse_session_id"] = str(run_id)
        if meta.get("user_id") and "langfuse_user_id" not in meta:
            meta["langfuse_user_id"] = str(meta["user_id"])
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
        tier = (kwargs.get("metadata") or {}).get("tierflow_tier") or params.get("tier")
        generation = self._runs.get(run_id)
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
        if generation is not None:
            try:
                meta, usage = _route_and_usage(response)
                tier = str(meta.get("tier") or tier or "")
                update: dict[str, Any] = {"metadata": meta} if meta else {}
                if meta.get("model"):
                    update["model"] = meta["model"]
                price = self.costs.get(tier)
                if price is not None and usage:
                    cost_in = usage[0] / 1000 * price[0]
                    cost_out = usage[1] / 1000 * price[1]
                    update["cost_details"] = {"input": cost_in, "output": cost_out, "total": cost_in + cost_out}
                if update:
                    generation.update(**update)
            except Exception:  # tracing must never break a run
                pass
        return super().on_llm_end(response, run_id=run_id, parent_run_id=parent_run_id, **kwargs)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None,
                     **kwargs: Any) -> Any:
        self._tiers.pop(run_id, None)
        return super().on_llm_error(error, run_id=run_id, parent_run_id=parent_run_id, **kwargs)


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
            route = response_meta.get("route")
            if isinstance(route, Mapping):
                meta["route"] = dict(route)
                meta.update({key: route[key] for key in ROUTE_KEYS if route.get(key) is not None})
            counts = getattr(message, "usage_metadata", None) or {}
            if counts:
                usage = (int(counts.get("input_tokens", 0)), int(counts.get("output_tokens", 0)))
    return meta, usage
