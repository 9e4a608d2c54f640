"""tierflow: multi-agent orchestration on LangGraph with device-tier model routing.

The public API (README, *Python API*) is the names in ``__all__``; each loads on first use, so ``import tierflow``
stays fast. Everything else is private by name or lives in the layer packages (``tierflow.graphs``, ...).
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing is not imported: `import tierflow` stays fast

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "load": "tierflow.api",
    "Tierflow": "tierflow.api",
    "State": "tierflow.api",
    "Settings": "tierflow.settings",
    "SettingsError": "tierflow.settings",
    "classify_intent_node": "tierflow.nodes",
    "recall_node": "tierflow.nodes",
    "plan_node": "tierflow.nodes",
    "team_node": "tierflow.nodes",
    "synthesize_node": "tierflow.nodes",
    "remember_node": "tierflow.nodes",
    "route_by_intent": "tierflow.nodes",
    "Team": "tierflow.graphs.team",
    "TeamAgent": "tierflow.graphs.team",
    "TeamResult": "tierflow.graphs.team",
    "Subtask": "tierflow.agents.plan",
    "WorkerResult": "tierflow.agents.worker",
    "build_orchestrator": "tierflow.graphs.orchestrator",
    "run_request": "tierflow.graphs.runner",
    "resume_run": "tierflow.graphs.runner",
    "RunResult": "tierflow.graphs.runner",
    "TierflowError": "tierflow.runtimes.errors",
}
__all__ = [
    "RunResult",
    "Settings",
    "SettingsError",
    "State",
    "Subtask",
    "Team",
    "TeamAgent",
    "TeamResult",
    "Tierflow",
    "TierflowError",
    "WorkerResult",
    "build_orchestrator",
    "classify_intent_node",
    "load",
    "plan_node",
    "recall_node",
    "remember_node",
    "resume_run",
    "route_by_intent",
    "run_request",
    "synthesize_node",
    "team_node",
]


def __getattr__(name: str) -> object:
    """Import a public name's module on first access (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tierflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ loads these
    from tierflow.agents.plan import Subtask
    from tierflow.agents.worker import WorkerResult
    from tierflow.api import State, Tierflow, load
    from tierflow.graphs.orchestrator import build_orchestrator
    from tierflow.graphs.runner import RunResult, resume_run, run_request
    from tierflow.graphs.team import Team, TeamAgent, TeamResult
    from tierflow.nodes import (
        classify_intent_node,
        plan_node,
        recall_node,
        remember_node,
        route_by_intent,
        synthesize_node,
        team_node,
    )
    from tierflow.runtimes.errors import TierflowError
    from tierflow.settings import Settings, SettingsError
