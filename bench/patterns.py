"""Overhead of tierflow's patterns vs. the same topology in raw LangGraph (and the peer pattern vs. AutoGen).

Zero-latency replay models on both sides, measured in the same run (median of ``--repeat`` runs,
alternating which side goes first): sequential 100 agents, parallel fan-out 1,000 branches,
hierarchical 1 supervisor x 50 workers (assign, work, review each), and the peer pattern vs. AutoGen
RoundRobinGroupChat for 400 turns. Targets: tierflow/raw <= 1.25; peer/AutoGen per turn <= 0.5.
Prints one JSON object.

    .venv/bin/python bench/patterns.py [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import operator
import platform
import statistics
import sys
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from tierflow.agents.peer import LLMPeer
from tierflow.agents.supervisor import Supervisor
from tierflow.agents.worker import WorkerAgent
from tierflow.graphs.patterns.hierarchical import build_hierarchical
from tierflow.graphs.patterns.parallel import build_parallel
from tierflow.graphs.patterns.peer import build_peer
from tierflow.graphs.patterns.sequential import build_sequential
from tierflow.tools.registry import ToolRegistry


def reply_for(messages: Sequence[BaseMessage]) -> str:
    """What the replay model answers: a valid decision for decision prompts, else a short text."""
    prompt = str(messages[-1].content)
    if "Reply {\"member\"" in prompt:
        return '{"member": "generalist"}'
    if "reviewing" in str(messages[0].content):
        return '{"verdict": "accept"}'
    if "Vote for the best proposal" in prompt:  # every peer votes for itself: no majority, all rounds run
        name = prompt.split("You are ", 1)[1].split(".", 1)[0]
        return json.dumps({"vote": name})
    return "ok"


class ReplayChatModel(BaseChatModel):
    """A zero-latency chat model (the same one on both sides of every comparison)."""

    @property
    def _llm_type(self) -> str:
        return "replay"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(reply_for(messages)))])


def subtasks(n: int, chain: bool = False) -> list[dict[str, Any]]:
    return [{"id": f"s{i}", "goal": f"step {i}", "role": "generalist", "tools": [],
             "depends_on": [f"s{i - 1}"] if chain and i else []} for i in range(n)]


class RawState(TypedDict, total=False):
    request: str
    subtasks: list[dict[str, Any]]
    results: Annotated[list[dict[str, Any]], operator.add]
    cursor: int
    member: str


def ask(model: BaseChatModel, system: str, text: str) -> str:
    return str(model.invoke([SystemMessage(system), HumanMessage(text)]).content)


def raw_sequential(model: BaseChatModel):
    def work(state: RawState) -> RawState:
        done = state.get("results", [])
        task = state["subtasks"][len(done)]
        prior = "\n".join(f"Result of {r['id']}: {r['output']}" for r in done)
        return {"results": [{"id": task["id"], "output": ask(model, "You are helpful.",
                                                              f"{state['request']}\n{prior}\nTask: {task['goal']}")}]}

    def more(state: RawState) -> str:
        return "work" if len(state.get("results", [])) < len(state["subtasks"]) else END

    g = StateGraph(RawState)
    g.add_node("work", work)
    g.add_conditional_edges(START, more, ["work", END])
    g.add_conditional_edges("work", more, ["work", END])
    return g.compile()


def raw_parallel(model: BaseChatModel):
    class Job(TypedDict):
        request: str
        task: dict[str, Any]

    def fan(state: RawState) -> list[Send]:
        return [Send("work", Job(request=state["request"], task=t)) for t in state["subtasks"]]

    def work(job: Job) -> RawState:
        text = ask(model, "You are helpful.", f"{job['request']}\nTask: {job['task']['goal']}")
        return {"results": [{"id": job["task"]["id"], "output": text}]}

    def join(state: RawState) -> RawState:
        return {}

    g = StateGraph(RawState)
    g.add_node("work", work, input_schema=Job)
    g.add_node("join", join)
    g.add_conditional_edges(START, fan, ["work"])
    g.add_edge("work", "join")
    g.add_edge("join", END)
    return g.compile()


def raw_hierarchical(model: BaseChatModel):
    def assign(state: RawState) -> RawState:
        if state.get("cursor", 0) >= len(state["subtasks"]):
            return {}
        task = state["subtasks"][state.get("cursor", 0)]
        choice = json.loads(ask(model, "Pick a member.", f"Task: {task['goal']}\nReply {{\"member\": ...}}"))
        return {"member": choice["member"]}

    def work(state: RawState) -> RawState:
        task = state["subtasks"][state.get("cursor", 0)]
        return {"results": [{"id": task["id"], "output": ask(model, f"You are {state['member']}.", task["goal"])}]}

    def review(state: RawState) -> RawState:
        verdict = json.loads(ask(model, "You are reviewing a result.", state["results"][-1]["output"]))
        assert verdict["verdict"] == "accept"
        return {"cursor": state.get("cursor", 0) + 1}

    g = StateGraph(RawState)
    for name, fn in [("assign", assign), ("work", work), ("review", review)]:
        g.add_node(name, fn)
    g.add_edge(START, "assign")
    g.add_conditional_edges("assign", lambda s: "work" if s.get("cursor", 0) < len(s["subtasks"]) else END,
                            ["work", END])
    g.add_edge("work", "review")
    g.add_edge("review", "assign")
    return g.compile()


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def compare(name: str, ours: Callable[[], Any], raw: Callable[[], Any], repeat: int) -> dict[str, Any]:
    ours(), raw()  # warm up both (imports, compiled schemas)
    a: list[float] = []
    b: list[float] = []
    for i in range(repeat):
        if i % 2:
            b.append(timed(raw))
            a.append(timed(ours))
        else:
            a.append(timed(ours))
            b.append(timed(raw))
    t, r = statistics.median(a), statistics.median(b)
    return {"case": name, "tierflow_s": round(t, 4), "raw_langgraph_s": round(r, 4), "ratio": round(t / r, 3),
            "target": 1.25, "met": t / r <= 1.25}


def autogen_round_robin(turns: int, n_agents: int) -> float:
    """Seconds per turn of AutoGen's RoundRobinGroupChat with replay model clients."""
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.conditions import MaxMessageTermination
    from autogen_agentchat.teams import RoundRobinGroupChat
    from autogen_core.models import ChatCompletionClient, CreateResult, ModelInfo, RequestUsage

    class Replay(ChatCompletionClient):
        """AutoGen's side of the replay model: answers "ok" at once."""

        info: ClassVar[ModelInfo] = {"vision": False, "function_calling": False, "json_output": False,
                                     "family": "unknown", "structured_output": False}

        async def create(self, messages: Sequence[Any], **kwargs: Any) -> CreateResult:
            return CreateResult(finish_reason="stop", content="ok", usage=RequestUsage(prompt_tokens=0,
                                                                                        completion_tokens=0),
                                cached=False)

        async def create_stream(self, messages: Sequence[Any], **kwargs: Any) -> AsyncGenerator[Any, None]:
            yield await self.create(messages)

        async def close(self) -> None:
            return None

        def actual_usage(self) -> RequestUsage:
            return RequestUsage(prompt_tokens=0, completion_tokens=0)

        total_usage = actual_usage

        def count_tokens(self, messages: Sequence[Any], **kwargs: Any) -> int:
            return 0

        def remaining_tokens(self, messages: Sequence[Any], **kwargs: Any) -> int:
            return 1_000_000

        @property
        def capabilities(self) -> Mapping[str, Any]:
            return self.info

        @property
        def model_info(self) -> ModelInfo:
            return self.info

    async def go() -> float:
        agents = [AssistantAgent(f"a{i}", model_client=Replay()) for i in range(n_agents)]
        team = RoundRobinGroupChat(agents, termination_condition=MaxMessageTermination(turns + 1))
        started = time.perf_counter()
        result = await team.run(task="decide")
        elapsed = time.perf_counter() - started
        assert len(result.messages) == turns + 1, len(result.messages)
        return elapsed / turns

    return asyncio.run(go())


