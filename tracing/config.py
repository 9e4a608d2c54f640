"""Tracing settings: a ``[tracing]`` settings block, filled in from ``LANGFUSE_*`` environment variables.

Tracing is off unless Langfuse keys (settings or ``LANGFUSE_PUBLIC_KEY``/``LANGFUSE_SECRET_KEY``) or a
trace file are configured: tierflow never phones home by itself.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator

from tierflow.runtimes.context import CONTEXT_KEYS
from tierflow.runtimes.errors import TierflowError
from tierflow.runtimes.privacy import DEFAULT_PRIVATE_PATTERNS

ObservationType = Literal["span", "agent", "chain", "tool", "retriever", "evaluator", "guardrail", "embedding"]

# Field names whose values are secrets wherever they appear (dict keys, "key=value" text).
DEFAULT_SECRET_FIELDS = r"pass(word|wd|phrase)?|secret|token|api[_-]?key|authorization|credentials?|private[_-]?key"
# Secrets recognisable by their shape, even in free text.
DEFAULT_SECRET_PATTERNS = (
    r"\bsk-[A-Za-z0-9_\-]{8,}",            # OpenAI-style and Langfuse secret keys
    r"\bpk-lf-[A-Za-z0-9_\-]{8,}",         # Langfuse public keys
    r"(?i)\bbearer\s+[A-Za-z0-9._~+/\-]+=*",  # bearer tokens
    r"\bgh[pousr]_[A-Za-z0-9]{20,}",       # GitHub tokens
    r"\bAKIA[0-9A-Z]{16}\b",               # AWS access key ids
    r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",  # JWTs
)
# Metadata keys a private run's observations keep (masked as usual): ids, flags, graph position, routing.
# Every other value of a private run is replaced whole.
DEFAULT_PRIVATE_RUN_KEYS = (
    *CONTEXT_KEYS, "tierflow_version", "thread_id", "is_langchain_root", "tags",
    "langgraph_node", "langgraph_step", "langgraph_path", "langgraph_triggers", "langgraph_checkpoint_ns",
    "checkpoint_ns", "ls_provider", "ls_model_name", "ls_model_type", "ls_integration", "lc_versions", "tier", "model",
    "rule", "fallback_from", "attempt",
)
# How tierflow's graph nodes appear in Langfuse (node name -> observation type).
DEFAULT_NODE_TYPES: dict[str, ObservationType] = {
    "recall": "retriever", "plan": "agent", "work": "agent", "synthesize": "agent",
    "classify_intent": "chain", "remember": "span",
}


class TracingConfigError(TierflowError, ValueError):
    """Tracing settings or ``LANGFUSE_*`` variables are malformed; the message names the field."""


class MaskSettings(BaseModel):
    """What is masked before any span leaves the process (Langfuse export and the trace file alike)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    secret_fields: str = Field(DEFAULT_SECRET_FIELDS, description="regex of field names whose values are secrets")
    secret_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_SECRET_PATTERNS))
    # A dict with {"privacy": "private"} or {"private": true}, or text inside <private>…</private>, is private.
    private_markers: list[str] = Field(default_factory=lambda: ["private"])
    # Text the router treats as private is replaced by private_replacement; tierflow.settings fills this from
    # routing.private_patterns unless it is set here.
    private_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_PRIVATE_PATTERNS))
    # Observations of a private run (run metadata tierflow_private, or state {"private": true}) are replaced whole.
    mask_private_runs: bool = True
    private_run_keys: list[str] = Field(default_factory=lambda: list(DEFAULT_PRIVATE_RUN_KEYS),
                                        description="metadata keys a private run's observations keep")
    replacement: str = "[REDACTED]"
    private_replacement: str = "[PRIVATE]"

    @field_validator("secret_patterns", "private_patterns")
    @classmethod
    def _patterns_compile(cls, patterns: list[str], info: ValidationInfo) -> list[str]:
        for pattern in patterns:
            _compile(pattern, info.field_name or "patterns")
        return patterns

    @field_validator("secret_fields")
    @classmethod
    def _fields_compile(cls, pattern: str) -> str:
        _compile(pattern, "secret_fields")
        return pattern


