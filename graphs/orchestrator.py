"""The orchestrator graph of DESIGN.md: classify_intent → recall → plan → execute → synthesize → remember."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import interrupt

from tierflow.agents.answer_shape import shape_answer
from tierflow.agents.decomposer import TaskDecomposer
from tierflow.agents.intent import IntentClassifier
from tierflow.agents.plan import Plan, topological_order
from tierflow.agents.synthesizer import Synthesizer, grounding_sources
from tierflow.agents.worker import WorkerAgent, WorkerResult
from tierflow.graphs.patterns import PATTERN_BUILDERS
from tierflow.graphs.patterns.peer import DECISION_ID
from tierflow.graphs.state import RunState, from_state, to_state
from tierflow.memory.base import Episode, Memory
from tierflow.memory.errors import MemoryLayerError
from tierflow.runtimes.context import RunContext
from tierflow.runtimes.learned_router import LearnedRouterError
from tierflow.tools.grounding import ungrounded

if TYPE_CHECKING:
    from tierflow.agents.route_features import LearnedRouting

OUT_OF_SCOPE_ANSWER = ("This request is outside what this assistant handles ({label}, confidence {confidence:.2f}). "
                       "Please rephrase it or ask something else.")
APPROVALS = frozenset({"y", "yes", "ok", "approve", "approved", "go", "run"})
REFUSALS = frozenset({"n", "no", "stop", "cancel", "reject", "abort"})


@dataclass
class OrchestratorDeps:
    """Everything the orchestrator's nodes call; each piece is injectable (tests pass scripted ones)."""

    classifier: IntentClassifier
    decomposer: TaskDecomposer
    worker: WorkerAgent
    synthesizer: Synthesizer
    memory: Memory | None = None
    # Out-of-scope or low-confidence requests: "answer" says so without running agents;
    # "escalate" runs them anyway with the generic plan.
    out_of_scope: Literal["answer", "escalate"] = "answer"
    min_confidence: float = 0.0
    recall_k: int = 5
    patterns: dict[str, Callable[[WorkerAgent], CompiledStateGraph]] = field(
        default_factory=lambda: dict(PATTERN_BUILDERS))
    # Human in the loop: stop after planning and ask whether to run the plan (resume with the answer).
    confirm_plan: bool = False
    # A learned router (routing.learned): classify_intent starts each run on the cheapest tier predicted to pass.
    learned_routing: LearnedRouting | None = None


