"""Deferred tracing: a run records its callback events and its spans are built after it ends.

The spans Langfuse receives must look exactly as if they were built live: the times the steps really
took, the ids that went out in ``traceparent``, the trace id the caller got back at once.
"""

from __future__ import annotations

import itertools
import time

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from tests.scripted import ScriptedChatModel
from tests.test_tracing_export import scripted_graph
from tierflow.graphs.runner import run_request, sqlite_checkpointer
from tierflow.tracing import TierflowCallbackHandler, open_tracing
from tierflow.tracing.deferred import DeferredHandler


class State(TypedDict, total=False):
    request: str
    user_id: str
    answer: str


def chain(checkpoints, *steps):
    """The steps (functions, named after themselves) one after another, checkpointed to ``checkpoints``."""
    graph = StateGraph(State)
    for step in steps:
        graph.add_node(step.__name__, step)
    names = [START, *(step.__name__ for step in steps), END]
    for a, b in itertools.pairwise(names):
        graph.add_edge(a, b)
    return graph.compile(checkpointer=sqlite_checkpointer(checkpoints))


def slow_graph(tmp_path, model: ScriptedChatModel):
    """think (sleeps 80 ms, then asks the model) -> answer (sleeps 40 ms)."""

    def think(state: State, config: RunnableConfig) -> State:
        time.sleep(0.08)
        return {"answer": str(model.invoke(state["request"], config).content)}

    def answer(state: State) -> State:
        time.sleep(0.04)
        return {"answer": state["answer"].upper()}

    return chain(tmp_path / "cp.sqlite", think, answer)


def test_deferred_spans_carry_the_times_the_steps_really_took(otlp_receiver, tmp_path):
    tracing = open_tracing(otlp_receiver.settings(), env={})
    handler = tracing.handler()
    assert isinstance(handler, DeferredHandler)
    started = time.time_ns()
    run_request(slow_graph(tmp_path, ScriptedChatModel.of(["ok"])), "hi", run_id="slow", callbacks=[handler])
    ended = time.time_ns()
    trace_id = handler.trace_ids[0]  # known before any span is built
    time.sleep(0.3)  # spans are built later than the run: their times must still be the run's
    assert tracing.close() is True
    spans = otlp_receiver.wait_for(lambda s: any(x.name == "answer" for x in s))
    named = {s.name: s for s in spans}
    assert {s.trace_id for s in spans} == {trace_id}
    for span in spans:
        assert started <= span.start_ns <= span.end_ns <= ended, span.name
    think, answer, generation = named["think"], named["answer"], named["ScriptedChatModel"]
    assert think.end_ns - think.start_ns >= 80_000_000
    assert answer.end_ns - answer.start_ns >= 40_000_000
    assert answer.start_ns >= think.end_ns  # the order of steps survives the replay
    assert think.start_ns + 80_000_000 <= generation.start_ns <= generation.end_ns <= think.end_ns


def test_live_tracing_builds_spans_as_steps_happen(otlp_receiver, tmp_path):
    tracing = open_tracing(otlp_receiver.settings(defer=False), env={})
    handler = tracing.handler()
    assert isinstance(handler, TierflowCallbackHandler)
    run_request(scripted_graph(tmp_path), "what is 17*23?", run_id="live", callbacks=[handler])
    assert len(handler._runs) == 0 and len(handler.trace_ids) == 1  # every span was started and ended in the run
    assert tracing.close() is True
    spans = otlp_receiver.wait_for(lambda s: any(x.name == "tierflow.run" for x in s))
    assert {s.trace_id for s in spans} == set(handler.trace_ids)


def test_deferred_and_live_runs_export_the_same_tree(otlp_receiver, tmp_path):
    shapes = []
    for defer in (True, False):
        tracing = open_tracing(otlp_receiver.settings(defer=defer), env={})
        handler = tracing.handler(costs={"scripted": (0.5, 1.5)})
        run_request(scripted_graph(tmp_path / str(defer)), "what is 17*23?", run_id=f"tree-{defer}",
                    callbacks=[handler])
        assert tracing.close() is True
        [trace_id] = handler.trace_ids
        spans = otlp_receiver.wait_for(lambda s, t=trace_id: any(x.trace_id == t and x.name == "tierflow.run"
                                                                 for x in s))
        mine = [s for s in spans if s.trace_id == trace_id]
        by_id = {s.span_id: s for s in mine}
        shapes.append(sorted((s.name, s.type, by_id[s.parent_id].name if s.parent_id else None,
                              s.metadata("tier"), s.attributes.get("langfuse.observation.cost_details"))
                             for s in mine))
    assert shapes[0] == shapes[1] and len(shapes[0]) > 10


