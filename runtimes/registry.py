"""The tier registry: builds each declared tier's chat model once and hands it to callers by name."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

import httpx
from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel

from runtimes.cloud import build_cloud
from runtimes.config import TierConfig
from runtimes.errors import ContextLengthExceeded, RuntimeLayerError, UnknownTierError
from runtimes.mobile import MobileChatModel, build_mobile, shipped_model_path


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
            raise UnknownTierError(default_tier, sorted(self._tiers))
        self.default_tier = default_tier
        self._models: dict[str, BaseChatModel] = {}
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

    def chat_model(self, name: str | None = None) -> BaseChatModel:
        """The chat model serving tier ``name``, built on first use."""
        name = name or self.default_tier
        config = self.config(name)
        with self._lock:
            model = self._models.get(name)
            if model is None:
                model = build_mobile(name, config) if config.kind == "llamacpp" else build_cloud(name, config)
                self._models[name] = model
        return model

    def count_tokens(self, name: str, text: str) -> int:
        """Tokens of ``text`` on tier ``name``: exact for llama.cpp, about four characters a token over HTTP."""
        model = self.chat_model(name)
        if isinstance(model, MobileChatModel):
            return len(model.client.tokenize(text.encode("utf-8"), add_bos=False))
        # Remote tokenizers are not reachable offline (tiktoken downloads its tables); estimate instead.
        return len(text) // 4 + 1

    def ensure_fits(self, text: str, names: Iterable[str]) -> None:
        """Raise ContextLengthExceeded unless ``text`` leaves room for an answer on every tier in ``names``."""
        for name in sorted(set(names)):
            config = self.config(name)
            tokens = self.count_tokens(name, text)
            limit = config.n_ctx - config.max_tokens
            if tokens > limit:
                raise ContextLengthExceeded(name, tokens, limit)

    def check(self, name: str) -> TierHealth:
        """Probe a tier without running a prompt: the model file loads, or the endpoint lists models."""
        config = self.config(name)
        if config.kind == "llamacpp":
            try:
                path = config.model_path or str(shipped_model_path())
                self.chat_model(name)
                return TierHealth(tier=name, kind=config.kind, model=path, usable=True,
                                  detail="GGUF loaded in-process by llama.cpp")
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
