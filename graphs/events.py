"""What a streamed run reports as it goes: node updates, model tokens and questions for a human.

``tierflow run --stream --json`` prints each event as one JSON line (:meth:`to_json`); the line format is
``{"type": "node"|"token"|"interrupt", "graph": ..., ...}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class NodeEvent:
    """A node finished a step: ``graph`` is the nested-graph path ("" for the top graph), ``keys`` what it set."""

    graph: str
    node: str
    keys: list[str]
    type: Literal["node"] = "node"

    def to_dict(self) -> dict[str, Any]:
        """The event as the JSON object the CLI prints."""
        return {"type": self.type, "graph": self.graph, "node": self.node, "keys": self.keys}

    def to_json(self) -> str:
        """One JSON line."""
        return json.dumps(self.to_dict())


@dataclass(frozen=True)
class TokenEvent:
    """A piece of model output, streamed by the model call that ``node`` of ``graph`` made."""

    graph: str
    node: str
    text: str
    type: Literal["token"] = "token"

    def to_dict(self) -> dict[str, Any]:
        """The event as the JSON object the CLI prints."""
        return {"type": self.type, "graph": self.graph, "node": self.node, "text": self.text}

    def to_json(self) -> str:
        """One JSON line."""
        return json.dumps(self.to_dict())


@dataclass(frozen=True)
class InterruptEvent:
    """The run paused with a question for a human; ``value`` is what the graph asked (``question`` and more)."""

    graph: str
    value: dict[str, Any] = field(default_factory=dict)
    type: Literal["interrupt"] = "interrupt"

    @property
    def question(self) -> str | None:
        """The question the run asks, when the graph gave one."""
        question = self.value.get("question")
        return None if question is None else str(question)

    def to_dict(self) -> dict[str, Any]:
        """The event as the JSON object the CLI prints: the question's fields inline."""
        return {"type": self.type, "graph": self.graph, **self.value}

    def to_json(self) -> str:
        """One JSON line."""
        return json.dumps(self.to_dict())


RunEvent = NodeEvent | TokenEvent | InterruptEvent
# Receives a run's events as they happen (``run_request(on_event=...)``).
EventSink = Callable[[RunEvent], None]
