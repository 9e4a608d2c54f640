"""Turn a finished run (an orchestrator episode) into memory texts and a provenance graph.

Graph shape: Session -HAS_RUN-> Run -CLASSIFIED_AS-> Intent; Run -PLANNED-> Plan -HAS_SUBTASK-> Subtask;
Subtask -HANDLED_BY-> Agent, -CALLED-> ToolCall -OF_TOOL-> Tool, -PRODUCED-> Outcome, -DEPENDS_ON-> Subtask;
Run -MENTIONS-> Entity. Session, Intent, Agent, Tool and Entity nodes are shared across a user's runs.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from tierflow.memory.errors import MemoryInputError
from tierflow.memory.types import GraphEdge, GraphNode, MemoryItem, check_id

MAX_TEXT_CHARS = 8_000  # one stored text (memory or property); longer texts are cut and marked
MAX_ENTITIES = 24
NODE_KINDS = ("Session", "Run", "Intent", "Plan", "Subtask", "Agent", "ToolCall", "Tool", "Outcome", "Entity")
RELATIONS = ("HAS_RUN", "CLASSIFIED_AS", "PLANNED", "HAS_SUBTASK", "DEPENDS_ON", "HANDLED_BY", "CALLED",
             "OF_TOOL", "PRODUCED", "MENTIONS")
_ID_NS = uuid.UUID("4f6a3c52-8d0e-4b8e-9a57-5b1f0e6f2a11")
_ENTITY = re.compile(r"\b[A-Z][\w'’-]*(?:\s+(?:of|de|da|van|von|the)?\s*[A-Z][\w'’-]*)*")
_NOT_ENTITIES = frozenset("""a an and are as at be but by can could did do does for from give how i if in is it
its me my no not of on or our please plan result say should so tell than that the their then there these this to
was we what when where which who why will with write explain compute calculate list make find show summarise
summarize describe compare visit find try go answer report subtask memory request yes you your""".split())


def truncate(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """``text`` cut to ``limit`` characters with a visible marker, so oversized inputs never fail a write."""
    return text if len(text) <= limit else text[: limit - 14] + " …[truncated]"


def extract_entities(*texts: str) -> list[str]:
    """Names mentioned in the texts: runs of capitalised words that are not common sentence words."""
    found: dict[str, str] = {}
    for text in texts:
        for match in _ENTITY.finditer(text or ""):
            words = match.group(0).split()
            while words and words[0].lower() in _NOT_ENTITIES:  # "Compare Lisbon" -> "Lisbon"
                words.pop(0)
            name = " ".join(words)
            if name.lower() in _NOT_ENTITIES or len(name) < 2:
                continue
            found.setdefault(name.lower(), name[:100])
            if len(found) >= MAX_ENTITIES:
                return list(found.values())
    return list(found.values())


@dataclass(frozen=True)
class EpisodeRecord:
    """Everything one episode writes: embedded texts, graph nodes and edges, and a content hash."""

    run_id: str
    content_hash: str
    items: list[MemoryItem]
    nodes: list[GraphNode]
    edges: list[GraphEdge]


def item_id(ns_key: str, run_id: str, kind: str, index: int) -> str:
    """Deterministic memory id: a retried run rewrites the same ids instead of adding new ones."""
    return str(uuid.uuid5(_ID_NS, f"{ns_key}|{run_id}|{kind}|{index}"))


def _flat(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return truncate(value)
    return truncate(json.dumps(value, sort_keys=True, default=str))


def build_record(episode: dict[str, Any], ns_key: str, now: float | None = None) -> EpisodeRecord:
    """Validate an orchestrator episode and derive its memories and provenance graph."""
    if not isinstance(episode, dict):
        raise MemoryInputError(f"episode must be a dict, got {type(episode).__name__}")
    run_id = check_id(episode.get("run_id"), "episode run_id")
    request = episode.get("request")
    if not isinstance(request, str) or not request.strip():
        raise MemoryInputError(f"episode {run_id!r} has no request text")
    now = time.time() if now is None else now
    content_hash = hashlib.sha256(json.dumps(episode, sort_keys=True, default=str).encode()).hexdigest()
    answer = str(episode.get("answer") or "")
    intent = episode.get("intent") or {}
    label = str(intent.get("label") or "unknown")[:100]
    plan = episode.get("plan") or {}
    results = [r for r in episode.get("results") or [] if isinstance(r, dict)]
    session = str(episode.get("session_id") or "default")[:128]

    run_key = f"run:{run_id}"
    nodes: dict[str, GraphNode] = {}
    edges: list[GraphEdge] = []

    def node(key: str, kind: str, owned: bool, **props: Any) -> str:
        nodes[key] = GraphNode(key, kind, {k: _flat(v) for k, v in props.items()}, run_id if owned else None)
        return key

    node(f"session:{session}", "Session", False, name=session)
    # The run's data class travels with it: recalling a private run's memories makes the recalling run private.
    node(run_key, "Run", True, run_id=run_id, request=request, answer=answer, pattern=episode.get("pattern"),
         created_at=now, content_hash=content_hash, private=episode.get("private") is True)
    edges.append(GraphEdge(f"session:{session}", "HAS_RUN", run_key))
    edges.append(GraphEdge(run_key, "CLASSIFIED_AS", node(f"intent:{label}", "Intent", False, label=label)))
    plan_key = node(f"plan:{run_id}", "Plan", True, source=plan.get("source"), pattern=plan.get("pattern"),
                    notes=plan.get("notes") or [])
    edges.append(GraphEdge(run_key, "PLANNED", plan_key))
    by_id = {r.get("subtask_id"): r for r in results}
    subtasks = [s for s in plan.get("subtasks") or [] if isinstance(s, dict) and s.get("id")]
    for sub in subtasks:
        sid = str(sub["id"])
        skey = node(f"subtask:{run_id}:{sid}", "Subtask", True, subtask_id=sid, goal=sub.get("goal"),
                    role=sub.get("role"), tools=sub.get("tools") or [])
        edges.append(GraphEdge(plan_key, "HAS_SUBTASK", skey))
        edges.extend(GraphEdge(skey, "DEPENDS_ON", f"subtask:{run_id}:{dep}") for dep in sub.get("depends_on") or []
                     if any(str(s["id"]) == str(dep) for s in subtasks))
        role = str(sub.get("role") or "agent")[:100]
        edges.append(GraphEdge(skey, "HANDLED_BY", node(f"agent:{role}", "Agent", False, role=role)))
        result = by_id.get(sub["id"]) or by_id.get(sid)
        if result is None:
            continue
        for i, call in enumerate(result.get("tool_calls") or []):
            tool = str(call.get("tool") or "unknown")[:100]
            ckey = node(f"toolcall:{run_id}:{sid}:{i}", "ToolCall", True, tool=tool, args=call.get("args") or {},
                        output=call.get("output"), error=bool(call.get("error")))
            edges.append(GraphEdge(skey, "CALLED", ckey))
            edges.append(GraphEdge(ckey, "OF_TOOL", node(f"tool:{tool}", "Tool", False, name=tool)))
        okey = node(f"outcome:{run_id}:{sid}", "Outcome", True, output=result.get("output"),
                    stopped=result.get("stopped"), error=result.get("error"), steps=result.get("steps"))
        edges.append(GraphEdge(skey, "PRODUCED", okey))
    for name in [*(str(e)[:100] for e in episode.get("entities") or []), *extract_entities(request, answer)]:
        edges.append(GraphEdge(run_key, "MENTIONS", node(f"entity:{name.lower()}", "Entity", False, name=name)))

    texts: list[tuple[str, str]] = [("episode", truncate(f"Request: {request.strip()}\nAnswer: {answer.strip()}"))]
    for sub in subtasks:
        result = by_id.get(sub["id"]) or by_id.get(str(sub["id"]))
        if result and str(result.get("output") or "").strip() and not result.get("error"):
            texts.append(("subtask", truncate(f"Subtask ({sub.get('role')}): {sub.get('goal')}\n"
                                              f"Result: {str(result['output']).strip()}")))
    items = [MemoryItem(item_id(ns_key, run_id, kind, i), run_id, kind, text, label, now)  # type: ignore[arg-type]
             for i, (kind, text) in enumerate(texts)]
    unique_edges = list(dict.fromkeys(e for e in edges if e.dst in nodes and e.src in nodes))
    return EpisodeRecord(run_id, content_hash, items, list(nodes.values()), unique_edges)
