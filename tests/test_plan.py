"""Plan validation: the rules every plan must satisfy before any agent runs."""

import pytest

from tierflow.agents.plan import (
    Plan,
    PlanError,
    Subtask,
    find_cycle,
    plan_problems,
    says_something,
    topological_order,
    validate_plan,
)

ROLES = ["generalist", "writer", "analyst"]
TOOLS = ["calculator"]


def plan(*subtasks: dict) -> Plan:
    return Plan(subtasks=[Subtask(**s) for s in subtasks])


def test_valid_plan_passes_unchanged():
    p = plan({"id": "a", "goal": "compute", "role": "analyst", "tools": ["calculator"]},
             {"id": "b", "goal": "write", "role": "writer", "depends_on": ["a"]})
    assert validate_plan(p, ROLES, TOOLS) is p


def test_every_problem_is_reported_at_once():
    p = plan({"id": "a", "goal": "gather facts", "role": "pilot", "tools": ["browser"], "depends_on": ["zzz"]},
             {"id": "a", "goal": "check facts", "role": "writer"})
    with pytest.raises(PlanError) as info:
        validate_plan(p, ROLES, TOOLS)
    problems = info.value.problems
    assert "duplicate subtask ids: a" in problems
    assert "subtask a: unknown role 'pilot'" in problems
    assert "subtask a: unknown tool 'browser'" in problems
    assert "subtask a: depends on unknown subtask 'zzz'" in problems


def test_cycles_are_found_and_named():
    p = plan({"id": "a", "goal": "gather facts", "role": "writer", "depends_on": ["c"]},
             {"id": "b", "goal": "check facts", "role": "writer", "depends_on": ["a"]},
             {"id": "c", "goal": "write it up", "role": "writer", "depends_on": ["b"]})
    assert find_cycle(p.subtasks) == ["a", "c", "b", "a"]
    assert any(problem.startswith("dependency cycle: a -> c -> b -> a") for problem in plan_problems(p, ROLES, TOOLS))
    with pytest.raises(PlanError):
        topological_order(p)


def test_oversized_plans_are_rejected():
    p = plan(*({"id": f"s{i}", "goal": "gather facts", "role": "writer"} for i in range(5)))
    assert plan_problems(p, ROLES, TOOLS, max_subtasks=4) == ["5 subtasks exceed the limit of 4"]


def test_topological_order_puts_dependencies_first_and_keeps_ties_in_plan_order():
    p = plan({"id": "report", "goal": "gather facts", "role": "writer", "depends_on": ["b", "a"]},
             {"id": "a", "goal": "check facts", "role": "writer"},
             {"id": "b", "goal": "write it up", "role": "writer", "depends_on": ["a"]})
    assert [s.id for s in topological_order(p)] == ["a", "b", "report"]


def test_junk_ids_and_goals_that_say_nothing_are_problems():
    plan = Plan(subtasks=[Subtask(id="report_2018-03-24T15:39:56.7, 2018-", goal=",", role="writer"),
                          Subtask(id="ok", goal="summarise the findings", role="writer")])
    problems = plan_problems(plan, ["writer"], [])
    assert problems == [
        "subtask 'report_2018-03-24T15:39:56.7, 2018-': id must be a name (a letter, then letters, digits, '_', "
        "'.', '-')",
        "subtask report_2018-03-24T15:39:56.7, 2018-: goal ',' says nothing (it has no word)"]
    assert says_something("Berechne 17 mal 23") and not says_something("2018-03-24, 7") and not says_something("x")
