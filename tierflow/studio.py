"""The graphs ``langgraph.json`` names, for ``langgraph dev``, LangGraph Studio and chat UIs (agent-chat-ui).

Each is a tierflow graph wrapped so it takes either ``{"request": "..."}`` or chat ``messages`` (the last human
message is the request) and answers with both ``answer`` and an AI message. They are compiled without a
checkpointer: the LangGraph server brings its own. Settings load as everywhere (./tierflow.toml,
$TIERFLOW_CONFIG, TIERFLOW_* variables); importing this module builds the graphs.
"""

from __future__ import annotations

from typing import Annotated, Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph

from tierflow.api import State, load
from tierflow.examples import approval, memory_recall, research, triage

# A new request starts from a clean slate on its thread; the chat history (messages) is kept.
_FRESH: dict[str, Any] = {"intent": {}, "route": "", "memories": [], "plan": {}, "pattern": "", "results": [],
                          "answer": "", "status": "", "errors": []}


class ChatState(State, total=False):
    """tierflow's state plus the chat messages of the thread."""

    messages: Annotated[list[AnyMessage], add_messages]


def take_request(state: ChatState) -> dict[str, Any]:
    """The request: the last message when it is a human one, else the ``request`` given as input."""
    messages = state.get("messages") or []
    if messages and isinstance(messages[-1], HumanMessage):
        return {**_FRESH, "request": messages[-1].text}
    if not str(state.get("request") or "").strip():
        raise ValueError("send {'request': '...'} or a human message")
    return {}


def reply(state: ChatState) -> dict[str, Any]:
    """The answer as an AI message (or why there is none)."""
    text = str(state.get("answer") or "").strip() or "No answer: " + "; ".join(state.get("errors") or ["unknown"])
    return {"messages": [AIMessage(text)]}


def chat(graph: CompiledStateGraph, name: str) -> CompiledStateGraph:
    """``graph`` between take_request and reply, as one graph a LangGraph server can serve."""
    outer = StateGraph(ChatState)
    outer.add_node("take_request", take_request)
    outer.add_node(name, graph)
    outer.add_node("reply", reply)
    outer.add_edge(START, "take_request")
    outer.add_edge("take_request", name)
    outer.add_edge(name, "reply")
    outer.add_edge("reply", END)
    return outer.compile(name=name)


_tf = load()
orchestrator = chat(_tf.orchestrator(checkpointer=False), "tierflow")
triage_graph = chat(triage.build_graph(_tf).compile(), "triage")
research_graph = chat(research.build_graph(_tf).compile(), "research")
memory_graph = chat(memory_recall.build_graph(_tf).compile(), "memory_recall")
approval_graph = chat(approval.build_graph(_tf).compile(), "approval")