def tierflow_peer(model: BaseChatModel, turns: int, n_agents: int) -> float:
    """Seconds per turn of the peer pattern (a turn = one proposal or one vote)."""
    rounds = turns // (2 * n_agents)
    graph = build_peer([LLMPeer(f"p{i}", model) for i in range(n_agents)], max_rounds=rounds)
    started = time.perf_counter()
    state = graph.invoke({"request": "decide", "subtasks": [], "results": []}, {"recursion_limit": 10 * rounds + 10})
    elapsed = time.perf_counter() - started
    assert len(state["board"]) == rounds * 2 * n_agents and state["decision"]["round"] == rounds
    return elapsed / (rounds * 2 * n_agents)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes (smoke test)")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    model = ReplayChatModel()
    worker = WorkerAgent(model, ToolRegistry([]))
    request = "benchmark request"

    def team_run(graph: Any, tasks: list[dict[str, Any]]) -> Callable[[], Any]:
        def go() -> None:
            out = graph.invoke({"request": request, "memories": [], "subtasks": tasks, "results": []},
                               {"recursion_limit": 10_000})
            assert len(out["results"]) == len(tasks)
        return go

    def raw_run(graph: Any, tasks: list[dict[str, Any]]) -> Callable[[], Any]:
        def go() -> None:
            out = graph.invoke({"request": request, "subtasks": tasks, "results": []}, {"recursion_limit": 10_000})
            assert len(out["results"]) == len(tasks)
        return go

    seq, par, hier = subtasks(100 // scale, chain=True), subtasks(1000 // scale), subtasks(50 // scale)
    cases = [
        compare(f"sequential x{len(seq)}", team_run(build_sequential(worker), seq),
                raw_run(raw_sequential(model), seq), args.repeat),
        compare(f"parallel fan-out x{len(par)}", team_run(build_parallel(worker), par),
                raw_run(raw_parallel(model), par), args.repeat),
        compare(f"hierarchical 1 x {len(hier)}", team_run(build_hierarchical(worker, supervisor=Supervisor(model)),
                                                          hier),
                raw_run(raw_hierarchical(model), hier), args.repeat),
    ]
    turns, n_agents = 400 // scale, 4
    ours = statistics.median(tierflow_peer(model, turns, n_agents) for _ in range(args.repeat))
    theirs = statistics.median(autogen_round_robin(turns, n_agents) for _ in range(args.repeat))
    cases.append({"case": f"peer vs AutoGen RoundRobinGroupChat, {turns} turns, {n_agents} agents",
                  "tierflow_ms_per_turn": round(ours * 1000, 3), "autogen_ms_per_turn": round(theirs * 1000, 3),
                  "ratio": round(ours / theirs, 3), "target": 0.5, "met": ours / theirs <= 0.5})
    print(json.dumps({"benchmark": "patterns", "python": platform.python_version(), "repeat": args.repeat,
                      "quick": args.quick, "cases": cases, "all_met": all(c["met"] for c in cases)}))


if __name__ == "__main__":
    main()
