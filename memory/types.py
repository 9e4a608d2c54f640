"""Plain value types the memory facade and its backends exchange."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from tierflow.memory.errors import MemoryInputError

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:+-]{0,127}$")
MemoryKind = Literal["episode", "subtask"]


def check_id(value: object, what: str) -> str:
    """``value`` if it is a usable tenant/user/run id, else MemoryInputError naming ``what``."""
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise MemoryInputError(f"{what} must be 1-128 characters of letters, digits and _.@:+- "
                               f"starting with a letter or digit; got {value!r}")
    return value


@dataclass(frozen=True)
class Namespace:
    """Whose memories: a tenant and a user in it. Every read and write is confined to one namespace."""

    tenant: str
    user: str

    def __post_init__(self) -> None:
        check_id(self.tenant, "tenant")
        check_id(self.user, "user_id")

    @property
    def key(self) -> str:
        """A fixed-length opaque key safe as a Weaviate tenant name and an index value in every store."""
        return "ns" + hashlib.sha256(f"{self.tenant}\0{self.user}".encode()).hexdigest()[:40]


@dataclass(frozen=True)
class MemoryItem:
    """One embedded memory: its text, which run and kind it comes from, and its vector."""

    id: str
    run_id: str
    kind: MemoryKind
    text: str
    intent: str
    created_at: float
    vector: list[float] | None = None


@dataclass(frozen=True)
class MemoryHit:
    """A recalled memory with its cosine similarity to the query (1 = identical)."""

    id: str
    run_id: str
    kind: str
    text: str
    intent: str
    score: float
    private: bool = False  # the memory came from a private run: whoever recalls it must keep it private


@dataclass(frozen=True)
class RecallFilters:
    """Optional equality filters applied inside the vector search."""

    kind: MemoryKind | None = None
    intent: str | None = None
    run_id: str | None = None

    @classmethod
    def of(cls, value: RecallFilters | dict[str, Any] | None) -> RecallFilters:
        if value is None or isinstance(value, RecallFilters):
            return value or cls()
        if not isinstance(value, dict):
            raise MemoryInputError(f"filters must be a dict or RecallFilters, got {type(value).__name__}")
        unknown = set(value) - {"kind", "intent", "run_id"}
        if unknown:
            raise MemoryInputError(f"unknown recall filter(s) {sorted(unknown)}; known: kind, intent, run_id")
        if value.get("kind") not in (None, "episode", "subtask"):
            raise MemoryInputError(f"filter kind must be 'episode' or 'subtask', got {value['kind']!r}")
        return cls(**value)


@dataclass(frozen=True)
class GraphNode:
    """A provenance-graph node: a stable key, a kind (its label) and flat JSON-able properties."""

    key: str
    kind: str
    props: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None  # set when the node belongs to one run (deleted with it)


@dataclass(frozen=True)
class GraphEdge:
    """A directed relationship between two node keys."""

    src: str
    rel: str
    dst: str


@dataclass
class Provenance:
    """The provenance of one run: its nodes and edges (session → run → intent → plan → subtask → ...)."""

    run_id: str
    nodes: list[GraphNode]
    edges: list[GraphEdge]

    def node(self, key: str) -> GraphNode:
        return next(n for n in self.nodes if n.key == key)

    def of_kind(self, kind: str) -> list[GraphNode]:
        return sorted((n for n in self.nodes if n.kind == kind), key=lambda n: n.key)


@dataclass(frozen=True)
class RememberResult:
    """What ``remember`` did: written False means the same episode was already stored (idempotent)."""

    run_id: str
    written: bool
    memories: int
    nodes: int


@dataclass(frozen=True)
class ForgetResult:
    """How much ``forget`` removed from each store."""

    memories: int
    nodes: int
