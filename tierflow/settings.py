"""Settings: defaults, overridden by a TOML file, overridden by ``TIERFLOW_*`` environment variables."""

from __future__ import annotations

import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tierflow.agents.remote_config import RemoteAgentConfig, check_agent_names
from tierflow.graphs.executor_config import ExecutorConfig
from tierflow.memory.config import MemoryConfig
from tierflow.runtimes.config import TierConfig, default_tiers
from tierflow.runtimes.cost import Price, tier_prices
from tierflow.runtimes.errors import TierflowError, UnknownTierError
from tierflow.runtimes.registry import TierRegistry
from tierflow.runtimes.router import RoutingPolicy
from tierflow.tools.mcp.config import McpServerConfig
from tierflow.tracing.config import TracingSettings

_TOML_PATH: ContextVar[Path | None] = ContextVar("tierflow_toml_path", default=None)
_TOML_DATA: ContextVar[dict[str, Any] | None] = ContextVar("tierflow_toml_data", default=None)
DEFAULT_CONFIG_NAME = "tierflow.toml"
AgentKind = Literal["planner", "worker", "synthesizer"]
AGENT_KINDS: tuple[AgentKind, ...] = ("planner", "worker", "synthesizer")


class SettingsError(TierflowError, ValueError):
    """The settings file or environment is malformed; the message names the file and the field."""


def default_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "tierflow"


def describe_errors(exc: ValidationError) -> str:
    """Every problem of a validation error as ``field.path: message (got value)``, joined by "; "."""
    def one(error: Any) -> str:
        where = ".".join(str(p) for p in error["loc"]) or "(root)"
        got = error.get("input")
        shown = "" if error["type"] in ("missing", "extra_forbidden") or isinstance(got, dict) else \
            f" (got {got!r:.80})"
        return f"{where}: {error['msg'].removeprefix('Value error, ')}{shown}"
    return "; ".join(one(e) for e in exc.errors())


