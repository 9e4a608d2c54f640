"""Talking to a remote A2A agent: one exchange (send, stream, answer) as a LangChain chat model.

The a2a-sdk client is async and graph nodes are sync, so exchanges run on one event loop thread shared by every
remote agent of the process, each bounded as a whole by the agent's ``timeout_s``. Streamed text reaches the
caller's callbacks as tokens (so ``tierflow run --stream`` shows it); the reply's ``response_metadata`` carries
``kind: "a2a"``, the remote task and its state. The a2a-sdk (the ``a2a`` extra) is imported on first use.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import Field, PrivateAttr, SecretStr

from tierflow.runtimes.errors import TierflowError, TierTimeoutError

T = TypeVar("T")
KIND = "a2a"
META_KEY = "tierflow"  # the metadata key tierflow's A2A server and client exchange run facts under
TERMINAL = frozenset({"completed", "failed", "canceled", "rejected"})
_TRACE_CONTEXT = TraceContextTextMapPropagator()  # traceparent/tracestate only, never baggage


class RemoteAgentError(TierflowError, ConnectionError):
    """A remote A2A agent could not be reached, refused the call, or ended its task failed."""

    def __init__(self, agent: str, reason: str) -> None:
        super().__init__(f"remote agent {agent!r}: {reason}")
        self.agent = agent
        self.reason = reason


@dataclass
class A2AReply:
    """What one exchange produced: the answer text, the task's state, its ids and the usage the agent reported."""

    text: str
    state: str
    task_id: str | None = None
    context_id: str | None = None
    agent: str = ""
    usage: dict[str, int] = field(default_factory=dict)
    remote_run_id: str | None = None


class _LoopThread:
    """One asyncio loop on a daemon thread, shared by every remote agent of the process."""

    _shared: _LoopThread | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True, name="tierflow-a2a").start()

    @classmethod
    def shared(cls) -> _LoopThread:
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def submit(self, coro: Coroutine[Any, Any, T]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)


def trace_headers() -> dict[str, str]:
    """W3C ``traceparent`` (and ``tracestate``) of the current span; empty outside a span."""
    headers: dict[str, str] = {}
    _TRACE_CONTEXT.inject(headers)
    return headers


def prompt_text(messages: Sequence[BaseMessage]) -> str:
    """The text sent to a remote agent: every message's text, in order, as paragraphs."""
    return "\n\n".join(m.text if isinstance(m.content, list) else str(m.content) for m in messages).strip()