def _compile(pattern: str, field: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{field}: {pattern!r} is not a valid regular expression: {exc}") from exc


class TracingSettings(BaseModel):
    """The ``[tracing]`` block of tierflow's settings."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = Field(None, description="None: on when Langfuse keys or a trace file are configured")
    public_key: str | None = None
    secret_key: SecretStr | None = None
    base_url: str | None = Field(None, description="Langfuse URL; default $LANGFUSE_BASE_URL/$LANGFUSE_HOST")
    environment: str | None = None
    release: str | None = None
    sample_rate: float = Field(1.0, ge=0.0, le=1.0)
    compression: Literal["gzip", "none"] = "gzip"
    export_timeout_s: int = Field(3, ge=1, le=60, description="one OTLP export request, retries included")
    flush_timeout_s: float = Field(5.0, gt=0, le=120, description="longest a run waits for its trace to leave")
    trace_file: Path | None = Field(None, description="also write spans here as JSON lines")
    defer: bool = Field(True, description="build a run's spans after it ends, off its hot path "
                        "(tierflow.tracing.deferred); "
                        "false: build each span as its step happens, so long runs show up while they run")
    mask: MaskSettings = Field(default_factory=MaskSettings)
    node_types: dict[str, ObservationType] = Field(default_factory=lambda: dict(DEFAULT_NODE_TYPES))

    @field_validator("base_url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        return None if url is None else _check_url(url, "base_url")

    @field_validator("environment")
    @classmethod
    def _environment(cls, env: str | None) -> str | None:
        # Langfuse accepts lowercase letters, digits, '-' and '_' and reserves the 'langfuse' prefix.
        if env is not None and not re.fullmatch(r"(?!langfuse)[a-z0-9_\-]{1,40}", env):
            raise ValueError(f"environment {env!r} must be 1-40 of a-z 0-9 - _ and not start with 'langfuse'")
        return env


def _check_url(url: str, field: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"{field} {url!r} is not an http(s) URL")
    return url.rstrip("/")


class ResolvedTracing(BaseModel):
    """Tracing as one run will do it: settings merged with ``LANGFUSE_*``, checked for consistency."""

    langfuse: bool
    public_key: str | None = None
    secret_key: SecretStr | None = None
    base_url: str = "https://cloud.langfuse.com"
    environment: str | None = None
    release: str | None = None
    sample_rate: float = 1.0
    compression: Literal["gzip", "none"] = "gzip"
    export_timeout_s: int = 3
    flush_timeout_s: float = 5.0
    trace_file: Path | None = None
    defer: bool = True
    mask: MaskSettings = Field(default_factory=MaskSettings)
    node_types: dict[str, ObservationType] = Field(default_factory=dict)

    @property
    def active(self) -> bool:
        """Whether anything is traced at all (Langfuse export, a trace file, or both)."""
        return self.langfuse or self.trace_file is not None


def resolve(settings: TracingSettings | Mapping[str, object] | None = None,
            env: Mapping[str, str] | None = None, *, trace_file: Path | None = None,
            release: str | None = None) -> ResolvedTracing:
    """Merge settings (first) with ``LANGFUSE_*`` variables (fallback); raise TracingConfigError if malformed."""
    env = os.environ if env is None else env
    try:
        block = settings if isinstance(settings, TracingSettings) else TracingSettings.model_validate(settings or {})
    except ValidationError as exc:
        raise TracingConfigError(f"tracing settings are invalid: {_details(exc)}") from exc
    public = block.public_key or env.get("LANGFUSE_PUBLIC_KEY") or None
    secret = block.secret_key.get_secret_value() if block.secret_key else env.get("LANGFUSE_SECRET_KEY") or None
    enabled = block.enabled
    if enabled is None and env.get("LANGFUSE_TRACING_ENABLED"):
        flag = env["LANGFUSE_TRACING_ENABLED"].strip().lower()
        if flag not in ("true", "false", "1", "0"):
            raise TracingConfigError(f"tracing: LANGFUSE_TRACING_ENABLED={flag!r} must be true or false")
        enabled = flag in ("true", "1")
    if bool(public) != bool(secret) and enabled is not False:
        missing = "secret_key (LANGFUSE_SECRET_KEY)" if public else "public_key (LANGFUSE_PUBLIC_KEY)"
        raise TracingConfigError(f"tracing: a Langfuse key pair needs both keys; {missing} is missing")
    langfuse = bool(public and secret) and enabled is not False
    # enabled = false turns off what the settings configure; an explicit --trace-file still counts.
    file = trace_file or (block.trace_file if enabled is not False else None)
    if enabled and not langfuse and file is None:
        raise TracingConfigError("tracing.enabled is true but neither Langfuse keys nor a trace_file are set")
    base_url = block.base_url or env.get("LANGFUSE_BASE_URL") or env.get("LANGFUSE_HOST") or None
    sample = block.sample_rate
    try:
        if base_url is not None:
            base_url = _check_url(base_url, "LANGFUSE_BASE_URL")
        if "LANGFUSE_SAMPLE_RATE" in env and "sample_rate" not in block.model_fields_set:
            sample = float(env["LANGFUSE_SAMPLE_RATE"])
            if not 0.0 <= sample <= 1.0:
                raise ValueError(f"LANGFUSE_SAMPLE_RATE {sample} is outside 0..1")
    except ValueError as exc:
        raise TracingConfigError(f"tracing: {exc}") from exc
    environment = block.environment or env.get("LANGFUSE_TRACING_ENVIRONMENT") or None
    if environment is not None and block.environment is None:
        try:
            TracingSettings(environment=environment)
        except ValidationError as exc:
            raise TracingConfigError(f"tracing: LANGFUSE_TRACING_ENVIRONMENT is invalid: {_details(exc)}") from exc
    return ResolvedTracing(
        langfuse=langfuse, public_key=public if langfuse else None,
        secret_key=SecretStr(secret) if langfuse and secret else None,
        base_url=base_url or "https://cloud.langfuse.com", environment=environment,
        release=block.release or env.get("LANGFUSE_RELEASE") or release, sample_rate=sample,
        compression=block.compression, export_timeout_s=block.export_timeout_s,
        flush_timeout_s=block.flush_timeout_s, trace_file=file, defer=block.defer,
        mask=block.mask, node_types=block.node_types,
    )


def _details(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors())