def test_flush_builds_and_exports_within_its_bound(otlp_receiver, tmp_path):
    otlp_receiver.delay_s = 2.0  # a receiver that answers slowly
    tracing = open_tracing(otlp_receiver.settings(flush_timeout_s=0.5), env={})
    handler = tracing.handler()
    run_request(scripted_graph(tmp_path), "what is 17*23?", run_id="bounded", callbacks=[handler])
    started = time.monotonic()
    tracing.flush()
    assert time.monotonic() - started < 1.5
    tracing.close(timeout_s=0.5)


def test_routed_calls_get_the_served_model_without_sdk_warnings(otlp_receiver, tiny_registry, tmp_path, caplog):
    from tierflow.runtimes.router import TierRouter

    router = TierRouter(registry=tiny_registry)
    tracing = open_tracing(otlp_receiver.settings(), env={})
    with caplog.at_level("WARNING", logger="langfuse"):
        run_request(slow_graph(tmp_path, router.bind(max_tokens=4)), "Say hi.", run_id="routed",
                    callbacks=[tracing.handler()])
        assert tracing.close() is True
    assert not [r for r in caplog.records if "not able to parse the LLM model" in r.getMessage()]
    spans = otlp_receiver.wait_for(lambda s: any(x.type == "generation" for x in s))
    [generation] = [s for s in spans if s.type == "generation"]
    assert generation.attributes.get("langfuse.observation.model.name") == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert generation.metadata("tier") == "tiny" and generation.metadata("rule") == "preference"


def test_traceparent_says_whether_the_trace_is_sampled(otlp_receiver, tmp_path):
    from tierflow.tracing import inject_traceparent

    seen: list[str] = []

    def node(state: State) -> State:
        seen.append(inject_traceparent({})["traceparent"])  # what an HTTP call from this step would carry
        return {"answer": "ok"}

    for rate in (1.0, 0.0):
        tracing = open_tracing(otlp_receiver.settings(sample_rate=rate), env={})
        handler = tracing.handler()
        run_request(chain(tmp_path / f"{rate}.sqlite", node), "hi", run_id=f"sampled-{rate}", callbacks=[handler])
        assert tracing.close() is True
        assert seen[-1].split("-")[1] == handler.trace_ids[0]
    assert [t.rsplit("-", 1)[1] for t in seen] == ["01", "00"]
    spans = otlp_receiver.wait_for(lambda s: any(x.name == "node" for x in s))
    assert {s.trace_id for s in spans} == {seen[0].split("-")[1]}  # the unsampled run exported nothing


def test_closing_tracing_stops_its_replay_thread(otlp_receiver, tmp_path):
    import threading

    def replayers() -> int:
        return sum(t.name == "tierflow-tracing-replay" for t in threading.enumerate())

    before = replayers()
    tracing = open_tracing(otlp_receiver.settings(), env={})
    run_request(scripted_graph(tmp_path), "what is 17*23?", run_id="stop", callbacks=[tracing.handler()])
    assert tracing.flush() is True and replayers() == before + 1
    assert tracing.close() is True
    deadline = time.monotonic() + 5
    while replayers() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert replayers() == before


def test_a_run_that_waits_for_a_human_is_exported_and_its_resume_traced(otlp_receiver, tmp_path):
    from langgraph.types import interrupt

    from tierflow.graphs.runner import resume_run

    def ask(state: State) -> State:
        return {"answer": f"approved: {interrupt('approve?')}"}

    compiled = chain(tmp_path / "hitl.sqlite", ask)
    tracing = open_tracing(otlp_receiver.settings(), env={})
    first, second = tracing.handler(), tracing.handler()
    paused = run_request(compiled, "deploy?", run_id="hitl", callbacks=[first])
    assert paused.status == "waiting"
    assert tracing.flush() is True  # the paused run's trace leaves now, not when (if ever) it resumes
    spans = otlp_receiver.wait_for(lambda s: any(x.trace_id == first.trace_ids[0] and x.name == "ask" for x in s))
    assert any(s.trace_id == first.trace_ids[0] and s.name == "ask" for s in spans)
    done = resume_run(compiled, "hitl", answer="yes", callbacks=[second])
    assert done.answer == "approved: yes"
    assert tracing.close() is True
    spans = otlp_receiver.wait_for(lambda s: any(x.trace_id == second.trace_ids[0] and x.name == "ask" for x in s))
    # two traces, one session: the run id groups the paused run and its resume in Langfuse
    both = [s for s in spans if s.trace_id in (first.trace_ids[0], second.trace_ids[0])]
    assert first.trace_ids != second.trace_ids and {s.attributes.get("session.id") for s in both} == {"hitl"}