class Settings(BaseSettings):
    """Everything ``tierflow`` wires together: tiers, which tier each agent uses, limits, data paths.

    Build it in code (``Settings(default_tier="tiny", tiers={...})``; ``TIERFLOW_*`` variables fill in what is not
    given), from a file (``load_settings``, ``Settings.from_toml``); ``to_toml()`` writes it back.
    """

    model_config = SettingsConfigDict(env_prefix="TIERFLOW_", env_nested_delimiter="__", extra="forbid")

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:  # one clear error naming every bad field, not pydantic's report
            raise SettingsError(f"settings are invalid: {describe_errors(exc)}") from None

    def to_toml(self, *, mask_secrets: bool = False) -> str:
        """These settings as TOML text that ``from_toml`` reads back; ``mask_secrets`` hides tokens, keys, passwords."""
        from tierflow._toml import dumps, plain

        return dumps(plain(self.model_dump(), mask=mask_secrets))

    @classmethod
    def from_toml(cls, source: str | Path) -> Settings:
        """Settings from a TOML file (a Path) or TOML text (a str), read like a settings file."""
        if isinstance(source, Path):
            return load_settings(source)
        try:
            data = tomllib.loads(source)
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"settings text is not valid TOML: {exc}") from None
        token = _TOML_DATA.set(data)
        try:
            return cls()
        finally:
            _TOML_DATA.reset(token)

    home: Path = Field(default_factory=default_home, description="data folder: checkpoints, traces")
    default_tier: str = "mobile"
    tiers: dict[str, TierConfig] = Field(default_factory=default_tiers)
    # Tier per agent kind; unset kinds use default_tier.
    agent_tiers: dict[AgentKind, str] = Field(default_factory=dict)
    intent_model: Path | None = Field(None, description="trained intent model folder; None = the shipped demo")
    intent_precision: Literal["fp32", "int8"] = Field("fp32", description="int8: quantized encoder, faster on CPU")
    out_of_scope: Literal["answer", "escalate"] = "answer"
    min_confidence: float = Field(0.0, ge=0.0, le=1.0)
    worker_max_steps: int = Field(4, ge=1, le=32)
    max_subtasks: int = Field(6, ge=1, le=32)
    # MCP servers whose tools agents may call, by name (stdio command or streamable-HTTP URL).
    mcp_servers: dict[str, McpServerConfig] = Field(default_factory=dict)
    # Remote A2A agents that join the team as roles (and peers), governed by the routing rules like remote tiers.
    a2a_agents: dict[str, RemoteAgentConfig] = Field(default_factory=dict)
    # Where runs are checkpointed: "sqlite" (home/checkpoints.sqlite), "sqlite:///PATH" or "postgres://...".
    checkpointer: str = Field("sqlite", pattern=r"^(sqlite|sqlite:///.+|postgres(ql)?://.+)$")
    # Langfuse export and the JSON-lines trace file; off unless keys (here or LANGFUSE_*) or a file are set.
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    # How every model call picks its tier: preference order, privacy patterns, budgets, circuits.
    routing: RoutingPolicy = Field(default_factory=RoutingPolicy)
    # Memory across runs: embedded SQLite at home/memory.sqlite by default, or Neo4j + Weaviate.
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    # Where runs execute: in this process (default), or as DBOS workflows that `tierflow worker` processes share.
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)

    @field_validator("a2a_agents", mode="after")
    @classmethod
    def _agent_names_are_roles(cls, agents: dict[str, RemoteAgentConfig]) -> dict[str, RemoteAgentConfig]:
        return dict(check_agent_names(agents))

    @field_validator("home", mode="after")
    @classmethod
    def _home_is_a_folder(cls, home: Path) -> Path:
        # Checked here so TIERFLOW_HOME pointing at a file is one clear error, not an OSError mid-run.
        if home.exists() and not home.is_dir():
            raise ValueError(f"{home} exists and is not a folder (set TIERFLOW_HOME to a folder)")
        return home

    @field_validator("tiers", mode="before")
    @classmethod
    def _merge_into_default_tiers(cls, tiers: object) -> object:
        # A partial declaration of a default tier (say TIERFLOW_TIERS__MOBILE__N_THREADS=2) changes
        # those fields and keeps the rest, instead of demanding the whole tier again.
        if not isinstance(tiers, dict):
            return tiers
        defaults = default_tiers()
        return {name: {**defaults[name].model_dump(), **value} if name in defaults and isinstance(value, dict)
                else value for name, value in tiers.items()}

    @field_validator("tiers", mode="after")
    @classmethod
    def _keep_default_tiers(cls, tiers: dict[str, TierConfig]) -> dict[str, TierConfig]:
        return {**default_tiers(), **tiers}

    @model_validator(mode="after")
    def _tiers_exist(self) -> Settings:
        # The registry judges tier names (here and in the router); its error names the setting to fix.
        try:
            registry = self.registry()
            for kind, tier in self.agent_tiers.items():
                registry.validate([tier], who=f"agent_tiers.{kind}")
            registry.validate(self.routing.order, who="routing.order")
            registry.validate(self.routing.cascade, who="routing.cascade")
        except UnknownTierError as exc:
            raise ValueError(str(exc)) from None
        return self

    @model_validator(mode="after")
    def _mask_what_the_router_keeps_private(self) -> Settings:
        # Traces mask what this run's router treats as private, including patterns set under [routing].
        if "private_patterns" not in self.tracing.mask.model_fields_set:
            mask = self.tracing.mask.model_copy(update={"private_patterns": list(self.routing.private_patterns)})
            self.tracing = self.tracing.model_copy(update={"mask": mask})
        return self

    @model_validator(mode="after")
    def _learned_router_beside_the_file(self) -> Settings:
        # routing.learned is a folder that ships with the settings file: a relative path is read from its folder.
        path, learned = _TOML_PATH.get(), self.routing.learned
        if path is not None and learned and not Path(learned).expanduser().is_absolute():
            resolved = str(path.resolve().parent / learned)
            self.routing = self.routing.model_copy(update={"learned": resolved})
        return self

    @property
    def memory_path(self) -> Path:
        """The embedded memory file: ``memory.path`` or home/memory.sqlite."""
        return self.memory.path or self.home / "memory.sqlite"

    def registry(self) -> TierRegistry:
        """A registry of the declared tiers; nothing loads until a tier is used."""
        return TierRegistry(self.tiers, self.default_tier)

    def tier_for(self, agent: AgentKind, *, private: bool = False) -> str:
        """The tier ``agent``'s calls start on: what its router tries first (TierRegistry.serving_tier)."""
        return self.registry().serving_tier(self.routing.order, self.agent_tiers.get(agent), private=private)

    def run_tiers(self, *, private: bool = False) -> set[str]:
        """The tiers a run's agents start on; other tiers load only when a call is routed to them."""
        return {self.tier_for(kind, private=private) for kind in AGENT_KINDS}

    def tier_costs(self) -> dict[str, Price]:
        """Price per 1k input and output tokens of each tier, as tracing and the eval cost metric take it."""
        return tier_prices(self.tiers)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _TOML_PATH.get()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        data = _TOML_DATA.get()
        if data is not None:  # Settings.from_toml(text): the text ranks where a settings file does
            sources.append(InitSettingsSource(settings_cls, init_kwargs=data))
        return tuple(sources)


def config_path(explicit: Path | None = None) -> Path | None:
    """The settings file to read: ``--config``, else $TIERFLOW_CONFIG, else ./tierflow.toml if present."""
    if explicit is not None:
        return explicit
    if os.environ.get("TIERFLOW_CONFIG"):
        return Path(os.environ["TIERFLOW_CONFIG"])
    local = Path.cwd() / DEFAULT_CONFIG_NAME
    return local if local.is_file() else None


def tier_overrides(tier: str | None) -> dict[str, object]:
    """Settings overrides for ``--tier``: every agent prefers ``tier``; the router still enforces privacy."""
    return {"default_tier": tier, "agent_tiers": dict.fromkeys(AGENT_KINDS, tier)} if tier else {}


def load_settings(path: Path | None = None, **overrides: object) -> Settings:
    """Read settings; a missing, unparsable or invalid file raises SettingsError naming it."""
    path = config_path(path)
    if path is not None:
        if not path.is_file():
            raise SettingsError(f"settings file {path} does not exist")
        try:
            tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SettingsError(f"settings file {path} is not valid TOML: {exc}") from exc
    token = _TOML_PATH.set(path)
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except SettingsError as exc:
        where = f"settings file {path}" if path else "settings"
        details = str(exc).removeprefix("settings are invalid: ")
        raise SettingsError(f"{where} (or TIERFLOW_* environment) is invalid: {details}") from None
    finally:
        _TOML_PATH.reset(token)