def orchestrator_nodes(deps: OrchestratorDeps, forced_pattern: str | None = None) -> dict[str, Callable[..., RunState]]:
    """The orchestrator's nodes by name, over ``deps``; the public API (tierflow.nodes) reuses them one by one."""
    if forced_pattern is not None and forced_pattern not in deps.patterns:
        raise ValueError(f"pattern {forced_pattern!r} is not available; available: {', '.join(deps.patterns)}")
    teams = {name: build(deps.worker) for name, build in deps.patterns.items()}

    def classify_intent(state: RunState, config: RunnableConfig) -> RunState:
        result = deps.classifier.classify(state["request"])
        low = result.confidence < deps.min_confidence
        route = "out_of_scope" if (result.out_of_scope or low) and deps.out_of_scope == "answer" else "in_scope"
        notes = [f"intent {result.label} ({result.confidence:.2f}) is out of scope or below "
                 f"{deps.min_confidence}; escalated"] if (result.out_of_scope or low) and route == "in_scope" else []
        if deps.learned_routing is not None and route == "in_scope":
            notes.extend(start_learned(deps.learned_routing, state, result.label, config))
        return {"intent": to_state(result), "route": route, "notes": notes}

    def out_of_scope(state: RunState) -> RunState:
        intent = state["intent"]
        return {"answer": OUT_OF_SCOPE_ANSWER.format(label=intent["label"], confidence=intent["confidence"]),
                "results": [], "pattern": "none", "status": "done"}

    def recall(state: RunState) -> RunState:
        if deps.memory is None or deps.recall_k == 0:  # no backend configured, or recall switched off
            return {"memories": []}
        hits = deps.memory.search(state["request"], deps.recall_k, user_id=state.get("user_id", "local"))
        memories = as_context([h.text for h in hits], state["request"])
        if state.get("private") or not any(h.private for h in hits):
            return {"memories": memories}
        # Privacy is a property of data: a private run's memory makes this run private from here on, so the
        # router keeps its remaining calls on tiers cleared for private data.
        return {"memories": memories, "private": True,
                "notes": ["recalled a memory of a private run: this run is private from here on"]}

    def plan(state: RunState, config: RunnableConfig) -> RunState:
        config = keep_private(config, state)
        intent = state.get("intent", {})
        label = None if intent.get("out_of_scope") else intent.get("label")
        result = deps.decomposer.decompose(state["request"], label, state.get("memories", []), config)
        pattern = forced_pattern or result.pattern
        notes: list[str] = []
        if pattern not in teams:
            notes.append(f"pattern {pattern!r} is not available; ran sequential")
            pattern = "sequential"
        return {"plan": to_state(result), "pattern": pattern, "notes": notes}

    def confirm_plan(state: RunState) -> RunState:
        if not deps.confirm_plan:  # read at run time: a resumed run waiting here turns it on
            return {"route": "approved"}
        steps = "; ".join(f"{s['id']} ({s['role']}): {s['goal']}" for s in state["plan"]["subtasks"])
        answer = str(interrupt({"question": f"Run this {state['pattern']} plan? {steps} — answer yes, no, "
                                            "or guidance for the agents", "kind": "confirm_plan"})).strip()
        if answer.lower() in REFUSALS:
            return {"route": "cancelled", "answer": "Cancelled: the plan was not approved.", "results": [],
                    "status": "done", "notes": [f"plan rejected by a human ({answer!r})"]}
        guidance = [] if answer.lower() in APPROVALS else [f"Human guidance: {answer}"]
        return {"route": "approved", "memories": [*state.get("memories", []), *guidance],
                "notes": [f"plan approved by a human ({answer!r})"]}

    def execute(state: RunState, config: RunnableConfig) -> RunState:
        config = keep_private(config, state)
        ordered = topological_order(from_state(Plan, state["plan"]))
        team_input = {"request": state["request"], "memories": state.get("memories", []),
                      "subtasks": [to_state(s) for s in ordered], "results": []}
        output = teams[state["pattern"]].invoke(team_input, config)
        return {"results": output.get("results", [])}

    def synthesize(state: RunState, config: RunnableConfig) -> RunState:
        config = keep_private(config, state)
        results = [from_state(WorkerResult, r) for r in state.get("results", [])]
        notes = [f"subtask {r.subtask_id}: {note}" for r in results for note in r.notes]
        errors = [f"subtask {r.subtask_id} ({r.role}) failed: {r.error or 'it produced no output'}"
                  for r in results if r.failed]
        usable = [r for r in results if not r.failed]
        if not usable:  # nothing to answer from: no model is asked to make something up
            return {"answer": "", "status": "failed", "errors": errors or ["the plan produced no results"],
                    "notes": notes}
        status = "partial" if errors else "done"
        if len(results) == 1:  # one subtask: its result is the answer, no synthesis call
            return {"answer": shape_answer(state["request"], usable[0].output), "status": status, "errors": errors,
                    "notes": notes}
        decided = [r for r in usable if r.subtask_id == DECISION_ID]
        if decided:  # the peers' vote chose the answer already
            return {"answer": shape_answer(state["request"], decided[0].output), "status": "done", "errors": [],
                    "notes": notes}
        synthesis = deps.synthesizer.synthesize(state["request"], usable, config)
        answer = synthesis.answer
        if synthesis.fallback:
            notes.append(f"synthesis fell back to raw results: {synthesis.error}")
        sources = grounding_sources(state["request"], usable)
        invented = ungrounded(answer, sources)
        if invented:  # the synthesizer may merge results, not add numbers none of them has
            answer = "\n".join(r.output for r in usable)
            notes.append(f"synthesized answer had numbers no result or tool gave ({', '.join(invented)}); "
                         "answered with the results")
        return {"answer": shape_answer(state["request"], answer), "status": status, "errors": errors, "notes": notes}

    def remember(state: RunState, config: RunnableConfig) -> RunState:
        if deps.memory is None:  # no backend configured: nothing to write
            return {}
        run_id = str((config.get("configurable") or {}).get("thread_id", ""))
        episode = Episode(run_id=run_id, request=state["request"], intent=state.get("intent"), plan=state.get("plan"),
                          pattern=state.get("pattern"), results=state.get("results"), answer=state.get("answer"))
        if state.get("private"):  # remembered with its data class, so recalling it keeps it private
            episode["private"] = True
        try:
            deps.memory.remember(episode, user_id=state.get("user_id", "local"))
        except MemoryLayerError as exc:  # the answer is checkpointed already; a memory outage must not lose it
            return {"notes": [f"memory write failed, the run is not remembered: {exc}"]}
        return {}

    return {"classify_intent": classify_intent, "out_of_scope": out_of_scope, "recall": recall, "plan": plan,
            "confirm_plan": confirm_plan, "execute": execute, "synthesize": synthesize, "remember": remember}


