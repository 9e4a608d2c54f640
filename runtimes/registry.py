"""The tier registry: builds each declared tier's chat model once and hands it to callers by name.

It is also the one place that answers questions about tier names: whether a name is declared, the order the
router tries tiers in (so which tier serves an agent), and whether the tiers a run starts on load and fit.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel

from tierflow.runtimes.cloud import build_cloud
from tierflow.runtimes.config import TierConfig
from tierflow.runtimes.errors import ContextLengthExceeded, RuntimeLayerError, TierUnavailableError, UnknownTierError
from tierflow.runtimes.mobile import build_mobile, shipped_model_path


class TierHealth(BaseModel):
    """What ``tierflow doctor`` says about one tier."""

    tier: str
    kind: str
    model: str
    usable: bool
    detail: str


class TierRegistry:
    """Declared tiers by name; chat models are created lazily (loading a GGUF costs time) and cached."""

    def __init__(self, tiers: Mapping[str, TierConfig], default_tier: str) -> None:
        if not tiers:
            raise UnknownTierError(default_tier, [])
        self._tiers = dict(tiers)
        if default_tier not in self._tiers:
            raise UnknownTierError(default_tier, sorted(self._tiers), who="default_tier")
        self.default_tier = default_tier
        self._models: dict[str, BaseChatModel] = {}
        self._tokenizers: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return sorted(self._tiers)

    def config(self, name: str | None = None) -> TierConfig:
        """The declaration of ``name`` (default tier when None); unknown names raise UnknownTierError."""
        name = name or self.default_tier
        try:
            return self._tiers[name]
        except KeyError:
            raise UnknownTierError(name, self.names) from None

    def validate(self, names: Iterable[str | None], who: str | None = None) -> list[str]:
        """``names`` (None: the default tier) once each, in order; an undeclared one raises UnknownTierError.

        ``who`` names the setting the names come from, so the error says where to fix it.
        """
        wanted = list(dict.fromkeys(name or self.default_tier for name in names))
        for name in wanted:
            if name not in self._tiers:
                raise UnknownTierError(name, self.names, who=who)
        return wanted

    def tier_order(self, order: Sequence[str] = (), first: Iterable[str | None] = ()) -> list[str]:
        """Every tier in the order the router tries them: ``order`` (or the default tier, then by strength), the
        rest by strength; each name in ``first`` (an agent's own tier, then a forced one) is moved to the head."""
        names = self.names
        base = list(order) or sorted(names, key=lambda n: (n != self.default_tier, self._tiers[n].strength, n))
        base += [n for n in sorted(names, key=lambda n: self._tiers[n].strength) if n not in base]
        for head in first:
            if head:
                base = [head, *[n for n in base if n != head]]
        return base

    def serving_tier(self, order: Sequence[str] = (), preferred: str | None = None, *, private: bool = False) -> str:
        """The tier a call starts on while every tier is healthy: the head of :meth:`tier_order` that may see the
        data. With no tier cleared for private data it is the head anyway: the router refuses the call itself."""
        ranked = self.tier_order(order, [preferred])
        return next((n for n in ranked if self._tiers[n].cleared_for(private)), ranked[0])

    def chat_model(self, name: str | None = None) -> BaseChatModel:
        """The chat model serving tier ``name``, built on first use."""
        name = name or self.default_tier
        config = self.config(name)
        with self._lock:
            model = self._models.get(name)
            if model is None:
                model = self._build(name, config)
                self._models[name] = model
        return model

    @staticmethod
    def _build(name: str, config: TierConfig) -> BaseChatModel:
        if config.kind == "llamacpp":
            return build_mobile(name, config)
        if config.kind == "torch":
            from tierflow.runtimes.edge import build_edge  # imports transformers: only when an edge tier is used

            return build_edge(name, config)
        return build_cloud(name, config)

    def count_tokens(self, name: str, text: str) -> int:
        """Tokens of ``text`` on tier ``name``: exact for llama.cpp, about four characters a token over HTTP.

        Counting never loads a tier's weights: a tier not loaded yet counts with its tokenizer alone
        (llama.cpp ``vocab_only``), so routing a call to ``mobile`` does not load ``edge`` just to ask.
        """
        config = self.config(name)
        with self._lock:
            model = self._models.get(name)
        if model is not None and config.kind != "openai" \
                and type(model).get_num_tokens is not BaseChatModel.get_num_tokens:
            return model.get_num_tokens(text)  # in-process tiers count with their own tokenizer
        if config.kind == "llamacpp":
            return len(self._tokenizer(name, config).tokenize(text.encode("utf-8"), add_bos=False, special=False))
        if config.kind == "torch":
            return len(text) // 3 + 1  # a cautious estimate until the tier is loaded
        # Remote tokenizers are not reachable offline (tiktoken downloads its tables); estimate instead.
        return len(text) // 4 + 1

    def _tokenizer(self, name: str, config: TierConfig) -> Any:
        """The tier's GGUF loaded as a tokenizer only (no weights), once.

        Loaded under the registry's lock, like the tiers: llama.cpp's quiet load points the process's stdout and
        stderr at /dev/null and back, and two loads at once (parallel branches) left them there for good.
        """
        with self._lock:
            found = self._tokenizers.get(name)
            if found is not None:
                return found
            from llama_cpp import _internals, llama_cpp

            from tierflow.runtimes.mobile import shipped_model_path

            path = config.model_path or str(shipped_model_path(config.shipped))
            params = llama_cpp.llama_model_default_params()
            params.vocab_only = True  # the tokenizer without weights or a context: milliseconds, a few MB
            try:
                made = _internals.LlamaModel(path_model=path, params=params, verbose=False)
            except (ValueError, RuntimeError, OSError) as exc:
                raise TierUnavailableError(name, f"could not read the tokenizer of {Path(path).name}: {exc}") from exc
            self._tokenizers[name] = made
            return made

    def ensure_usable(self, names: Iterable[str | None] | None = None) -> None:
        """Fail at start, not mid-run, when a tier in ``names`` (default: every declared tier) cannot load or be
        reached; the error names each broken tier with what ``tierflow doctor`` would say."""
        wanted = self.names if names is None else self.validate(names)
        broken = {h.tier: h.detail for h in (self.check(name) for name in wanted) if not h.usable}
        if broken:
            raise TierUnavailableError(", ".join(sorted(broken)), "; ".join(f"{t}: {d}" for t, d in broken.items())
                                       + " (see `tierflow doctor`)")

    def ensure_fits(self, text: str, names: Iterable[str | None]) -> None:
        """Raise ContextLengthExceeded unless ``text`` leaves room for an answer on every tier in ``names``."""
        for name in sorted(self.validate(names)):
            config = self.config(name)
            tokens = self.count_tokens(name, text)
            limit = config.n_ctx - config.max_tokens
            if tokens > limit:
                raise ContextLengthExceeded(name, tokens, limit)

    def check(self, name: str) -> TierHealth:
        """Probe a tier without running a prompt: the model file loads, or the endpoint lists models."""
        config = self.config(name)
        if config.kind in ("llamacpp", "torch"):
            runtime = "llama.cpp" if config.kind == "llamacpp" else "torch"
            try:
                path = config.model_path or str(shipped_model_path(config.shipped))
                self.chat_model(name)
                return TierHealth(tier=name, kind=config.kind, model=path, usable=True,
                                  detail=f"loaded in-process by {runtime}")
            except RuntimeLayerError as exc:
                return TierHealth(tier=name, kind=config.kind, model=config.model_path or "(shipped)",
                                  usable=False, detail=str(exc))
        url = f"{str(config.base_url).rstrip('/')}/models"
        headers = {"Authorization": f"Bearer {config.api_key.get_secret_value()}"}
        try:
            response = httpx.get(url, headers=headers, timeout=min(config.timeout_s, 5.0))
            response.raise_for_status()
        except httpx.HTTPError as exc:
            return TierHealth(tier=name, kind=config.kind, model=config.model, usable=False,
                              detail=f"GET {url} failed: {type(exc).__name__}: {exc}")
        return TierHealth(tier=name, kind=config.kind, model=config.model, usable=True,
                          detail=f"GET {url} answered {response.status_code}")
