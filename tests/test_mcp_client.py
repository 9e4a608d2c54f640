"""tierflow's MCP client against a server written with the SDK's low-level API: pooling, limits and faults."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mcp import types

from tests.fixtures_mcp import REPO, free_port, raw_server, wait_http
from tests.scripted import ScriptedChatModel
from tierflow.agents.plan import Subtask
from tierflow.agents.worker import WorkerAgent
from tierflow.tools.errors import ToolInputError, UnknownToolError
from tierflow.tools.mcp.client import (
    McpClient,
    McpConnectionError,
    McpTimeoutError,
    McpToolError,
    ToolSchemas,
    check_structured_result,
    validate_arguments,
)
from tierflow.tools.mcp.config import McpServerConfig
from tierflow.tools.policy import ROLE_METADATA_KEY, ToolNotAllowedError, allowed_tools
from tierflow.tools.registry import ToolRegistry

pytestmark = pytest.mark.server


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def stateful() -> McpClient:
    with McpClient({"raw": raw_server(timeout_s=5, max_result_chars=200, allow_roles=["analyst"])}) as client:
        yield client


def test_discovers_tools_with_their_json_schemas(stateful: McpClient) -> None:
    tools = {t.name: t for t in stateful.tools()}
    assert {"echo", "add", "sleep", "die", "big", "fail"} <= set(tools)
    schema = tools["add"].tool_call_schema.model_json_schema()
    assert schema["properties"] == {"a": {"type": "integer"}, "b": {"type": "integer"}}
    assert schema["required"] == ["a", "b"]
    # The worker's registry reads the same schema for its prompts and decoding.
    registry = ToolRegistry(stateful.tools())
    assert registry.describe(["add"])[0]["args"] == schema["properties"]


def test_sync_invoke_from_threads_and_async_ainvoke(stateful: McpClient) -> None:
    add = stateful.tool("add")
    results: list[str] = []
    threads = [threading.Thread(target=lambda i=i: results.append(add.invoke({"a": i, "b": 1}))) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results, key=int) == [str(i + 1) for i in range(6)]
    assert asyncio.run(add.ainvoke({"a": 2, "b": 40})) == "42"


def test_stateful_server_keeps_one_session(stateful: McpClient) -> None:
    first = int(stateful.call("raw", "counter"))
    second = int(stateful.call("raw", "counter"))
    assert second == first + 1
    assert len({stateful.call("raw", "pid") for _ in range(4)}) == 1


def test_bad_arguments_are_refused_before_sending(stateful: McpClient) -> None:
    before = int(stateful.call("raw", "counter"))
    with pytest.raises(ToolInputError, match="'b' is a required property"):
        stateful.tool("add").invoke({"a": 1})
    with pytest.raises(ToolInputError, match="a: 'one' is not of type 'integer'"):
        stateful.call("raw", "add", {"a": "one", "b": 2})
    with pytest.raises(ToolInputError, match="Additional properties"):
        stateful.call("raw", "add", {"a": 1, "b": 2, "c": 3})
    with pytest.raises(ToolInputError, match="the limit is 100000"):
        stateful.call("raw", "echo", {"text": "x" * 200_000})
    with pytest.raises(UnknownToolError, match="unknown tool 'nope'"):
        stateful.call("raw", "nope", {})
    with pytest.raises(McpToolError, match="unknown MCP server 'other'"):
        stateful.call("other", "add", {"a": 1, "b": 2})
    assert int(stateful.call("raw", "counter")) == before + 1  # nothing above reached the server


def test_results_are_capped_with_a_marker(stateful: McpClient) -> None:
    text = stateful.call("raw", "big", {"n": 1000})
    assert text == "x" * 200 + " [cut: 800 more characters]"


def test_server_errors_become_tool_errors(stateful: McpClient) -> None:
    with pytest.raises(McpToolError, match="fail failed: the fail tool always fails"):
        stateful.tool("fail").invoke({})


def test_role_allowlist(stateful: McpClient) -> None:
    assert allowed_tools(stateful.tools(), "writer") == []
    assert "add" in allowed_tools(stateful.tools(), "analyst")
    assert stateful.tools(role="writer") == []
    with pytest.raises(ToolNotAllowedError, match="role 'writer' may not call tool 'add'"):
        stateful.tool("add").invoke({"a": 1, "b": 2}, {"metadata": {ROLE_METADATA_KEY: "writer"}})
    assert stateful.tool("add").invoke({"a": 1, "b": 2}, {"metadata": {ROLE_METADATA_KEY: "analyst"}}) == "3"


def test_the_worker_calls_mcp_tools_as_its_role(stateful: McpClient) -> None:
    registry = ToolRegistry(stateful.tools())
    call = {"action": "call_tool", "tool": "add", "args": {"a": 2, "b": 3}}
    for role, expected in [("analyst", ("5", False)), ("writer", ("may not call tool 'add'", True))]:
        worker = WorkerAgent(ScriptedChatModel.of([call, {"action": "finish", "answer": "done"}]), registry)
        result = worker.run(Subtask(id="t", goal="add", role=role, tools=["add"]), "add 2 and 3")
        record = result.tool_calls[0]
        assert expected[0] in record.output and record.error is expected[1]


def test_call_that_never_answers_times_out_and_session_survives(stateful: McpClient) -> None:
    started = time.monotonic()
    with pytest.raises(McpTimeoutError, match=r"did not answer within 0\.5 s"):
        stateful.call("raw", "sleep", {"seconds": 30}, timeout_s=0.5)
    assert time.monotonic() - started < 5
    assert stateful.call("raw", "echo", {"text": "still here"}) == "still here"


@pytest.mark.anyio
async def test_cancelling_a_call_returns_promptly(stateful: McpClient) -> None:
    task = asyncio.create_task(stateful.acall("raw", "sleep", {"seconds": 30}))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 2
    assert await stateful.acall("raw", "add", {"a": 1, "b": 1}) == "2"


def test_server_killed_mid_call_is_reported_and_restarted() -> None:
    with McpClient({"raw": raw_server(timeout_s=10)}) as client:
        pid = client.call("raw", "pid")
        with pytest.raises(McpConnectionError, match="restarted for the next call"):
            client.call("raw", "die")
        assert client.call("raw", "echo", {"text": "back"}) == "back"
        assert client.call("raw", "pid") != pid


# A server that dies: the probe of issue #13 found the first call after an idle server died failing (3/3) and
# calls in flight on a killed server waiting for their whole timeout.
DIED = r"MCP server 'raw' (closed the connection|died) during '{tool}'.*may or may not have run"


def test_a_server_killed_while_idle_is_restarted_by_the_next_call() -> None:
    with McpClient({"raw": raw_server(timeout_s=10)}) as client:
        for _ in range(3):
            [pid] = client.pids("raw")
            assert client.call("raw", "pid") == str(pid)  # pids() names the server's own process
            os.kill(pid, signal.SIGKILL)
            _wait_exited(pid)
            assert client.call("raw", "echo", {"text": "back"}) == "back"
            assert client.pids("raw") != [pid]


@pytest.mark.anyio
async def test_a_dead_server_is_noticed_before_sending(caplog: pytest.LogCaptureFixture) -> None:
    # On the caller's loop, and without yielding to it after the kill, so the client's own watcher has not run:
    # the check before sending sees the exited process and the call goes to a fresh session instead.
    async with McpClient({"raw": raw_server(timeout_s=10)}) as client:
        [pid] = client.pids("raw")
        os.kill(pid, signal.SIGKILL)
        _wait_exited(pid)
        with caplog.at_level(logging.INFO, logger="tierflow.tools.mcp.client"):
            assert await client.acall("raw", "echo", {"text": "fresh"}) == "fresh"
        assert "its process exited; reconnecting before sending echo" in caplog.text
        assert client.pids("raw") != [pid]


def test_a_call_in_flight_fails_at_once_when_its_server_is_killed() -> None:
    timeout = 30
    with McpClient({"raw": raw_server(timeout_s=timeout)}) as client:
        [pid] = client.pids("raw")
        threading.Timer(0.5, os.kill, (pid, signal.SIGKILL)).start()
        started = time.monotonic()
        with pytest.raises(McpConnectionError, match=DIED.format(tool="sleep")):
            client.call("raw", "sleep", {"seconds": 25})
        assert time.monotonic() - started < timeout / 5
        assert client.call("raw", "echo", {"text": "back"}) == "back"
        assert client.pids("raw") != [pid]


def test_a_call_in_flight_fails_at_once_when_the_dead_server_s_output_stays_open() -> None:
    # A child of the server keeps its stdout open, so the client never sees the output end: only watching the
    # process tells it the server is gone.
    timeout = 30
    with McpClient({"raw": raw_server(timeout_s=timeout)}) as client:
        [pid] = client.pids("raw")
        child = int(client.call("raw", "hold_output", {"seconds": 60}))
        try:
            threading.Timer(0.5, os.kill, (pid, signal.SIGKILL)).start()
            started = time.monotonic()
            with pytest.raises(McpConnectionError, match=r"MCP server 'raw' died during 'sleep' \(its process "
                               r"exited with code -9\); the call may or may not have run, so it is not retried"):
                client.call("raw", "sleep", {"seconds": 25})
            assert time.monotonic() - started < timeout / 5
            assert client.call("raw", "echo", {"text": "back"}) == "back"
        finally:
            os.kill(child, signal.SIGKILL)


@pytest.mark.anyio
async def test_calls_racing_a_server_s_death_never_wait_for_the_timeout() -> None:
    # A call sent right after the kill may reach the dying server's stdin (a broken pipe fails the SDK's transport
    # task, which used to leave every call on it waiting for the timeout) or go to a fresh session.
    timeout = 30
    async with McpClient({"raw": raw_server(timeout_s=timeout)}) as client:
        for _ in range(3):
            [pid] = client.pids("raw")
            in_flight = asyncio.create_task(client.acall("raw", "sleep", {"seconds": 25}))
            await asyncio.sleep(0.3)
            started = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            racing = asyncio.create_task(client.acall("raw", "echo", {"text": "x"}))
            first, second = await asyncio.gather(in_flight, racing, return_exceptions=True)
            assert time.monotonic() - started < timeout / 5
            assert isinstance(first, McpConnectionError) and re.search(DIED.format(tool="sleep"), str(first))
            assert second == "x" or isinstance(second, McpConnectionError), second
            assert await client.acall("raw", "echo", {"text": "y"}) == "y"


def test_a_call_to_a_killed_http_server_fails_at_once(tmp_path: Path) -> None:
    # The SDK's streamable-HTTP transport fails its whole task group when a POST cannot connect; the call used to
    # wait for its timeout there too.
    port = free_port()
    log = tmp_path / "calculator.log"
    with log.open("wb") as sink:
        cmd = [sys.executable, "-m", "tierflow.mcp_servers.calculator", "--http", "--host", "127.0.0.1",
               "--port", str(port), "--token", "t0k"]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        wait_http(url, proc, log)
        timeout = 30
        with McpClient({"calc": McpServerConfig(transport="http", url=url, token="t0k", timeout_s=timeout)}) as client:
            assert client.call("calc", "calculate", {"expression": "2+3"}) == "5"
            assert client.pids("calc") == []  # no process of ours over HTTP
            proc.kill()
            proc.wait()
            started = time.monotonic()
            with pytest.raises(McpConnectionError, match=r"MCP server 'calc' .*during 'calculate'.*may or may not"):
                client.call("calc", "calculate", {"expression": "2+3"})
            assert time.monotonic() - started < timeout / 5
    finally:
        proc.kill()
        proc.wait()


def test_server_that_never_answers_the_handshake() -> None:
    hung = McpServerConfig(command=sys.executable, args=["-c", "import time; time.sleep(60)"], connect_timeout_s=1)
    started = time.monotonic()
    with pytest.raises(McpTimeoutError, match="'hung' did not complete the handshake within 1 s"):
        McpClient({"hung": hung}).start()
    assert time.monotonic() - started < 10


def test_missing_server_command_is_a_clear_error() -> None:
    with pytest.raises(McpToolError, match="cannot open MCP server 'gone'"):
        McpClient({"gone": McpServerConfig(command="/nonexistent/mcp-server")}).start()


def test_stateless_pool_spreads_calls_and_limits_concurrency() -> None:
    config = raw_server(stateless=True, pool_size=3, max_concurrency=4)
    with McpClient({"raw": config}) as client:

        async def burst() -> list[str]:
            return list(await asyncio.gather(*(client.acall("raw", "pid") for _ in range(12))))

        assert len(set(asyncio.run(burst()))) == 3  # one process per pooled session, all used

        async def peaks() -> list[int]:
            return [int(p) for p in await asyncio.gather(*(client.acall("raw", "peak", {"ms": 150})
                                                           for _ in range(12)))]

        # 12 calls, at most 4 in flight over 3 sessions: no session ever holds more than 2 at once.
        assert max(asyncio.run(peaks())) <= 2


def test_default_pool_is_one_session_per_cpu() -> None:
    cpus = len(os.sched_getaffinity(0))
    assert McpServerConfig(command="srv", stateless=True).sessions() == min(8, cpus)
    assert McpServerConfig(command="srv", stateless=True, pool_size=3).sessions() == 3
    assert McpServerConfig(command="srv", pool_size=3).sessions() == 1  # a stateful server keeps one session


@pytest.mark.anyio
async def test_async_with_runs_the_sessions_on_the_caller_s_loop() -> None:
    threads = set(threading.enumerate())
    async with McpClient({"raw": raw_server(stateless=True, pool_size=2, max_concurrency=4)}) as client:
        assert not [t for t in set(threading.enumerate()) - threads if t.name == "tierflow-mcp"]  # no own loop
        pids = await asyncio.gather(*(client.acall("raw", "pid") for _ in range(8)))
        assert len(set(pids)) == 2
        assert await client.tool("add").ainvoke({"a": 20, "b": 22}) == "42"
        # Threads may still call it while this loop runs; a blocking call on this loop's thread cannot work.
        assert await asyncio.to_thread(client.call, "raw", "add", {"a": 1, "b": 2}) == "3"
        with pytest.raises(McpToolError, match="would deadlock"):
            client.call("raw", "add", {"a": 1, "b": 2})
        with pytest.raises(McpToolError, match=r"use 'await client\.aclose\(\)'"):
            client.close()
        with pytest.raises(McpTimeoutError, match=r"did not answer within 0\.3 s"):
            await client.acall("raw", "sleep", {"seconds": 30}, timeout_s=0.3)
        task = asyncio.create_task(client.acall("raw", "sleep", {"seconds": 30}))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await client.acall("raw", "echo", {"text": "after"}) == "after"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(int(p)) for p in pids):
        await asyncio.sleep(0.1)
    assert not any(_alive(int(p)) for p in pids)
    with pytest.raises(McpToolError, match="not started"):
        await client.acall("raw", "pid")


def test_many_calls_from_other_loops_and_threads_share_the_pool() -> None:
    with McpClient({"raw": raw_server(stateless=True, pool_size=2, max_concurrency=8)}) as client:

        async def burst(offset: int) -> list[str]:
            return list(await asyncio.gather(*(client.acall("raw", "add", {"a": offset, "b": i}) for i in range(40))))

        results: dict[int, list[str]] = {}
        threads = [threading.Thread(target=lambda k=k: results.__setitem__(k, asyncio.run(burst(1000 * k))))
                   for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == {k: [str(1000 * k + i) for i in range(40)] for k in range(3)}


def test_schemas_are_compiled_once_and_structured_results_checked() -> None:
    tool = types.Tool(name="area", inputSchema={"type": "object", "properties": {"side": {"type": "number"}},
                                                "required": ["side"]},
                      outputSchema={"type": "object", "properties": {"result": {"type": "number"}},
                                    "required": ["result"]})
    schemas = ToolSchemas(tool)
    validate_arguments(tool, {"side": 2}, 1000, schemas)
    with pytest.raises(ToolInputError, match="side: 'two' is not of type 'number'"):
        validate_arguments(tool, {"side": "two"}, 1000, schemas)

    def result(structured: dict | None, error: bool = False) -> types.CallToolResult:
        return types.CallToolResult(content=[types.TextContent(type="text", text="4")],
                                    structuredContent=structured, isError=error)

    check_structured_result(schemas, result({"result": 4}))
    check_structured_result(schemas, result(None, error=True))  # a tool error is reported as such instead
    with pytest.raises(McpToolError, match="'area' declares an output schema but returned no structured content"):
        check_structured_result(schemas, result(None))
    with pytest.raises(McpToolError, match=r"does not match its output schema: result: 'four' is not of type"):
        check_structured_result(schemas, result({"result": "four"}))
    # A schema that is not valid JSON Schema refuses the call before anything is sent.
    broken = types.Tool(name="broken", inputSchema={"type": "object", "properties": {"x": {"type": "nope"}}})
    with pytest.raises(McpToolError, match="'broken' declares an invalid JSON schema"):
        validate_arguments(broken, {"x": 1}, 1000, ToolSchemas(broken))
    # $ref stays inside the schema: a server's schema never makes the client fetch a URL.
    remote = types.Tool(name="remote", inputSchema={"$ref": "http://127.0.0.1:9/schema.json"})
    with pytest.raises(McpToolError, match=r"refers to 'http://127\.0\.0\.1:9/schema\.json', which is not in"):
        validate_arguments(remote, {}, 1000, ToolSchemas(remote))


def test_close_stops_server_processes() -> None:
    import os

    client = McpClient({"raw": raw_server(stateless=True, pool_size=2)}).start()
    pids = {int(client.call("raw", "pid")) for _ in range(4)}
    client.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)
    with pytest.raises(McpToolError, match="not started"):
        client.call("raw", "pid")
    client.close()  # twice is fine
    assert os.getpid() not in pids


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting to be reaped counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def _wait_exited(pid: int, within_s: float = 10) -> None:
    """Until our child ``pid`` has exited for good (waitable or reaped), without reaping it.

    /proc shows a killed multi-threaded process as a zombie while its other threads (and its pipes) still go.
    """
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return
        except ChildProcessError:  # already reaped
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} still runs")