def build_orchestrator(deps: OrchestratorDeps, checkpointer: BaseCheckpointSaver | None = None,
                       forced_pattern: str | None = None) -> CompiledStateGraph:
    """Compile the orchestrator; ``forced_pattern`` overrides the planner's choice of pattern."""
    nodes = orchestrator_nodes(deps, forced_pattern)
    graph = StateGraph(RunState)
    for name in ("classify_intent", "out_of_scope", "recall", "plan", "execute", "synthesize", "remember"):
        graph.add_node(name, nodes[name])
    graph.add_edge(START, "classify_intent")
    graph.add_conditional_edges("classify_intent", lambda s: s["route"],
                                {"in_scope": "recall", "out_of_scope": "out_of_scope"})
    graph.add_edge("out_of_scope", END)
    graph.add_edge("recall", "plan")
    graph.add_node("confirm_plan", nodes["confirm_plan"])
    graph.add_edge("plan", "confirm_plan")
    graph.add_conditional_edges("confirm_plan", lambda s: s["route"], {"approved": "execute", "cancelled": END})
    graph.add_edge("execute", "synthesize")
    graph.add_edge("synthesize", "remember")
    graph.add_edge("remember", END)
    return graph.compile(checkpointer=checkpointer, name="tierflow")


def start_learned(learned: LearnedRouting, state: RunState, intent: str, config: RunnableConfig | None) -> list[str]:
    """Start the run on the learned router's tier (reusing classify's embedding); the notes say where and why.

    Skipped when the run has no id or pins a tier (evals force one); a router error is a note, not a failed run.
    """
    context = RunContext.of(config)
    run_id = context.run_id or str(((config or {}).get("configurable") or {}).get("thread_id") or "")
    if not run_id or context.tier is not None:
        return []
    try:
        choice = learned.start_run(run_id, state["request"], intent, private=bool(state.get("private")))
    except LearnedRouterError as exc:
        return [f"learned router not used: {exc}"]
    return [choice.reason]


def keep_private(config: RunnableConfig, state: RunState) -> RunnableConfig:
    """``config`` whose metadata marks the run private when its state is (the router reads that flag)."""
    context = RunContext.of(config)
    if not state.get("private") or context.private:
        return config
    return context.made_private().apply(config)


def as_context(memories: list[str], request: str) -> list[str]:
    """Recalled episodes as stale context: what the user asked before, never an earlier answer to reuse.

    Episode memories read ``Request: ...\nAnswer: ...``; only the request is kept, and subtask results are
    dropped, so a model cannot copy an old answer (or its numbers) into a different request.
    """
    shown: list[str] = []
    for text in memories:
        if not text.startswith("Request:"):
            continue
        earlier = text.removeprefix("Request:").split("\nAnswer:", 1)[0].strip()
        if earlier and earlier != request.strip():
            shown.append(f"earlier the user asked: {earlier!r} (may be stale; not an answer to this request)")
    return list(dict.fromkeys(shown))
