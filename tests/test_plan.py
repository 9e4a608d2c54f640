"""Plan validation: the rules every plan must satisfy before any agent runs."""

import pytest

from agents.plan import Plan, PlanError, Subtask, find_cycle, plan_problems, topological_order, validate_plan

ROLES = ["generalist", "writer", "analyst"]
TOOLS = ["calculator"]


def plan(*subtasks: dict) -> Plan:
    return Plan(subtasks=[Subtask(**s) for s in subtasks])


def test_valid_plan_passes_unchanged():
    p = plan({"id": "a", "goal": "compute", "role": "analyst", "tools": ["calculator"]},
             {"id": "b", "goal": "write", "role": "writer", "depends_on": ["a"]})
    assert validate_plan(p, ROLES, TOOLS) is p


def test_every_problem_is_reported_at_once():
    p = plan({"id": "a", "goal": "x", "role": "pilot", "tools": ["browser"], "depends_on": ["zzz"]},
             {"id": "a", "goal": "y", "role": "writer"})
    with pytest.raises(PlanError) as info:
        validate_plan(p, ROLES, TOOLS)
    problems = info.value.problems
    assert "duplicate subtask ids: a" in problems
    assert "subtask a: unknown role 'pilot'" in problems
    assert "subtask a: unknown tool 'browser'" in problems
    assert "subtask a: depends on unknown subtask 'zzz'" in problems


def test_cycles_are_found_and_named():
    p = plan({"id": "a", "goal": "x", "role": "writer", "depends_on": ["c"]},
             {"id": "b", "goal": "y", "role": "writer", "depends_on": ["a"]},
             {"id": "c", "goal": "z", "role": "writer", "depends_on": ["b"]})
    assert find_cycle(p.subtasks) == ["a", "c", "b", "a"]
    assert any(problem.startswith("dependency cycle: a -> c -> b -> a") for problem in plan_problems(p, ROLES, TOOLS))
    with pytest.raises(PlanError):
        topological_order(p)


def test_oversized_plans_are_rejected():
    p = plan(*({"id": f"s{i}", "goal": "x", "role": "writer"} for i in range(5)))
    assert plan_problems(p, ROLES, TOOLS, max_subtasks=4) == ["5 subtasks exceed the limit of 4"]


def test_topological_order_puts_dependencies_first_and_keeps_ties_in_plan_order():
    p = plan({"id": "report", "goal": "x", "role": "writer", "depends_on": ["b", "a"]},
             {"id": "a", "goal": "y", "role": "writer"},
             {"id": "b", "goal": "z", "role": "writer", "depends_on": ["a"]})
    assert [s.id for s in topological_order(p)] == ["a", "b", "report"]
