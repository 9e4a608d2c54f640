"""An A2A agent built with the a2a-sdk's own server classes alone (no tierflow, no LangChain).

``python -m tests.a2a_echo --port P --log FILE`` streams ``echo: <task>`` back in a few artifact chunks and logs
every message it receives (text, metadata, Authorization and traceparent headers) as JSON lines. ``[fail]`` in a
message fails the task, ``[sleep N]`` sleeps N seconds first, ``[ask]`` asks for input and echoes the answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from pathlib import Path
from typing import Any

TASK_LINE = re.compile(r"Your task: (.*)")



def echo_app(url: str, log: Path | None = None, chunks: int = 3) -> Any:
    """A Starlette app serving an echo agent with only the a2a-sdk's classes."""
    from a2a.helpers import new_text_part
    from a2a.server.agent_execution import AgentExecutor, RequestContext
    from a2a.server.events import EventQueue
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
    from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
    from a2a.types import a2a_pb2 as pb
    from google.protobuf.json_format import MessageToDict
    from starlette.applications import Starlette

    class Echo(AgentExecutor):
        async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
            text = context.get_user_input()
            if log is not None:
                headers = context.call_context.state.get("headers", {})
                entry = {"text": text, "task_id": context.task_id, "metadata": MessageToDict(context.message.metadata),
                         "authorization": headers.get("authorization"), "traceparent": headers.get("traceparent")}
                with log.open("a") as sink:
                    sink.write(json.dumps(entry) + "\n")
            task = context.current_task
            if task is None:
                task = pb.Task(id=str(context.task_id), context_id=str(context.context_id),
                               status=pb.TaskStatus(state=pb.TaskState.TASK_STATE_SUBMITTED),
                               history=[context.message])
                await event_queue.enqueue_event(task)
            updater = TaskUpdater(event_queue, task.id, task.context_id)
            await updater.start_work()
            if "[fail]" in text:
                raise RuntimeError("asked to fail")
            sleep = re.search(r"\[sleep ([\d.]+)\]", text)
            if sleep:
                await asyncio.sleep(float(sleep.group(1)))
            if "[ask]" in text and task.status.state != pb.TaskState.TASK_STATE_INPUT_REQUIRED:
                await updater.requires_input(updater.new_agent_message([new_text_part("Which one?")]))
                return
            found = TASK_LINE.findall(text)
            reply = f"echo: {found[-1] if found else text}"
            step = max(1, len(reply) // chunks + 1)
            for index, start in enumerate(range(0, len(reply), step)):
                await updater.add_artifact([new_text_part(reply[start:start + step])], artifact_id="echo",
                                           append=index > 0)
            await updater.complete()

        async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
            await TaskUpdater(event_queue, str(context.task_id), str(context.context_id)).cancel()

    card = pb.AgentCard(name="echo", description="echoes its task", version="1",
                        supported_interfaces=[pb.AgentInterface(url=url, protocol_binding="JSONRPC",
                                                                protocol_version="1.0")],
                        capabilities=pb.AgentCapabilities(streaming=True), default_input_modes=["text/plain"],
                        default_output_modes=["text/plain"],
                        skills=[pb.AgentSkill(id="echo", name="echo", description="echoes", tags=["echo"])])
    handler = DefaultRequestHandler(agent_executor=Echo(), task_store=InMemoryTaskStore(), agent_card=card)
    return Starlette(routes=[*create_agent_card_routes(card), *create_jsonrpc_routes(handler, rpc_url="/")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, default=None)
    args = parser.parse_args()
    import uvicorn

    url = f"http://127.0.0.1:{args.port}/"
    uvicorn.run(echo_app(url, args.log), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
