"""A run's spans as a tree: what ``tierflow traces show RUN_ID`` prints."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rich.markup import escape
from rich.tree import Tree

from tierflow.runtimes.errors import TierflowError


class RunNotFoundError(TierflowError, LookupError):
    """No trace in the file belongs to the run id asked for."""


@dataclass
class SpanNode:
    """One span with its children, ordered by start time."""

    record: dict[str, Any]
    children: list[SpanNode] = field(default_factory=list)

    def walk(self) -> Iterable[SpanNode]:
        yield self
        for child in self.children:
            yield from child.walk()


def run_trees(records: Iterable[dict[str, Any]], run_id: str) -> list[SpanNode]:
    """Root spans (with their subtrees) of every trace whose session is ``run_id``, oldest first.

    A resumed run (same thread id) has one trace per invocation; each is one root here.
    """
    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_trace[record["trace_id"]].append(record)
    wanted = [spans for spans in by_trace.values() if any(s.get("session_id") == run_id for s in spans)]
    if not wanted:
        raise RunNotFoundError(f"no trace for run {run_id!r} in the trace file")
    roots: list[SpanNode] = []
    for spans in wanted:
        nodes = {s["span_id"]: SpanNode(s) for s in spans}
        for node in nodes.values():
            parent = nodes.get(node.record.get("parent_id") or "")
            (parent.children if parent is not None else roots).append(node)
        for node in nodes.values():
            node.children.sort(key=lambda n: n.record.get("start_ns", 0))
    roots.sort(key=lambda n: n.record.get("start_ns", 0))
    return roots


def label(record: dict[str, Any]) -> str:
    """One line per span: name, type, duration, and for generations tier, model, tokens and cost."""
    parts = [f"[bold]{escape(str(record['name']))}[/]", f"[dim]{record.get('type', 'span')}[/]",
             f"{record.get('duration_ms', 0):.1f} ms"]
    meta = record.get("metadata") or {}
    tier = meta.get("tier")
    if tier:
        parts.append(f"tier={tier}")
    if meta.get("rule"):
        parts.append(f"rule={meta['rule']}")
    if meta.get("fallback_from"):
        parts.append(f"fallback_from={meta['fallback_from']}")
    if record.get("model.name"):
        parts.append(f"model={record['model.name']}")
    usage = record.get("usage_details")
    if isinstance(usage, dict) and usage:
        parts.append(f"tokens={usage.get('input', 0)}+{usage.get('output', 0)}")
    cost = record.get("cost_details")
    if isinstance(cost, dict) and cost.get("total"):
        parts.append(f"cost={cost['total']:.6f}")
    if record.get("status") == "ERROR" or record.get("level") == "ERROR":
        parts.append(f"[red]error[/] {escape(str(record.get('status_message') or ''))}".rstrip())
    return "  ".join(parts)


def render(roots: list[SpanNode]) -> list[Tree]:
    """Rich trees, one per trace of the run, with a summary line on each root."""
    trees = []
    for root in roots:
        record = root.record
        generations = [n.record for n in root.walk() if n.record.get("type") == "generation"]
        tokens = sum(int((g.get("usage_details") or {}).get("input", 0)) +
                     int((g.get("usage_details") or {}).get("output", 0)) for g in generations)
        head = (f"trace {record['trace_id']}  run={record.get('session_id')}  user={record.get('user_id')}  "
                f"tags={','.join(record.get('tags') or []) or '-'}  {len(generations)} model calls, {tokens} tokens")
        tree = Tree(head)
        _add(tree.add(label(record)), root)
        trees.append(tree)
    return trees


def _add(branch: Tree, node: SpanNode) -> None:
    for child in node.children:
        _add(branch.add(label(child.record)), child)
