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
        Role(name="analyst", instructions="You compute and check numbers. Use the calculator for arithmetic and "
                                          "convert_units for units; never compute in your head."),
        Role(name="writer", instructions="You write clear, short text for the user from the material given."),
        Role(name="planner", instructions="You break goals into short, ordered, concrete steps."),
    ]
}

# Per-intent fallback plans, used when the model's plan is unusable. ``{request}`` is filled in.
TEMPLATES: dict[str, list[dict[str, object]]] = {
    # Single-step templates skip the planner call: one subtask, whose result is the answer.
    "calculate": [
        {"id": "compute", "goal": "Compute exactly what is asked, with a tool, then state the result: {request}",
         "role": "analyst", "tools": ["calculator", "convert_units"], "depends_on": []},
    ],
    "explain": [
        {"id": "explain", "goal": "Explain clearly and briefly: {request}", "role": "writer",
         "tools": [], "depends_on": []},
    ],
    "write": [
        {"id": "draft", "goal": "Write exactly what is asked: {request}", "role": "writer",
         "tools": [], "depends_on": []},
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
