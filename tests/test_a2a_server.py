"""tierflow served over A2A, driven by the a2a-sdk's own client (and raw JSON-RPC for spec 0.3 names).

The servers are real ``tierflow a2a serve`` processes on loopback running the orchestrator on scripted models
(tests/a2a_support.py); see tests/fixtures_a2a.py.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client import ClientConfig, create_client
from a2a.types import a2a_pb2 as pb
from a2a.utils.errors import A2AError
from google.protobuf.json_format import MessageToDict

from tests.fixtures_a2a import A2A_TOKEN, CARD_PATH, REPO, A2AServers
from tierflow.graphs.runner import sqlite_checkpointer
from tierflow.mcp_servers.a2a_server import MAX_BODY_BYTES, agent_card
from tierflow.mcp_servers.serve import ServeError

pytestmark = pytest.mark.server
STATE = pb.TaskState


async def _client(url: str, *, streaming: bool, token: str | None = None) -> Any:
    http = httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"} if token else {}, timeout=30)
    return await create_client(url, client_config=ClientConfig(streaming=streaming, httpx_client=http))


def _message(text: str, task_id: str = "", context_id: str = "") -> pb.SendMessageRequest:
    return pb.SendMessageRequest(message=pb.Message(role=pb.Role.ROLE_USER, message_id=f"m-{time.monotonic_ns()}",
                                                    parts=[pb.Part(text=text)], task_id=task_id,
                                                    context_id=context_id))


async def _events(client: Any, request: pb.SendMessageRequest) -> AsyncIterator[tuple[str, Any, float]]:
    async for event in client.send_message(request):
        kind = event.WhichOneof("payload")
        yield kind, getattr(event, kind), time.time()


def _task_of(events: list[tuple[str, Any, float]]) -> pb.Task:
    return next(value for kind, value, _ in events if kind == "task")


def test_card_names_skills_both_specs_and_the_token_scheme(a2a_servers: A2AServers) -> None:
    card = httpx.get(a2a_servers.tierflow.url + CARD_PATH, timeout=10).json()
    assert card["name"] == "tierflow" and card["capabilities"]["streaming"] is True
    assert "scripted models" in card["description"]  # --graph: the factory's docstring
    assert {i["protocolVersion"] for i in card["supportedInterfaces"]} == {"1.0", "0.3"}
    assert card["url"] == a2a_servers.tierflow.url and card["protocolVersion"] == "0.3"  # 0.3 clients read these
    # The guarded server's card is public (A2A discovery) and says how to authenticate.
    guarded = httpx.get(a2a_servers.guarded.url + CARD_PATH, timeout=10).json()
    assert guarded["securitySchemes"]["bearer"]["httpAuthSecurityScheme"]["scheme"] == "bearer"
    # The orchestrator's card: one skill per intent label of the intent model (the demo model here).
    from tierflow.a2a_cli import ORCHESTRATOR_DESCRIPTION, intent_labels
    from tierflow.settings import load_settings

    built = agent_card("http://127.0.0.1:1/", description=ORCHESTRATOR_DESCRIPTION, version="0",
                       intents=intent_labels(load_settings()))
    assert sorted(s.id for s in built.skills) == ["calculate", "explain", "plan", "write"]


def test_send_returns_the_answer_and_the_task_is_the_run(a2a_servers: A2AServers) -> None:
    async def go() -> tuple[pb.Task, pb.Task]:
        client = await _client(a2a_servers.tierflow.url, streaming=False)
        events = [e async for e in _events(client, _message("Why is the sky blue?"))]
        task = _task_of(events)
        again = await client.get_task(pb.GetTaskRequest(id=task.id))
        await client.close()
        return task, again

    task, again = asyncio.run(go())
    assert task.status.state == STATE.TASK_STATE_COMPLETED
    assert [a.parts[0].text for a in task.artifacts] == ["Answer: Explain clearly and briefly: Why is the sky blue?"]
    facts = MessageToDict(task.artifacts[0].metadata)["tierflow"]
    assert facts["run_id"] == task.id and facts["status"] == "done" and facts["model_calls"] == 1
    assert MessageToDict(task.metadata)["tierflow"]["run_id"] == task.id
    assert again.status.state == STATE.TASK_STATE_COMPLETED and again.artifacts[0].parts[0].text.startswith("Answer:")
    # task id = run id: the run is checkpointed under it, where `tierflow resume TASK_ID` finds it
    home = a2a_servers.tierflow.home
    assert home is not None
    saver = sqlite_checkpointer(home / "checkpoints.sqlite")
    state = saver.get_tuple({"configurable": {"thread_id": task.id}})
    assert state is not None and state.checkpoint["channel_values"]["answer"].startswith("Answer:")


def test_stream_reports_nodes_then_tokens_then_the_answer(a2a_servers: A2AServers) -> None:
    async def go() -> list[tuple[str, Any, float]]:
        client = await _client(a2a_servers.tierflow.url, streaming=True)
        events = [e async for e in _events(client, _message("Name three colours"))]
        await client.close()
        return events

    events = asyncio.run(go())
    kinds = [kind for kind, _, _ in events]
    assert kinds[0] == "task" and kinds[-1] == "status_update"
    assert events[-1][1].status.state == STATE.TASK_STATE_COMPLETED
    steps = [p.text for kind, v, _ in events if kind == "status_update" for p in v.status.message.parts]
    for step in ("step classify_intent", "step plan", "step execute/work", "step synthesize"):
        assert step in steps
    chunks = [v for kind, v, _ in events if kind == "artifact_update"]
    streamed, final = chunks[:-1], chunks[-1]
    assert len(streamed) > 3 and not streamed[0].append and all(c.append for c in streamed[1:])
    answer = "Answer: Explain clearly and briefly: Name three colours"
    assert "".join(c.artifact.parts[0].text for c in streamed) == answer  # the tokens, as the model made them
    assert final.last_chunk and not final.append and final.artifact.parts[0].text == answer  # then the answer
    # Node events carry when the graph emitted them; the client got each soon after (loose bound: shared CPUs).
    delays = [at - MessageToDict(v.status.message.metadata)["tierflow"]["at"]
              for kind, v, at in events if kind == "status_update" and v.status.message.parts]
    assert delays and max(delays) < 2.0


def test_a_plan_question_is_input_required_and_the_next_message_resumes(a2a_servers: A2AServers) -> None:
    url = a2a_servers.guarded.url

    async def go() -> tuple[list[Any], list[Any], pb.Task, pb.Task]:
        client = await _client(url, streaming=True, token=A2A_TOKEN)
        first = [e async for e in _events(client, _message("Plan a picnic"))]
        task_id = _task_of(first).id
        context_id = _task_of(first).context_id
        second = [e async for e in _events(client, _message("yes", task_id, context_id))]
        done = await client.get_task(pb.GetTaskRequest(id=task_id))
        # another task: asked, then cancelled while it waits
        waiting = _task_of([e async for e in _events(client, _message("Plan a party"))])
        cancelled = await client.cancel_task(pb.CancelTaskRequest(id=waiting.id))
        with pytest.raises(A2AError, match="terminal state"):
            _ = [e async for e in _events(client, _message("yes", waiting.id))]
        await client.close()
        return first, second, done, cancelled

    first, second, done, cancelled = asyncio.run(go())
    asked = first[-1][1]
    assert asked.status.state == STATE.TASK_STATE_INPUT_REQUIRED
    question = asked.status.message.parts[0].text
    assert question.startswith("Run this sequential plan?") and "Plan a picnic" in question
    assert MessageToDict(asked.status.message.metadata)["tierflow"]["interrupt"]["kind"] == "confirm_plan"
    assert second[-1][1].status.state == STATE.TASK_STATE_COMPLETED
    assert done.status.state == STATE.TASK_STATE_COMPLETED
    assert done.artifacts[0].parts[0].text == "Answer: Explain clearly and briefly: Plan a picnic"
    assert cancelled.status.state == STATE.TASK_STATE_CANCELED


def test_cancel_stops_a_running_task(a2a_servers: A2AServers) -> None:
    async def go() -> tuple[pb.Task, pb.Task]:
        client = await _client(a2a_servers.tierflow.url, streaming=False)
        request = _message("Explain tides [slow]")
        request.configuration.return_immediately = True  # answer at once; the run goes on in the background
        started = _task_of([e async for e in _events(client, request)])
        await asyncio.sleep(0.3)
        cancelled = await client.cancel_task(pb.CancelTaskRequest(id=started.id))
        await asyncio.sleep(2.0)  # past the slow model call: a run that kept going would have answered by now
        later = await client.get_task(pb.GetTaskRequest(id=started.id))
        await client.close()
        return cancelled, later

    cancelled, later = asyncio.run(go())
    assert cancelled.status.state == STATE.TASK_STATE_CANCELED
    assert later.status.state == STATE.TASK_STATE_CANCELED and not later.artifacts


def test_spec_0_3_method_names(a2a_servers: A2AServers) -> None:
    url = a2a_servers.tierflow.url

    def rpc(method: str, params: dict[str, Any]) -> dict[str, Any]:
        reply = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, timeout=30)
        assert reply.status_code == 200
        return reply.json()

    message = {"role": "user", "messageId": "legacy-1", "kind": "message", "parts": [{"kind": "text", "text": "Hi"}]}
    task = rpc("message/send", {"message": message})["result"]
    assert task["kind"] == "task" and task["status"]["state"] == "completed"
    assert task["artifacts"][-1]["parts"][0]["text"] == "Answer: Explain clearly and briefly: Hi"
    assert rpc("tasks/get", {"id": task["id"]})["result"]["status"]["state"] == "completed"
    assert "error" in rpc("tasks/cancel", {"id": task["id"]})  # a finished task cannot be cancelled
    stream = httpx.post(url, json={"jsonrpc": "2.0", "id": 2, "method": "message/stream",
                                   "params": {"message": {**message, "messageId": "legacy-2"}}},
                        headers={"Accept": "text/event-stream"}, timeout=30)
    results = [json.loads(line[5:])["result"] for line in stream.text.splitlines() if line.startswith("data:")]
    assert {r["kind"] for r in results} >= {"task", "status-update", "artifact-update"}
    assert results[-1]["status"]["state"] == "completed" and results[-1]["final"] is True


def test_tokens_hosts_origins_and_body_size_are_checked(a2a_servers: A2AServers) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "nope"}}
    guarded = a2a_servers.guarded.url
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": A2A_TOKEN}):
        reply = httpx.post(guarded, json=body, headers={"A2A-Version": "1.0", **headers}, timeout=10)
        assert reply.status_code == 401 and reply.json()["error"] == "unauthorized"
    ok = httpx.post(guarded, json=body, headers={"A2A-Version": "1.0", "Authorization": f"Bearer {A2A_TOKEN}"},
                    timeout=10)
    assert ok.status_code == 200 and ok.json()["error"]["message"]  # authenticated: a JSON-RPC "task not found"
    open_url = a2a_servers.tierflow.url
    port = open_url.rsplit(":", 1)[1].strip("/")
    assert httpx.post(open_url, json=body, headers={"Host": f"evil.example:{port}"}, timeout=10).status_code == 421
    assert httpx.post(open_url, json=body, headers={"Origin": "http://localhost:1"}, timeout=10).status_code == 403
    own = httpx.post(open_url, json=body, headers={"Origin": f"http://localhost:{port}"}, timeout=10)
    assert own.status_code == 200
    big = httpx.post(open_url, content=b"x" * (MAX_BODY_BYTES + 1), headers={"Content-Type": "application/json"},
                     timeout=10)
    assert big.status_code == 413


def test_off_loopback_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    from tierflow.mcp_servers.a2a_server import GraphRuns, SqliteTaskStore, a2a_app

    card = agent_card("http://x/", description="d", version="0")
    with pytest.raises(ServeError, match=r"refusing to serve A2A on 0\.0\.0\.0 without a bearer token"):
        a2a_app(GraphRuns(graph=lambda: None), card, SqliteTaskStore(tmp_path / "tasks.sqlite"), host="0.0.0.0")
    a2a_app(GraphRuns(graph=lambda: None), card, SqliteTaskStore(tmp_path / "tasks.sqlite"), host="0.0.0.0",
            token="a-token")  # with a token it builds
    proc = subprocess.run([sys.executable, "-m", "tierflow.cli", "a2a", "serve", "--host", "0.0.0.0", "--port", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TIERFLOW_HOME": str(tmp_path / "h")})
    assert proc.returncode == 2 and "without a bearer token" in proc.stderr
    assert not (tmp_path / "h").exists()  # refused before anything was written


def test_only_answer_text_streams_into_the_answer() -> None:
    from tierflow.graphs.events import NodeEvent, TokenEvent
    from tierflow.mcp_servers.a2a_server import _AnswerTokens

    tokens = _AnswerTokens()
    seen = [tokens.answer_text(TokenEvent(graph=g, node=n, text=t)) for g, n, t in [
        ("", "plan", '{"pattern"'), ("execute", "work", " "), ("execute", "work", '{"action"'),
        ("execute", "work", ': "finish"}')]]
    tokens.node_done(NodeEvent(graph="execute", node="work", keys=["results"]))
    seen += [tokens.answer_text(TokenEvent(graph=g, node=n, text=t)) for g, n, t in [
        ("", "synthesize", "\n"), ("", "synthesize", "Rain"), ("", "synthesize", "bows {are} arcs")]]
    assert "".join(seen) == "\nRainbows {are} arcs"  # planner JSON, tool decisions: not the answer


def test_tasks_outlive_the_server_process(tmp_path: Path) -> None:
    from a2a.server.context import ServerCallContext

    from tierflow.mcp_servers.a2a_server import SqliteTaskStore

    caller = ServerCallContext()
    first = SqliteTaskStore(tmp_path / "tasks.sqlite")
    for n, state in enumerate((STATE.TASK_STATE_COMPLETED, STATE.TASK_STATE_INPUT_REQUIRED)):
        asyncio.run(first.save(pb.Task(id=f"t{n}", context_id="c", status=pb.TaskStatus(state=state)), caller))
    again = SqliteTaskStore(tmp_path / "tasks.sqlite")  # a restarted server opens the same file
    found = asyncio.run(again.get("t1", caller))
    assert found is not None and found.status.state == STATE.TASK_STATE_INPUT_REQUIRED
    waiting = asyncio.run(again.list(pb.ListTasksRequest(status=STATE.TASK_STATE_INPUT_REQUIRED), caller))
    assert [t.id for t in waiting.tasks] == ["t1"] and waiting.total_size == 1
    asyncio.run(again.delete("t1", caller))
    assert asyncio.run(again.get("t1", caller)) is None
