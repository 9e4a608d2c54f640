"""tierflow's MCP servers: notes confinement, exact calculator, and the tierflow server driving the orchestrator."""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path

import pytest
from mcp.shared.memory import create_connected_server_and_client_session

from tests.fixtures_mcp import stdio_server
from tests.scripted import ScriptedChatModel
from tierflow.agents.decomposer import TaskDecomposer
from tierflow.agents.intent import IntentResult
from tierflow.agents.synthesizer import Synthesizer
from tierflow.agents.worker import WorkerAgent
from tierflow.graphs.orchestrator import OrchestratorDeps, build_orchestrator
from tierflow.graphs.runner import run_request, sqlite_checkpointer
from tierflow.mcp_servers.calculator import convert, parse_value
from tierflow.mcp_servers.notes import NotesPathError, NotesRoot
from tierflow.mcp_servers.tierflow_server import NodeProgress, build_tierflow_server
from tierflow.tools.errors import ToolInputError
from tierflow.tools.mcp.client import McpClient, McpToolError
from tierflow.tools.native import native_tools
from tierflow.tools.registry import ToolRegistry


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# notes ----------------------------------------------------------------------------------------------

def test_notes_paths_stay_inside_the_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "notes", tmp_path / "secret"
    outside.mkdir()
    (outside / "key.txt").write_text("s3cret")
    notes = NotesRoot(root)
    (notes.root / "link").symlink_to(outside)
    (notes.root / "file-link.md").symlink_to(outside / "key.txt")
    for bad, why in [("../secret/key.txt", "'..' is refused"), ("a/../../secret/key.txt", "'..' is refused"),
                     ("/etc/passwd", "absolute paths are refused"), ("~/x", "absolute paths are refused"),
                     ("link/key.txt", "outside the notes root"), ("file-link.md", "outside the notes root"),
                     ("", "path is empty"), ("a\x00b", "NUL")]:
        with pytest.raises(NotesPathError, match=why):
            notes.read(bad)
    with pytest.raises(NotesPathError, match="outside the notes root"):
        notes.write("link/new.md", "x", overwrite=True)
    assert not (outside / "new.md").exists()
    assert notes.write("a/b.md", "hello", overwrite=False) == "wrote 5 characters to a/b.md"
    assert notes.list("") == ["a/b.md"]  # the symlinks out of the root are not listed


def test_a_planted_temp_file_link_cannot_redirect_a_write(tmp_path: Path) -> None:
    # The old temp name .NAME.tmp-<pid> followed a symlink planted there: the write landed outside the root.
    root, outside = tmp_path / "notes", tmp_path / "outside"
    outside.mkdir()
    notes = NotesRoot(root)
    for pid in {os.getpid(), os.getppid()}:
        (notes.root / f".n.md.tmp-{pid}").symlink_to(outside / "planted.txt")
    assert notes.write("n.md", "hello", overwrite=True) == "wrote 5 characters to n.md"
    assert not (outside / "planted.txt").exists() and not (notes.root / "n.md").is_symlink()
    assert (notes.root / "n.md").read_text() == "hello"


def test_a_note_that_is_a_link_is_never_replaced(tmp_path: Path) -> None:
    root, outside = tmp_path / "notes", tmp_path / "outside"
    outside.mkdir()
    notes = NotesRoot(root)
    (notes.root / "inside.md").write_text("target")
    (notes.root / "alias.md").symlink_to(notes.root / "inside.md")  # a link that stays inside the root
    with pytest.raises(NotesPathError, match="is a symlink; notes never replace links"):
        notes.write("alias.md", "changed", overwrite=True)
    assert (notes.root / "alias.md").is_symlink() and (notes.root / "inside.md").read_text() == "target"


def test_notes_errors_never_show_the_roots_absolute_path(tmp_path: Path) -> None:
    notes = NotesRoot(tmp_path / "notes")
    for bad in ["x" * 280 + ".md", "a/" + "y" * 250, "deep/" * 10 + "z" * 220]:
        with pytest.raises(NotesPathError) as caught:
            notes.write(bad, "text", overwrite=True)
        assert str(tmp_path) not in str(caught.value)
    (notes.root / "locked").mkdir()
    (notes.root / "locked" / "n.md").write_text("x")
    os.chmod(notes.root / "locked", 0o500)
    try:
        if os.geteuid() != 0:  # root ignores directory permissions
            with pytest.raises(NotesPathError, match="cannot write note") as caught:
                notes.write("locked/m.md", "text", overwrite=True)
            assert str(tmp_path) not in str(caught.value)
    finally:
        os.chmod(notes.root / "locked", 0o700)


