"""The task decomposer: model plan when valid, repaired when fixable, the intent's template otherwise."""

import httpx
import openai
import pytest

from tests.scripted import ScriptedChatModel
from tierflow.agents.decomposer import TaskDecomposer

TOOLS = ["calculator", "word_count"]


def decomposer(*replies) -> TaskDecomposer:
    return TaskDecomposer(ScriptedChatModel.of(replies), TOOLS, max_subtasks=3)


def test_a_valid_model_plan_is_used_as_is():
    reply = {"pattern": "sequential", "subtasks": [
        {"id": "calc", "goal": "compute 2+2", "role": "analyst", "tools": ["calculator"], "depends_on": []},
        {"id": "say", "goal": "report it", "role": "writer", "tools": [], "depends_on": ["calc"]}]}
    d = decomposer(reply)
    plan = d.decompose("what is 2+2", None)
    assert plan.source == "model" and plan.notes == []
    assert [s.id for s in plan.subtasks] == ["calc", "say"]
    # the call asked for JSON under the plan schema, roles and tools as enums
    fmt = d.model.seen_kwargs[0]["response_format"]
    schema = fmt["json_schema"]["schema"]
    assert schema["properties"]["subtasks"]["maxItems"] == 3
    assert schema["properties"]["subtasks"]["items"]["properties"]["tools"]["items"]["enum"] == TOOLS


def test_unknown_tools_roles_and_dependencies_are_repaired_and_recorded():
    reply = {"pattern": "sequential", "subtasks": [
        {"id": "a", "goal": "look it up", "role": "librarian", "tools": ["browser", "calculator"], "depends_on": ["x"]},
        {"id": "b", "goal": "write", "role": "writer", "tools": [], "depends_on": ["a"]}]}
    plan = decomposer(reply).decompose("question", None)
    assert plan.source == "repaired"
    a, b = plan.subtasks
    assert (a.role, a.tools, a.depends_on) == ("generalist", ["calculator"], [])
    assert b.depends_on == ["a"]
    assert "subtask a: unknown tool 'browser'" in plan.notes
    assert "subtask a: unknown role 'librarian'" in plan.notes


def test_cycles_are_broken_by_keeping_only_earlier_dependencies():
    reply = {"pattern": "sequential", "subtasks": [
        {"id": "a", "goal": "gather facts", "role": "writer", "tools": [], "depends_on": ["b"]},
        {"id": "b", "goal": "check facts", "role": "writer", "tools": [], "depends_on": ["a"]}]}
    plan = decomposer(reply).decompose("req", None)
    assert plan.source == "repaired"
    assert [s.depends_on for s in plan.subtasks] == [[], ["a"]]
    assert any(n.startswith("dependency cycle") for n in plan.notes)


def test_oversized_plans_are_cut_to_the_limit():
    reply = {"pattern": "sequential", "subtasks": [
        {"id": f"s{i}", "goal": f"step {i}", "role": "writer", "tools": [], "depends_on": []} for i in range(6)]}
    plan = decomposer(reply).decompose("req", None)
    assert plan.source == "repaired" and len(plan.subtasks) == 3
    assert "6 subtasks exceed the limit of 3" in plan.notes


def test_duplicate_ids_are_renamed():
    reply = {"subtasks": [{"id": "s", "goal": "gather facts", "role": "writer"},
                          {"id": "s", "goal": "check facts", "role": "writer"}], "pattern": "sequential"}
    plan = decomposer(reply).decompose("req", None)
    assert [s.id for s in plan.subtasks] == ["s", "s2"]


def test_output_that_is_not_json_falls_back_to_the_intent_template():
    plan = decomposer("I think you should make a list").decompose("plan a picnic", "plan")
    assert plan.source == "template"
    assert [(s.id, s.role, s.depends_on) for s in plan.subtasks] == [("steps", "planner", []),
                                                                     ("present", "writer", ["steps"])]
    assert "plan a picnic" in plan.subtasks[0].goal
    assert any("not JSON" in n for n in plan.notes) and plan.notes[-1] == "used the plan template"


@pytest.mark.parametrize(("intent", "step", "tools"), [
    ("calculate", "compute", ["calculator"]),  # convert_units is not among this decomposer's tools
    ("explain", "explain", []),
    ("write", "draft", []),
])
def test_a_single_step_template_is_used_without_a_planner_call(intent, step, tools):
    d = decomposer()  # no scripted reply: a model call would fail the test
    plan = d.decompose("what is 3*3", intent)
    assert plan.source == "template" and d.model.seen_kwargs == []
    assert [(s.id, s.tools) for s in plan.subtasks] == [(step, tools)]
    assert "what is 3*3" in plan.subtasks[0].goal
    assert plan.notes == ["single-step template: no planner call", f"used the {intent} template"]


def test_json_without_any_usable_subtask_falls_back_to_the_generic_template():
    plan = decomposer({"pattern": "sequential", "subtasks": [{"id": "a", "goal": ""}]}).decompose("hello", "mystery")
    assert plan.source == "template"
    assert [s.id for s in plan.subtasks] == ["answer"]
    assert plan.notes[-1] == "used the default template"


def test_a_failing_tier_falls_back_to_the_template():
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    plan = decomposer(openai.APIConnectionError(request=request)).decompose("plan my week", "plan")
    assert plan.source == "template" and plan.subtasks[0].role == "planner"
    assert "model output unusable" in plan.notes[0]


def test_subtasks_that_say_nothing_are_dropped_and_junk_ids_renamed():
    reply = {"pattern": "sequential", "subtasks": [
        {"id": "report_2018-03-24T15:39:56.7.0000, 2018-", "goal": "compute 17*23", "role": "analyst",
         "tools": ["calculator"], "depends_on": []},
        {"id": "b", "goal": ",", "role": "writer", "tools": [], "depends_on": []}]}
    plan = decomposer(reply).decompose("what is 17*23", None)
    assert plan.source == "repaired"
    assert [(s.id, s.goal) for s in plan.subtasks] == [("s1", "compute 17*23")]
    assert "subtask b: goal ',' says nothing (it has no word)" in plan.notes


def test_a_plan_whose_goals_all_say_nothing_falls_back_to_the_template():
    reply = {"pattern": "sequential", "subtasks": [
        {"id": "a", "goal": ",", "role": "analyst", "tools": ["calculator"], "depends_on": []}]}
    plan = decomposer(reply).decompose("plan a picnic", "plan")
    assert plan.source == "template" and [s.id for s in plan.subtasks] == ["steps", "present"]
    assert all(s.goal.strip(",") for s in plan.subtasks)


def test_template_steps_the_plan_depends_on_are_restored():
    # the model copied only the last step of the plan template's example, dependency included
    reply = {"pattern": "sequential", "subtasks": [
        {"id": "present", "goal": "Present the steps as a numbered list.", "role": "writer", "tools": [],
         "depends_on": ["steps"]}]}
    plan = decomposer(reply).decompose("plan a picnic", "plan")
    assert plan.source == "repaired"
    assert [(s.id, s.role, s.depends_on) for s in plan.subtasks] == [
        ("steps", "planner", []), ("present", "writer", ["steps"])]
    assert "plan a picnic" in plan.subtasks[0].goal
    assert plan.notes == ["restored steps from the plan template (the plan depends on it)"]
