"""The ``tierflow`` MCP server: run the orchestrator, classify intents and plan tasks for any MCP client.

It is built from injected callables so that this package needs nothing above ``graphs``; ``tierflow mcp
serve tierflow`` wires them from settings. Memory tools are not listed until a memory backend exists.
``run_task`` continues the caller's W3C trace (``traceparent`` header over HTTP, ``_meta`` over stdio):
the run executes with the caller's span current, so a traced server's spans join the caller's trace.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.from_thread
import anyio.to_thread
from langchain_core.callbacks import BaseCallbackHandler
from mcp.server.fastmcp import Context, FastMCP
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tierflow.graphs.requests import check_request

if TYPE_CHECKING:  # the runner imports LangGraph: not needed to answer initialize and tools/list
    from tierflow.graphs.runner import RunResult

ProgressFn = Callable[[float, float | None, str], None]
ORCHESTRATOR_STEPS = ("classify_intent", "recall", "plan", "execute", "synthesize", "remember")
_TRACE_CONTEXT = TraceContextTextMapPropagator()  # traceparent/tracestate only, never baggage
_TRACE_KEYS = ("traceparent", "tracestate")


class RunTask(Protocol):
    def __call__(self, request: str, progress: ProgressFn) -> RunResult: ...


class NodeProgress(BaseCallbackHandler):
    """LangChain callback that reports each orchestrator step a run enters as one progress step."""

    def __init__(self, progress: ProgressFn, steps: tuple[str, ...] = ORCHESTRATOR_STEPS) -> None:
        self.progress = progress
        self.steps = steps
        self.seen: list[str] = []

    def on_chain_start(self, serialized: Any, inputs: Any, *, metadata: Mapping[str, Any] | None = None,
                       **kwargs: Any) -> None:
        node = (metadata or {}).get("langgraph_node")
        if node in self.steps and node not in self.seen and (metadata or {}).get("langgraph_step") is not None:
            self.seen.append(node)
            self.progress(len(self.seen), len(self.steps), f"step {node}")


def caller_trace_context(ctx: Context) -> otel_context.Context | None:
    """The caller's trace context from the HTTP ``traceparent`` header, else from ``_meta`` (stdio); None if absent."""
    request = getattr(ctx.request_context, "request", None)
    headers = getattr(request, "headers", None) or {}
    carrier = {key: str(headers[key]) for key in _TRACE_KEYS if key in headers}
    if "traceparent" not in carrier:
        extra = getattr(ctx.request_context.meta, "model_extra", None) or {}
        carrier = {key: extra[key] for key in _TRACE_KEYS if isinstance(extra.get(key), str)}
    if "traceparent" not in carrier:
        return None
    extracted = _TRACE_CONTEXT.extract(carrier)
    return extracted if trace.get_current_span(extracted).get_span_context().is_valid else None


def in_trace_context(parent: otel_context.Context | None, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` run with ``parent`` as the current OpenTelemetry context (on whichever thread calls it)."""
    if parent is None:
        return fn

    def run(*args: Any) -> Any:
        token = otel_context.attach(parent)
        try:
            return fn(*args)
        finally:
            otel_context.detach(token)
    return run


def run_summary(result: RunResult) -> dict[str, Any]:
    """What ``run_task`` returns: answer, status and why it failed, run id, tiers used, intent, pattern, time."""
    tiers = sorted({call.tier for call in result.model_calls if not call.error})
    return {"answer": result.answer, "status": result.status, "errors": result.errors, "run_id": result.run_id,
            "tiers_used": tiers,
            "model_calls": len(result.model_calls), "intent": (result.intent or {}).get("label"),
            "pattern": result.pattern, "elapsed_s": result.elapsed_s}


def build_tierflow_server(run_task: RunTask, classify: Callable[[str], Mapping[str, Any]],
                          plan: Callable[[str], Mapping[str, Any]],
                          catalog: Callable[[], Mapping[str, Any]],
                          warm: Callable[[], None] | None = None) -> FastMCP:
    """The server; ``catalog()`` returns {"graphs": [...], "intents": [...], "agents": [...]} for the resources.

    ``warm()``, when given, is called as the server starts serving; it must return at once (start loading in the
    background) and the other callables must wait for what it loads, so the handshake never waits for models.
    """

    @contextlib.asynccontextmanager
    async def lifespan(_: FastMCP) -> AsyncIterator[None]:
        if warm is not None:
            warm()
        yield

    server = FastMCP("tierflow", instructions="tierflow multi-agent orchestration: run_task answers a request "
                     "end to end; classify_intent and plan_task show the first steps of a run.", log_level="WARNING",
                     lifespan=lifespan)
    # One run at a time: in-process model runtimes are not safe to share between concurrent runs.
    runs = anyio.CapacityLimiter(1)
    run_fn, classify_fn, plan_fn = run_task, classify, plan  # the tools below reuse these names

    @server.tool()
    async def run_task(request: str, ctx: Context) -> dict[str, Any]:
        """Run a request through tierflow's orchestrator; returns the answer, run id and device tiers used."""
        text = check_request(request)

        def progress(done: float, total: float | None, message: str) -> None:
            anyio.from_thread.run(ctx.report_progress, done, total, message)

        await ctx.report_progress(0, len(ORCHESTRATOR_STEPS), "queued")
        traced_run = in_trace_context(caller_trace_context(ctx), run_fn)  # spans join the caller's trace
        result = await anyio.to_thread.run_sync(traced_run, text, progress, limiter=runs)
        await ctx.report_progress(len(ORCHESTRATOR_STEPS), len(ORCHESTRATOR_STEPS), "done")
        return run_summary(result)

    @server.tool()
    async def classify_intent(text: str) -> dict[str, Any]:
        """Classify a request's intent: label, confidence, out-of-scope flag and runners-up."""
        return dict(await anyio.to_thread.run_sync(classify_fn, check_request(text)))

    @server.tool()
    async def plan_task(request: str) -> dict[str, Any]:
        """Decompose a request into tierflow's typed plan (subtasks with role, tools, dependencies)."""
        return dict(await anyio.to_thread.run_sync(plan_fn, check_request(request), limiter=runs))

    for key, what in (("graphs", "graphs and collaboration patterns"), ("intents", "intent labels"),
                      ("agents", "agent roles")):
        def make(key: str = key, what: str = what) -> Callable[[], str]:
            def read() -> str:
                return json.dumps(catalog().get(key, []), indent=1)
            read.__name__ = f"list_{key}"
            read.__doc__ = f"The available {what} (JSON)."
            return read

        server.resource(f"tierflow://{key}", name=key, mime_type="application/json")(make())

    @server.prompt()
    def ask_tierflow(request: str) -> str:
        """Answer a request with tierflow's agents."""
        return f"Use the run_task tool with this request, then report its answer and the tiers used:\n{request}"

    @server.prompt()
    def plan_first(goal: str) -> str:
        """Show tierflow's plan for a goal before running it."""
        return (f"Call plan_task for the goal below and show the subtasks. Ask me to confirm, then call run_task.\n"
                f"Goal: {goal}")

    return server
