"""Agent roles: the instructions each kind of worker gets, and the per-intent plan templates."""

from __future__ import annotations

from pydantic import BaseModel


class Role(BaseModel):
    """A worker persona: a name the planner may choose and the system prompt that realises it."""

    name: str
    instructions: str


DEFAULT_ROLES: dict[str, Role] = {
    role.name: role
    for role in [
        Role(name="generalist", instructions="You are a helpful assistant. Answer briefly and accurately."),
        Role(name="researcher", instructions="You gather the facts needed for a task. List them briefly."),
        Role(name="analyst", instructions="You compute and check numbers. Use the calculator for arithmetic."),
        Role(name="writer", instructions="You write clear, short text for the user from the material given."),
        Role(name="planner", instructions="You break goals into short, ordered, concrete steps."),
    ]
}

# Per-intent fallback plans, used when the model's plan is unusable. ``{request}`` is filled in.
TEMPLATES: dict[str, list[dict[str, object]]] = {
    "calculate": [
        {"id": "compute", "goal": "Compute exactly what is asked: {request}", "role": "analyst",
         "tools": ["calculator"], "depends_on": []},
        {"id": "report", "goal": "State the result of the computation in one sentence.", "role": "writer",
         "tools": [], "depends_on": ["compute"]},
    ],
    "explain": [
        {"id": "facts", "goal": "List the key facts needed to answer: {request}", "role": "researcher",
         "tools": [], "depends_on": []},
        {"id": "explain", "goal": "Explain the answer clearly using the facts.", "role": "writer",
         "tools": [], "depends_on": ["facts"]},
    ],
    "write": [
        {"id": "outline", "goal": "Outline the main points for: {request}", "role": "planner",
         "tools": [], "depends_on": []},
        {"id": "draft", "goal": "Write the text following the outline.", "role": "writer",
         "tools": ["word_count"], "depends_on": ["outline"]},
    ],
    "plan": [
        {"id": "steps", "goal": "Break this into ordered, concrete steps: {request}", "role": "planner",
         "tools": [], "depends_on": []},
        {"id": "present", "goal": "Present the steps as a short numbered plan.", "role": "writer",
         "tools": [], "depends_on": ["steps"]},
    ],
}
DEFAULT_TEMPLATE: list[dict[str, object]] = [
    {"id": "answer", "goal": "Answer the request: {request}", "role": "generalist", "tools": [], "depends_on": []},
]
