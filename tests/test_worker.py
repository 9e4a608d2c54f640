"""The worker's bounded tool loop: tool calls, errors the agent can see, and every way the loop stops."""

import pytest
from langchain_core.tools import tool

from tests.scripted import ScriptedChatModel
from tierflow.agents.plan import Subtask
from tierflow.agents.worker import WorkerAgent, action_schema
from tierflow.runtimes.errors import StructuredOutputError
from tierflow.tools.native import native_tools
from tierflow.tools.registry import ToolRegistry


@tool
def explode(text: str) -> str:
    """Always fails."""
    raise RuntimeError("boom")


@tool
def shout(text: str) -> str:
    """Returns a very long text."""
    return text.upper() * 2000


TOOLS = ToolRegistry([*native_tools(), explode, shout])


def worker(*replies, max_steps: int = 4) -> WorkerAgent:
    return WorkerAgent(ScriptedChatModel.of(replies), TOOLS, max_steps=max_steps)


def task(*tools: str) -> Subtask:
    return Subtask(id="t", goal="do it", role="analyst", tools=list(tools))


def test_a_tool_call_then_finish():
    w = worker({"action": "call_tool", "tool": "calculator", "args": {"expression": "17*23"}},
               {"action": "finish", "answer": "391"})
    result = w.run(task("calculator"), "what is 17*23")
    assert (result.output, result.stopped, result.steps) == ("391", "finished", 2)
    assert result.tool_calls[0].output == "391" and not result.tool_calls[0].error
    # the tool's output went back to the model
    assert "Tool calculator returned: 391" in w.model.seen[1][-1].content


def test_without_tools_the_worker_makes_one_plain_call():
    w = worker("Paris is the capital of France.")
    result = w.run(Subtask(id="t", goal="capital of France?", role="researcher"), "capital?",
                   prior={"earlier": "some context"})
    assert result.output == "Paris is the capital of France." and result.steps == 1
    prompt = w.model.seen[0][-1].content
    assert "Result of earlier: some context" in prompt and "Your task: capital of France?" in prompt
    assert "response_format" not in w.model.seen_kwargs[0]


def test_the_loop_stops_at_max_steps():
    calls = [{"action": "call_tool", "tool": "calculator", "args": {"expression": f"{i}+1"}} for i in range(5)]
    result = worker(*calls, max_steps=3).run(task("calculator"), "count")
    assert result.stopped == "max_steps" and result.steps == 3 and len(result.tool_calls) == 3
    assert result.output == "0+1 = 1; 1+1 = 2; 2+1 = 3"  # the tool results are kept, not lost


def test_a_repeated_identical_call_ends_the_loop():
    call = {"action": "call_tool", "tool": "calculator", "args": {"expression": "1+1"}}
    result = worker(call, call).run(task("calculator"), "again")
    assert result.stopped == "repeated_call" and len(result.tool_calls) == 1 and result.output == "1+1 = 2"


def test_tool_errors_and_disallowed_tools_are_observations_not_crashes():
    w = worker({"action": "call_tool", "tool": "explode", "args": {"text": "x"}},
               {"action": "call_tool", "tool": "word_count", "args": {"text": "x"}},
               {"action": "call_tool", "tool": "calculator", "args": {"expression": "1/0"}},
               {"action": "finish", "answer": "gave up"})
    result = w.run(task("explode", "calculator"), "try")
    assert [(c.tool, c.error) for c in result.tool_calls] == [("explode", True), ("word_count", True),
                                                               ("calculator", True)]
    assert result.tool_calls[0].output == "RuntimeError: boom"
    assert "not allowed" in result.tool_calls[1].output
    assert "division by zero" in result.tool_calls[2].output
    assert result.output == "gave up"


def test_huge_tool_results_are_cut_with_a_marker():
    w = worker({"action": "call_tool", "tool": "shout", "args": {"text": "ab"}}, {"action": "finish", "answer": ""})
    result = w.run(task("shout"), "shout")
    assert result.tool_calls[0].output == "AB" * 1000 + " [cut: 2000 more characters]"
    assert result.output == result.tool_calls[0].output  # empty answer falls back to the last observation


def test_unusable_model_output_ends_the_subtask_with_an_error():
    result = worker("not json at all").run(task("calculator"), "x")
    assert result.stopped == "error" and "not JSON" in result.error and result.output == ""


def test_action_schema_has_one_branch_per_allowed_tool_plus_finish():
    schema = action_schema(TOOLS, ["calculator"])
    branches = schema["anyOf"]
    assert [b["properties"].get("tool", {}).get("const") for b in branches] == ["calculator", None]
    assert branches[0]["properties"]["args"]["required"] == ["expression"]


def test_max_steps_must_be_positive():
    with pytest.raises(ValueError, match="max_steps"):
        worker(max_steps=0)


def test_structured_error_type_is_the_runtime_one():
    assert issubclass(StructuredOutputError, ValueError)


@tool
def diary(day: str) -> str:
    """Reads the user's diary."""
    return f"{day}: dentist at 9"


diary.metadata = {"private": True}


def test_results_of_private_tools_are_marked_for_the_router():
    w = WorkerAgent(ScriptedChatModel.of([{"action": "call_tool", "tool": "diary", "args": {"day": "monday"}},
                                          {"action": "finish", "answer": "dentist"}]),
                    ToolRegistry([*native_tools(), diary]))
    w.run(Subtask(id="t", goal="what is on monday?", role="researcher", tools=["diary"]), "monday?")
    assert w.model.seen[1][-1].additional_kwargs == {"private": True}
    assert w.model.seen[0][-1].additional_kwargs == {}


def test_a_tool_result_survives_a_later_invalid_reply():
    w = worker({"action": "call_tool", "tool": "calculator", "args": {"expression": "17*23"}}, "not json {")
    result = w.run(task("calculator"), "What is 17 times 23?")
    assert result.stopped == "tool_result" and result.output == "17*23 = 391" and not result.failed
    assert "StructuredOutputError" in (result.error or "")


def test_an_answer_that_contradicts_the_tool_is_rebuilt_from_the_tool_result():
    w = worker({"action": "call_tool", "tool": "calculator", "args": {"expression": "17*23"}},
               {"action": "finish", "answer": "17 times 23 is 419."})
    result = w.run(task("calculator"), "What is 17 times 23?")
    assert result.output == "17*23 = 391"
    assert result.notes == ["answer had numbers no tool or request gave (419); answered with the tool results"]


def test_an_answer_that_states_the_tool_result_is_kept():
    w = worker({"action": "call_tool", "tool": "calculator", "args": {"expression": "17*23"}},
               {"action": "finish", "answer": "17 times 23 is 391."})
    assert w.run(task("calculator"), "What is 17 times 23?").output == "17 times 23 is 391."


def test_tool_arguments_are_decoded_under_the_context_numbers():
    w = worker({"action": "call_tool", "tool": "calculator", "args": {"expression": "17*23"}},
               {"action": "finish", "answer": "391"})
    w.run(task("calculator"), "What is 17 times 23?")
    first = w.model.seen_kwargs[0]["response_format"]["json_schema"]["schema"]["anyOf"][0]
    pattern = first["properties"]["args"]["properties"]["expression"]["pattern"]
    assert "17" in pattern and "23" in pattern and "391" not in pattern
    # the tool's own result is not an operand for the next step: small models would feed it back in for ever
    second = w.model.seen_kwargs[1]["response_format"]["json_schema"]["schema"]["anyOf"][0]
    assert "391" not in second["properties"]["args"]["properties"]["expression"]["pattern"]
