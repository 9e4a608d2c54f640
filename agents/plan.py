"""Typed plans: a DAG of subtasks and the rules a plan must satisfy before anything executes."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tierflow.runtimes.errors import TierflowError

Pattern = Literal["sequential", "parallel", "hierarchical", "peer"]
PATTERNS: tuple[str, ...] = ("sequential", "parallel", "hierarchical", "peer")
PlanSource = Literal["model", "repaired", "template"]

MAX_SUBTASKS = 8
MAX_GOAL_CHARS = 500
MAX_TOOLS_PER_SUBTASK = 4
ID_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]*")
_WORD = re.compile(r"[^\W\d_]{2,}")  # two or more letters in any script


def says_something(goal: str) -> bool:
    """A goal an agent can act on has a word in it; small models sometimes emit ',' or a date instead."""
    return _WORD.search(goal) is not None


class Subtask(BaseModel):
    """One unit of work for one agent role; ``depends_on`` names subtasks whose results it needs."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=40)
    goal: str = Field(min_length=1, max_length=MAX_GOAL_CHARS)
    role: str
    tools: list[str] = Field(default_factory=list)
    depends_on: list[str] = Field(default_factory=list)


class Plan(BaseModel):
    """What the decomposer decided, and how it got there (model, repaired, or template)."""

    pattern: Pattern = "sequential"
    subtasks: list[Subtask] = Field(min_length=1)
    source: PlanSource = "model"
    notes: list[str] = Field(default_factory=list, description="what validation found and what repair did")


class PlanError(TierflowError, ValueError):
    """A plan breaks a rule; ``problems`` lists every broken rule, not only the first."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid plan: " + "; ".join(problems))
        self.problems = problems


def plan_json_schema(roles: Iterable[str], tools: Iterable[str], max_subtasks: int = MAX_SUBTASKS) -> dict[str, Any]:
    """The JSON schema the model must decode under: enums keep roles and tools to known names."""
    tool_names = sorted(tools)
    tool_items: dict[str, Any] = {"type": "string", "enum": tool_names} if tool_names else {"type": "string"}
    return {
        "type": "object",
        "properties": {
            "pattern": {"type": "string", "enum": list(PATTERNS)},
            "subtasks": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_subtasks,
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "minLength": 1, "maxLength": 40},
                        "goal": {"type": "string", "minLength": 1, "maxLength": MAX_GOAL_CHARS},
                        "role": {"type": "string", "enum": sorted(roles)},
                        "tools": {"type": "array", "items": tool_items, "maxItems": MAX_TOOLS_PER_SUBTASK},
                        "depends_on": {"type": "array", "items": {"type": "string"}},
                    },
                    "required": ["id", "goal", "role", "tools", "depends_on"],
                },
            },
        },
        "required": ["pattern", "subtasks"],
    }


def plan_problems(plan: Plan, roles: Iterable[str], tools: Iterable[str],
                  max_subtasks: int = MAX_SUBTASKS) -> list[str]:
    """Every rule ``plan`` breaks: size, ids, empty goals, unknown roles/tools/dependencies, cycles."""
    roles, tools = set(roles), set(tools)
    problems: list[str] = []
    if len(plan.subtasks) > max_subtasks:
        problems.append(f"{len(plan.subtasks)} subtasks exceed the limit of {max_subtasks}")
    ids = [s.id for s in plan.subtasks]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        problems.append(f"duplicate subtask ids: {', '.join(duplicates)}")
    for s in plan.subtasks:
        if not ID_PATTERN.fullmatch(s.id):
            problems.append(f"subtask {s.id!r}: id must be a name (a letter, then letters, digits, '_', '.', '-')")
        if not says_something(s.goal):
            problems.append(f"subtask {s.id}: goal {s.goal[:40]!r} says nothing (it has no word)")
        if s.role not in roles:
            problems.append(f"subtask {s.id}: unknown role {s.role!r}")
        for name in s.tools:
            if name not in tools:
                problems.append(f"subtask {s.id}: unknown tool {name!r}")
        if len(s.tools) > MAX_TOOLS_PER_SUBTASK:
            problems.append(f"subtask {s.id}: more than {MAX_TOOLS_PER_SUBTASK} tools")
        for dep in s.depends_on:
            if dep not in ids:
                problems.append(f"subtask {s.id}: depends on unknown subtask {dep!r}")
            elif dep == s.id:
                problems.append(f"subtask {s.id}: depends on itself")
    cycle = find_cycle(plan.subtasks)
    if cycle:
        problems.append("dependency cycle: " + " -> ".join(cycle))
    return problems


def validate_plan(plan: Plan, roles: Iterable[str], tools: Iterable[str], max_subtasks: int = MAX_SUBTASKS) -> Plan:
    """Return ``plan`` unchanged when it satisfies every rule, else raise PlanError listing them."""
    problems = plan_problems(plan, roles, tools, max_subtasks)
    if problems:
        raise PlanError(problems)
    return plan


def find_cycle(subtasks: list[Subtask]) -> list[str] | None:
    """A dependency cycle as a list of ids (first id repeated at the end), or None if acyclic."""
    deps = {s.id: [d for d in s.depends_on] for s in subtasks}
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in deps.get(node, []):
            if dep not in deps:
                continue
            if state.get(dep) == 1:
                return [*stack[stack.index(dep):], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in deps:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def topological_order(plan: Plan) -> list[Subtask]:
    """Subtasks ordered so each comes after its dependencies; ties keep the plan's order."""
    remaining = list(plan.subtasks)
    done: set[str] = set()
    ordered: list[Subtask] = []
    while remaining:
        ready = [s for s in remaining if all(d in done for d in s.depends_on)]
        if not ready:
            raise PlanError(["dependency cycle among: " + ", ".join(s.id for s in remaining)])
        for s in ready:
            ordered.append(s)
            done.add(s.id)
        remaining = [s for s in remaining if s.id not in done]
    return ordered
