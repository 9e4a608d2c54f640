"""How a remote A2A agent is declared (``[a2a_agents.NAME]`` in settings); light, so settings load fast."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from tierflow.runtimes.config import DataClass

NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,39}$")
T = TypeVar("T")


class RemoteAgentConfig(BaseModel):
    """One remote A2A agent, declared under ``[a2a_agents.NAME]`` in settings."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="the agent's base URL; its card is at URL/.well-known/agent-card.json")
    token: SecretStr | None = Field(None, description="sent as Authorization: Bearer …")
    data_classes: list[DataClass] = Field(default_factory=lambda: ["public"],
                                          description="data it is cleared to see; add 'private' to send private data")
    timeout_s: float = Field(120.0, gt=0, description="bounds the whole exchange: card, send, stream, answer")
    cost: float = Field(0.0, ge=0, description="charged to the run's cost budget per call")
    description: str = Field("", description="what the planner reads about this member (its role's instructions)")
    streaming: bool = Field(True, description="stream the answer when the agent can (tokens reach --stream)")
    fallback: Literal["local", "fail"] = Field("local", description="a call the rules refuse or that fails: run the "
                                                                     "subtask on the local worker, or fail it")

    def cleared_for(self, private: bool) -> bool:
        """Whether this agent may see a call's data: public data goes anywhere, private only where declared."""
        return not private or "private" in self.data_classes


def check_agent_names(agents: Mapping[str, T]) -> Mapping[str, T]:
    """``agents`` unchanged; a name that cannot be a plan role (a letter, then ≤ 39 of A-Z a-z 0-9 _ -) raises."""
    bad = [name for name in agents if not NAME_PATTERN.fullmatch(name)]
    if bad:
        raise ValueError(f"remote agent name(s) {', '.join(map(repr, bad))} must be a letter then letters, digits, "
                         "_ or - (at most 40 characters)")
    return agents