class A2AChatModel(BaseChatModel):
    """A remote A2A agent as a chat model: the prompt goes as one user message, the agent's answer comes back.

    Per call: ``private=True`` tells a tierflow agent to keep the data on its private tiers; ``task_id`` and
    ``context_id`` continue a task that asked for input. The reply's ``response_metadata["a2a"]`` has the state.
    """

    agent: str
    url: str
    token: SecretStr | None = Field(None, exclude=True)
    timeout_s: float = Field(60.0, gt=0)
    streaming: bool = True
    tier: str = ""
    _client: Any = PrivateAttr(default=None)
    _card_name: str = PrivateAttr(default="")
    _connecting: Any = PrivateAttr(default=None)

    def model_post_init(self, context: Any, /) -> None:
        if not self.tier:
            self.tier = f"{KIND}:{self.agent}"

    @property
    def _llm_type(self) -> str:
        return "tierflow-a2a"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.agent, "tier": self.tier, "kind": KIND, "url": self.url}

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        message_id = f"run-{run_manager.run_id}" if run_manager is not None else f"run-{uuid.uuid4()}"

        def on_text(delta: str) -> None:
            if run_manager is not None:  # the same id as the final message, so stream handlers do not repeat it
                run_manager.on_llm_new_token(delta, chunk=ChatGenerationChunk(
                    message=AIMessageChunk(content=delta, id=message_id)))

        started = time.perf_counter()
        reply = self.exchange(prompt_text(messages), private=bool(kwargs.get("private")),
                              task_id=kwargs.get("task_id"), context_id=kwargs.get("context_id"), on_text=on_text)
        input_tokens = reply.usage.get("input_tokens") or len(prompt_text(messages)) // 4 + 1
        output_tokens = reply.usage.get("output_tokens") or len(reply.text) // 4 + 1
        route = {"tier": self.tier, "rule": "remote_agent", "kind": KIND, "attempt": 1, "reason": "",
                 "fallback_from": None, "skipped": {}}
        message = AIMessage(reply.text, id=message_id, usage_metadata={
            "input_tokens": int(input_tokens), "output_tokens": int(output_tokens),
            "total_tokens": int(input_tokens) + int(output_tokens)},
            response_metadata={"tier": self.tier, "kind": KIND, "model_name": reply.agent or self.agent,
                               "route": route, "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                               KIND: {"state": reply.state, "task_id": reply.task_id, "context_id": reply.context_id,
                                      "remote_run_id": reply.remote_run_id, "url": self.url}})
        return ChatResult(generations=[ChatGeneration(message=message)])

    # ----- the exchange ---------------------------------------------------------------------------

    def exchange(self, text: str, *, private: bool = False, task_id: str | None = None,
                 context_id: str | None = None, on_text: Callable[[str], None] | None = None) -> A2AReply:
        """Send ``text`` and wait for the task to end or ask for input, at most ``timeout_s`` in all.

        Streamed text is handed to ``on_text`` on this thread; a deadline cancels the remote task (best effort)
        and raises TierTimeoutError; other failures raise RemoteAgentError.
        """
        headers = trace_headers()  # read on the caller's thread: the span is current there
        metadata = {META_KEY: {"private": private}}
        chunks: queue.Queue[tuple[str, Any]] = queue.Queue()
        seen: dict[str, str] = {"task_id": task_id or ""}
        loop = _LoopThread.shared()
        future = loop.submit(self._exchange(text, headers, metadata, task_id, context_id, chunks, seen))
        deadline = time.monotonic() + self.timeout_s
        while True:
            left = deadline - time.monotonic()
            try:
                kind, value = chunks.get(timeout=max(left, 0.0))
            except queue.Empty:
                future.cancel()
                if seen["task_id"]:
                    loop.submit(self._cancel_quietly(seen["task_id"]))
                raise TierTimeoutError(self.tier, self.timeout_s) from None
            if kind == "text":
                if on_text is not None:
                    on_text(value)
            elif kind == "error":
                raise value
            else:
                return value

    async def _exchange(self, text: str, headers: Mapping[str, str], metadata: dict[str, Any],
                        task_id: str | None, context_id: str | None, out: queue.Queue[tuple[str, Any]],
                        seen: dict[str, str]) -> None:
        try:
            out.put(("done", await self._send(text, headers, metadata, task_id, context_id, out, seen)))
        except asyncio.CancelledError:
            raise
        except RemoteAgentError as exc:
            out.put(("error", exc))
        except Exception as exc:  # the SDK's and httpx's errors, named for the caller
            self._client = None  # reconnect (and re-read the card) next time
            out.put(("error", RemoteAgentError(self.agent, f"{type(exc).__name__}: {exc}")))

    async def _send(self, text: str, headers: Mapping[str, str], metadata: dict[str, Any], task_id: str | None,
                    context_id: str | None, out: queue.Queue[tuple[str, Any]], seen: dict[str, str]) -> A2AReply:
        from a2a.client import ClientCallContext
        from a2a.types import a2a_pb2 as pb

        client = await self._connect()
        message = pb.Message(role=pb.Role.ROLE_USER, message_id=uuid.uuid4().hex, parts=[pb.Part(text=text)],
                             task_id=task_id or "", context_id=context_id or "")
        message.metadata.update(metadata)
        request = pb.SendMessageRequest(message=message)
        streamed: dict[str, str] = {}  # artifact id -> text the caller has seen
        reply = A2AReply(text="", state="unknown", task_id=task_id, context_id=context_id, agent=self._card_name)
        artifacts: dict[str, Any] = {}
        status_text = ""
        async for event in client.send_message(request, context=ClientCallContext(service_parameters=dict(headers))):
            kind = event.WhichOneof("payload")
            if kind == "message":  # a direct reply, no task
                return A2AReply(text=_parts_text(event.message.parts), state="completed", agent=self._card_name,
                                context_id=event.message.context_id or None)
            if kind == "task":
                task = event.task
                reply.task_id, reply.context_id = task.id, task.context_id
                reply.state = _state(task.status.state)
                status_text = _parts_text(task.status.message.parts) or status_text
                artifacts = {a.artifact_id: a for a in task.artifacts} or artifacts
            elif kind == "status_update":
                update = event.status_update
                reply.task_id, reply.context_id = update.task_id, update.context_id
                reply.state = _state(update.status.state)
                status_text = _parts_text(update.status.message.parts) or status_text
            elif kind == "artifact_update":
                update = event.artifact_update
                reply.task_id = update.task_id
                artifact = update.artifact
                known = artifacts.get(artifact.artifact_id)
                if update.append and known is not None:
                    known.parts.extend(artifact.parts)
                    known.metadata.update(_struct(artifact.metadata))
                else:
                    artifacts[artifact.artifact_id] = artifact
                now = _parts_text(artifacts[artifact.artifact_id].parts, "")
                before = streamed.get(artifact.artifact_id, "")
                if now.startswith(before) and len(now) > len(before):  # a replacement that diverges is not re-sent
                    out.put(("text", now[len(before):]))
                streamed[artifact.artifact_id] = now
            seen["task_id"] = reply.task_id or ""
        texts = [_parts_text(a.parts, "") for a in artifacts.values()]
        reply.text = "\n".join(t for t in texts if t) or status_text
        for artifact in artifacts.values():
            facts = _struct(artifact.metadata).get(META_KEY) or {}
            if isinstance(facts, dict):
                usage = facts.get("usage") or {}
                reply.usage = {k: int(v) for k, v in usage.items() if isinstance(v, int | float)} or reply.usage
                reply.remote_run_id = facts.get("run_id") or reply.remote_run_id
        if reply.state in ("failed", "rejected", "canceled", "auth-required"):
            raise RemoteAgentError(self.agent, f"the task ended {reply.state}: {status_text or '(no message)'}")
        if reply.state == "input-required":
            reply.text = status_text
        elif reply.state != "completed":
            raise RemoteAgentError(self.agent, f"the reply stream ended with the task {reply.state}")
        return reply

    async def _connect(self) -> Any:
        if self._connecting is None:  # created on the loop thread, the only one that runs this
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._client is None:
                self._client = await self._open()
            return self._client

    async def _open(self) -> Any:
        import httpx
        from a2a.client import ClientConfig, create_client

        headers = {"Authorization": f"Bearer {self.token.get_secret_value()}"} if self.token else {}
        http = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(self.timeout_s))
        try:
            client = await create_client(self.url, client_config=ClientConfig(streaming=self.streaming,
                                                                              httpx_client=http))
        except Exception as exc:
            await http.aclose()
            raise RemoteAgentError(self.agent, f"cannot read its agent card at {self.url}: "
                                               f"{type(exc).__name__}: {exc}") from exc
        card = getattr(client, "_card", None)
        self._card_name = str(getattr(card, "name", "") or self.agent)
        return client

    async def _cancel_quietly(self, task_id: str) -> None:
        """Ask the agent to cancel a task this side gave up on; errors are ignored (it is a courtesy)."""
        from a2a.types import a2a_pb2 as pb

        try:
            client = await self._connect()
            await asyncio.wait_for(client.cancel_task(pb.CancelTaskRequest(id=task_id)), 5)
        except Exception:  # best effort by design
            pass


def _state(value: int) -> str:
    """A TaskState as the spec's name: TASK_STATE_INPUT_REQUIRED -> input-required."""
    from a2a.types import a2a_pb2 as pb

    return pb.TaskState.Name(value).removeprefix("TASK_STATE_").lower().replace("_", "-")


def _parts_text(parts: Any, sep: str = "\n") -> str:
    return sep.join(p.text for p in parts if p.text)


def _struct(value: Any) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    try:
        return MessageToDict(value)
    except Exception:
        return {}
