"""Typed state of the orchestrator graph and of the pattern subgraphs.

Values are plain JSON-ready dicts (dumps of the agents' pydantic models) so checkpoints stay
readable and portable across versions.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Annotated, Any, TypedDict, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def to_state(model: BaseModel) -> dict[str, Any]:
    """``model`` as the plain dict graph state holds: the one way models enter state, so checkpoints stay JSON."""
    return model.model_dump()


def from_state(model_type: type[M], value: Mapping[str, Any] | M) -> M:
    """A state value (a checkpointed dict) read back as ``model_type``, validated; the inverse of to_state."""
    return model_type.model_validate(value)


class RunState(TypedDict, total=False):
    """One request's journey through classify_intent → recall → plan → execute → synthesize → remember."""

    request: str
    user_id: str
    private: bool
    intent: dict[str, Any]
    route: str
    memories: list[str]
    plan: dict[str, Any]
    pattern: str
    results: list[dict[str, Any]]
    answer: str
    # done, failed (nothing usable), partial (some subtasks failed), waiting (a question for a human)
    status: str
    errors: list[str]
    notes: Annotated[list[str], operator.add]


class TeamState(TypedDict, total=False):
    """What a pattern subgraph works on: ordered subtasks in, one result per subtask out."""

    request: str
    memories: list[str]
    subtasks: list[dict[str, Any]]
    results: Annotated[list[dict[str, Any]], operator.add]