@pytest.mark.server
def test_notes_server_over_stdio(tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_text("nope")
    config = stdio_server("tierflow.mcp_servers.notes", "--root", str(tmp_path / "notes"))
    with McpClient({"notes": config}) as client:
        assert client.call("notes", "write_note", {"path": "trip/lisbon.md", "text": "Visit Belem\nEat pasteis"}) \
            == "wrote 23 characters to trip/lisbon.md"
        assert client.call("notes", "read_note", {"path": "trip/lisbon.md"}) == "Visit Belem\nEat pasteis"
        assert client.call("notes", "search_notes", {"query": "PASTEIS"}) == "trip/lisbon.md:2: Eat pasteis"
        assert client.call("notes", "list_notes", {}) == "trip/lisbon.md"
        with pytest.raises(McpToolError, match=r"'\.\.' is refused"):
            client.call("notes", "read_note", {"path": "../outside.txt"})
        with pytest.raises(McpToolError, match="absolute paths are refused"):
            client.call("notes", "read_note", {"path": str(tmp_path / "outside.txt")})
        with pytest.raises(McpToolError, match="exists; pass overwrite=true"):
            client.call("notes", "write_note", {"path": "trip/lisbon.md", "text": "x", "overwrite": False})
        with pytest.raises(ToolInputError, match="text: 5 is not of type 'string'"):
            client.call("notes", "write_note", {"path": "a.md", "text": 5})


# calculator -----------------------------------------------------------------------------------------

def test_unit_conversion_is_exact_and_bounded() -> None:
    assert convert(parse_value("1"), "mi", "m") == Fraction(1609344, 1000)
    assert convert(parse_value("1"), "ft", "in") == 12
    assert convert(parse_value("100"), "C", "F") == 212
    assert convert(parse_value("1/3"), "h", "min") == 20
    assert convert(parse_value("1"), "GiB", "MiB") == 1024
    with pytest.raises(ToolInputError, match="different quantities"):
        convert(parse_value("1"), "C", "m")
    with pytest.raises(ToolInputError, match=r"cannot convert kg \(mass\) to m \(length\)"):
        convert(parse_value("1"), "kg", "m")
    with pytest.raises(ToolInputError, match="below absolute zero"):
        convert(parse_value("-300"), "C", "K")
    with pytest.raises(ToolInputError, match=r"same unit \(F\)"):  # '100 °F in celsius' called as F -> F
        convert(parse_value("100"), "°F", "fahrenheit")
    with pytest.raises(ToolInputError, match="unknown unit 'parsec'"):
        convert(parse_value("1"), "parsec", "m")
    for bad in ["1e999", "9" * 80, "two", "1/0"]:
        with pytest.raises(ToolInputError):
            parse_value(bad)


@pytest.mark.server
def test_calculator_server_over_stdio_with_a_pool() -> None:
    config = stdio_server("tierflow.mcp_servers.calculator", stateless=True, pool_size=2)
    with McpClient({"calc": config}) as client:
        assert client.tool("calculate").invoke({"expression": "2^64"}) == "18446744073709551616"
        assert client.tool("calculate").invoke({"expression": "1/3 + 1/6"}) == "1/2 (≈ 0.5)"
        assert client.tool("convert_units").invoke({"value": "5", "from_unit": "km", "to_unit": "m"}) == "5000 m"
        with pytest.raises(McpToolError, match="exponent larger than 1000"):
            client.tool("calculate").invoke({"expression": "2**100000"})
        with pytest.raises(McpToolError, match="division by zero"):
            client.tool("calculate").invoke({"expression": "1/0"})
        assert "temperature" in json.loads(client.tool("list_units").invoke({}))


# the tierflow server ---------------------------------------------------------------------------------

class FixedIntent:
    """An injected classifier (the orchestrator takes any object with ``classify``).

    CLINC150's label, with no intent template: the planner is asked (calculate's one-step template would not).
    """

    def classify(self, text: str) -> IntentResult:
        return IntentResult(label="calculator", confidence=0.9)


PLAN = {"pattern": "sequential", "subtasks": [
    {"id": "calc", "goal": "compute 17*23", "role": "analyst", "tools": ["calc_calculate"], "depends_on": []},
    {"id": "count", "goal": "count words", "role": "writer", "tools": ["word_count"], "depends_on": ["calc"]}]}


@pytest.mark.server
@pytest.mark.anyio
async def test_tierflow_server_runs_the_orchestrator_with_mcp_tools(tmp_path: Path) -> None:
    # Agents use an MCP tool (calculate, from the calculator server) and a native one from one registry;
    # the server's tools get a prefix, since its convert_units would clash with the native one.
    with McpClient({"calc": stdio_server("tierflow.mcp_servers.calculator", prefix="calc_")}) as client:
        tools = ToolRegistry([*native_tools(), *client.tools()])
        worker_model = ScriptedChatModel.of([
            {"action": "call_tool", "tool": "calc_calculate", "args": {"expression": "17*23"}},
            {"action": "finish", "answer": "391"},
            {"action": "call_tool", "tool": "word_count", "args": {"text": "it is 391"}},
            {"action": "finish", "answer": "3 words"}])
        deps = OrchestratorDeps(classifier=FixedIntent(),
                                decomposer=TaskDecomposer(ScriptedChatModel.of([PLAN, PLAN]), tools.names),
                                worker=WorkerAgent(worker_model, tools),
                                synthesizer=Synthesizer(ScriptedChatModel.of(["17 times 23 is 391."])))
        graph = build_orchestrator(deps, sqlite_checkpointer(tmp_path / "cp.sqlite"))
        server = build_tierflow_server(
            run_task=lambda request, progress: run_request(graph, request, callbacks=[NodeProgress(progress)]),
            classify=lambda text: deps.classifier.classify(text).model_dump(),
            plan=lambda request: deps.decomposer.decompose(request, "calculator").model_dump(),
            catalog=lambda: {"graphs": [{"name": "orchestrator", "patterns": sorted(deps.patterns)}],
                             "intents": ["calculate"], "agents": sorted(deps.worker.roles)})
        progress: list[tuple[float, float | None, str | None]] = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append((done, total, message))

        async with create_connected_server_and_client_session(server) as session:
            names = {t.name for t in (await session.list_tools()).tools}
            assert names == {"run_task", "classify_intent", "plan_task"}  # no memory tools without memory
            plan = await session.call_tool("plan_task", {"request": "what is 17*23?"})
            assert [s["id"] for s in plan.structuredContent["subtasks"]] == ["calc", "count"]
            result = await session.call_tool("run_task", {"request": "what is 17*23?"},
                                             progress_callback=on_progress)
            assert not result.isError, result.content
            out = result.structuredContent
            assert out["answer"] == "17 times 23 is 391." and out["tiers_used"] == ["scripted"]
            assert out["status"] == "done" and out["errors"] == []
            assert out["intent"] == "calculator" and out["model_calls"] == 6 and len(out["run_id"]) == 32
            assert worker_model.seen[1][-1].content.startswith("Tool calc_calculate returned: 391")
            steps = [m for _, _, m in progress]
            assert steps[0] == "queued" and steps[-1] == "done"
            assert [s for s in steps if s.startswith("step ")] == [
                "step classify_intent", "step recall", "step plan", "step execute", "step synthesize",
                "step remember"]
            assert [d for d, _, _ in progress] == sorted(d for d, _, _ in progress)
            intent = await session.call_tool("classify_intent", {"text": "what is 2+2"})
            assert intent.structuredContent["label"] == "calculator"
            bad = await session.call_tool("run_task", {"request": "   "})
            assert bad.isError and "request is empty" in bad.content[0].text
            resources = {str(r.uri) for r in (await session.list_resources()).resources}
            assert resources == {"tierflow://graphs", "tierflow://intents", "tierflow://agents"}
            agents = await session.read_resource("tierflow://agents")
            assert "analyst" in json.loads(agents.contents[0].text)
            prompts = {p.name for p in (await session.list_prompts()).prompts}
            assert prompts == {"ask_tierflow", "plan_first"}
            prompt = await session.get_prompt("ask_tierflow", {"request": "hi"})
            assert "run_task" in prompt.messages[0].content.text


def test_notes_root_is_created(tmp_path: Path) -> None:
    notes = NotesRoot(tmp_path / "new" / "root")
    assert notes.root.is_dir() and os.access(notes.root, os.W_OK)
