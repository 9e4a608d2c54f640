"""Masking of secrets and private data before a span leaves the process.

Langfuse's SDK calls the mask on every observation's input, output and metadata; tierflow's mask
replaces values of secret-named fields, secret-shaped strings (API keys, bearer tokens, ...) and
anything marked private.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tracing.config import MaskSettings

_MAX_DEPTH = 40
# Runs repeat the same strings (request, state fields, prompts) in many observations; masking each
# distinct string once per Masker keeps the per-observation cost low. Bounded so memory stays flat.
_CACHE_SIZE = 4096


class Masker:
    """Callable ``mask(data=...)`` in the form Langfuse's ``mask`` argument expects."""

    def __init__(self, settings: MaskSettings | None = None) -> None:
        self.settings = settings or MaskSettings()
        s = self.settings
        self._field = re.compile(rf"(?i)^(.*[_\-.\s])?({s.secret_fields})([_\-.\s].*)?$")
        self._patterns = [re.compile(p) for p in s.secret_patterns]
        # "password: hunter2", "api_key=abc" inside free text
        self._inline = re.compile(rf"(?i)\b(?P<key>(?:\w+[_\-])?(?:{s.secret_fields})(?:[_\-]\w+)?)"
                                  rf"(?P<sep>[\"']?\s*[:=]\s*)(?P<value>\"[^\"]*\"|'[^']*'|[^\s,;&\"'}}]+)")
        markers = "|".join(re.escape(m) for m in s.private_markers) or "private"
        self._private_text = re.compile(rf"(?is)<(?P<tag>{markers})>.*?</(?P=tag)>")
        self._markers = {m.lower() for m in s.private_markers}
        self._texts: dict[str, str] = {}
        self._fields: dict[str, bool] = {}

    def __call__(self, *, data: Any, **_: Any) -> Any:
        return self.mask(data) if self.settings.enabled else data

    def mask(self, data: Any, depth: int = 0) -> Any:
        """A copy of ``data`` with secrets and private parts replaced; the input is not modified."""
        if depth > _MAX_DEPTH:
            return self.settings.replacement
        if isinstance(data, str):
            return self.mask_text(data)
        if isinstance(data, Mapping):
            if self.is_private(data):
                return self.settings.private_replacement
            return {key: self.settings.replacement if self.is_secret_field(key) and value not in (None, "")
                    else self.mask(value, depth + 1) for key, value in data.items()}
        if isinstance(data, list | tuple):
            return [self.mask(item, depth + 1) for item in data]
        return data

    def mask_text(self, text: str) -> str:
        """Free text with private sections and secret-shaped substrings replaced."""
        masked = self._texts.get(text)
        if masked is None:
            masked = self._mask_text(text)
            if len(self._texts) >= _CACHE_SIZE:
                self._texts.clear()
            self._texts[text] = masked
        return masked

    def _mask_text(self, text: str) -> str:
        if "<" in text:
            text = self._private_text.sub(self.settings.private_replacement, text)
        for pattern in self._patterns:
            text = pattern.sub(self.settings.replacement, text)
        return self._inline.sub(lambda m: f"{m['key']}{m['sep']}{self.settings.replacement}", text)

    def is_secret_field(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        secret = self._fields.get(key)
        if secret is None:
            secret = bool(self._field.match(key))
            if len(self._fields) >= _CACHE_SIZE:
                self._fields.clear()
            self._fields[key] = secret
        return secret

    def is_private(self, data: Mapping[Any, Any]) -> bool:
        """A mapping marked ``{"privacy": "private"}`` or ``{"private": true}``."""
        privacy = data.get("privacy")
        if isinstance(privacy, str) and privacy.lower() in self._markers:
            return True
        return any(data.get(marker) is True for marker in self._markers)
