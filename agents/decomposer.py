"""The task decomposer: ask a model for a typed plan, validate it, repair it or fall back to a template."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from pydantic import ValidationError

from tierflow.agents.plan import (
    ID_PATTERN,
    MAX_GOAL_CHARS,
    MAX_SUBTASKS,
    MAX_TOOLS_PER_SUBTASK,
    PATTERNS,
    Plan,
    Subtask,
    plan_json_schema,
    plan_problems,
    says_something,
)
from tierflow.agents.roles import DEFAULT_ROLES, DEFAULT_TEMPLATE, TEMPLATES, Role
from tierflow.runtimes.errors import MODEL_CALL_ERRORS, RUN_ENDING_ERRORS
from tierflow.runtimes.structured import invoke_json

PLAN_MAX_TOKENS = 400

SYSTEM_PROMPT = """You split a user request into a few subtasks for a team of agents.
Roles: {roles}.
Tools: {tools}.
Reply with JSON only: {{"pattern": "sequential", "subtasks": [{{"id": "s1", "goal": "...", "role": "...",
"tools": [], "depends_on": []}}]}}. Use at most {max_subtasks} subtasks; depends_on lists earlier ids."""


class TaskDecomposer:
    """Turns a request into a validated :class:`Plan`; the plan's ``source`` says which path was taken."""

    def __init__(self, model: BaseChatModel, tools: Sequence[str], roles: Mapping[str, Role] | None = None,
                 templates: Mapping[str, list[dict[str, Any]]] | None = None,
                 max_subtasks: int = MAX_SUBTASKS) -> None:
        self.model = model
        self.tools = list(tools)
        self.roles = dict(roles or DEFAULT_ROLES)
        self.templates = dict(TEMPLATES if templates is None else templates)
        self.max_subtasks = max_subtasks

    def decompose(self, request: str, intent: str | None = None, memories: Sequence[str] = (),
                  config: RunnableConfig | None = None) -> Plan:
        """Plan ``request``: the model's plan if valid, a repaired one if fixable, else the intent's template.

        An intent whose template is a single step needs no planning: the template is used without a model call.
        """
        if intent in self.templates and len(self.templates[intent]) == 1:
            return self.template(request, intent, ["single-step template: no planner call"])
        schema = plan_json_schema(self.roles, self.tools, self.max_subtasks)
        messages = [SystemMessage(SYSTEM_PROMPT.format(
            roles=", ".join(f"{r.name} ({r.instructions})" for r in self.roles.values()),
            tools=", ".join(self.tools) or "none", max_subtasks=self.max_subtasks))]
        context = "".join(f"\nRelevant memory: {m}" for m in memories)
        example = self._example(request, intent)
        messages.append(HumanMessage(f"Intent: {intent or 'unknown'}{context}{example}\nRequest: {request}"))
        try:
            raw = invoke_json(self.model.bind(max_tokens=PLAN_MAX_TOKENS), messages, schema, config, name="plan")
        except RUN_ENDING_ERRORS:
            raise
        except MODEL_CALL_ERRORS as exc:
            return self.template(request, intent, [f"model output unusable: {exc}"])
        return self.from_model_output(raw, request, intent)

    def from_model_output(self, raw: dict[str, Any], request: str, intent: str | None) -> Plan:
        """Validate a model's plan object, repairing what can be repaired; otherwise use the template."""
        try:
            plan = Plan.model_validate({**raw, "source": "model", "notes": []})
        except ValidationError as exc:
            plan = self._lenient_parse(raw)
            if plan is None:
                return self.template(request, intent, [f"plan does not match the schema: {_first_errors(exc)}"])
            plan.notes.append(f"plan did not match the schema: {_first_errors(exc)}")
        plan = self._restore_template_steps(plan, request, intent)
        problems = plan_problems(plan, self.roles, self.tools, self.max_subtasks)
        if not problems and plan.source == "model":
            return plan
        repaired = self._repair(plan)
        remaining = plan_problems(repaired, self.roles, self.tools, self.max_subtasks)
        if remaining:
            return self.template(request, intent, [*plan.notes, *problems, *remaining])
        repaired.source = "repaired"
        repaired.notes = [*plan.notes, *problems]
        return repaired

    def template(self, request: str, intent: str | None, notes: list[str]) -> Plan:
        """The fixed plan for ``intent`` (a generic one-step plan for unknown intents)."""
        specs = self.templates.get(intent or "", DEFAULT_TEMPLATE)
        subtasks = [
            Subtask.model_validate({**spec, "goal": str(spec["goal"]).format(request=request)[:MAX_GOAL_CHARS],
                                    "tools": [t for t in spec.get("tools", []) if t in self.tools]})
            for spec in specs
        ]
        return Plan(pattern="sequential", subtasks=subtasks, source="template",
                    notes=[*notes, f"used the {intent if intent in self.templates else 'default'} template"])

    def _restore_template_steps(self, plan: Plan, request: str, intent: str | None) -> Plan:
        """Put back template steps the plan depends on but left out (small models copy the example in part)."""
        if intent not in self.templates:
            return plan
        template = {s.id: s for s in self.template(request, intent, []).subtasks}
        have = {s.id for s in plan.subtasks}
        wanted = [d for s in plan.subtasks for d in s.depends_on if d not in have and d in template]
        restored: list[Subtask] = []
        while wanted:
            step = template[wanted.pop(0)]
            if step.id in have:
                continue
            have.add(step.id)
            restored.insert(0, step)
            wanted += [d for d in step.depends_on if d not in have and d in template]
        if not restored:
            return plan
        note = f"restored {', '.join(s.id for s in restored)} from the {intent} template (the plan depends on it)"
        return plan.model_copy(update={"subtasks": [*restored, *plan.subtasks], "source": "repaired",
                                       "notes": [*plan.notes, note]})

    def _example(self, request: str, intent: str | None) -> str:
        """The intent's template as a worked example: small models copy structure far better than they invent it."""
        if not intent or intent not in self.templates:
            return ""
        plan = self.template(request, intent, [])
        return "\nA plan that usually fits: " + json.dumps(
            {"pattern": plan.pattern, "subtasks": [s.model_dump() for s in plan.subtasks]})

    def _lenient_parse(self, raw: dict[str, Any]) -> Plan | None:
        """Keep whatever subtasks have a usable goal; None when nothing is left."""
        items = raw.get("subtasks") if isinstance(raw.get("subtasks"), list) else []
        subtasks: list[Subtask] = []
        for index, item in enumerate(items, start=1):
            if not isinstance(item, dict) or not str(item.get("goal") or "").strip():
                continue
            subtasks.append(Subtask(
                id=str(item.get("id") or f"s{index}")[:40],
                goal=str(item["goal"]).strip()[:MAX_GOAL_CHARS],
                role=str(item.get("role") or "generalist"),
                tools=[str(t) for t in item.get("tools") or [] if isinstance(t, str)],
                depends_on=[str(d) for d in item.get("depends_on") or [] if isinstance(d, str | int)],
            ))
        if not subtasks:
            return None
        pattern = raw.get("pattern") if raw.get("pattern") in PATTERNS else "sequential"
        return Plan(pattern=pattern, subtasks=subtasks, source="repaired", notes=[])

    def _repair(self, plan: Plan) -> Plan:
        """Fix what has one obvious fix: size, ids, roles, tools, dependencies (keeping only earlier ones).

        Subtasks whose goal says nothing are dropped; when none is left the plan stays as it was (template).
        """
        fallback_role = "generalist" if "generalist" in self.roles else next(iter(self.roles))
        kept = [s for s in plan.subtasks if says_something(s.goal)][: self.max_subtasks]
        if not kept:
            return plan
        renamed: dict[str, str] = {}
        seen: set[str] = set()
        subtasks: list[Subtask] = []
        for index, s in enumerate(kept, start=1):
            new_id = s.id if s.id not in seen and ID_PATTERN.fullmatch(s.id) else f"s{index}"
            while new_id in seen:
                new_id = f"{new_id}_"
            seen.add(new_id)
            renamed.setdefault(s.id, new_id)
            earlier = {t.id for t in subtasks}
            deps = [renamed.get(d, d) for d in s.depends_on]
            subtasks.append(Subtask(
                id=new_id, goal=s.goal,
                role=s.role if s.role in self.roles else fallback_role,
                tools=[t for t in dict.fromkeys(s.tools) if t in self.tools][:MAX_TOOLS_PER_SUBTASK],
                depends_on=[d for d in dict.fromkeys(deps) if d in earlier],
            ))
        return Plan(pattern=plan.pattern, subtasks=subtasks, source="repaired", notes=list(plan.notes))


def _first_errors(exc: ValidationError, limit: int = 3) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:limit]]
    return "; ".join(parts)
