"""Masking of secrets and private data before a span leaves the process.

Langfuse's SDK calls the mask on every observation's input, output and metadata; tierflow's mask
turns any value into plain JSON data first (pydantic models, dataclasses, LangChain messages, LangGraph
``Send``, sets, arbitrary objects), so nothing reaches the exporter unmasked, then replaces values of
secret-named fields, secret-shaped strings (API keys, bearer tokens, ...), text the router treats as
private (e-mail addresses, card numbers, "my password is ...") and anything marked private. Inside
:meth:`Masker.private_scope` (the callback handler enters it for observations of a private run) every
value is replaced whole.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime, time
from typing import Any
from uuid import UUID

from pydantic import BaseModel, SecretBytes, SecretStr

from tierflow.tracing.config import MaskSettings

_MAX_DEPTH = 40
# Runs repeat the same strings (request, state fields, prompts) in many observations; masking each
# distinct string once per Masker keeps the per-observation cost low. Bounded so memory stays flat.
_CACHE_SIZE = 4096
# A value after "key:" / "key=" (quoted or up to the next separator): private patterns that match only a
# key, like the router's "password:", take its value with them.
_VALUE = re.compile(r"\s*(?:\"[^\"]*\"|'[^']*'|[^\s,;&\"'}]+)")
# Long text is searched in overlapping windows: a pattern without an anchor (the e-mail one) costs quadratic time
# on a long unbroken token, and a window bounds that. The overlap is longer than any e-mail, card or phone number.
_WINDOW, _OVERLAP = 1024, 320
# Set while the data being masked belongs to a private run (one flag per thread / asyncio task).
_PRIVATE_SCOPE: ContextVar[bool] = ContextVar("tierflow_private_scope", default=False)


class Masker:
    """Callable ``mask(data=...)`` in the form Langfuse's ``mask`` argument expects.

    Whatever it is given, it returns plain JSON data (dict with str keys, list, str, int, float, bool,
    None) with secrets and private parts replaced; it never hands back the caller's object.
    """

    def __init__(self, settings: MaskSettings | None = None) -> None:
        self.settings = settings or MaskSettings()
        s = self.settings
        self._field = re.compile(rf"(?i)^(.*[_\-.\s])?({s.secret_fields})([_\-.\s].*)?$")
        self._patterns = [re.compile(p) for p in s.secret_patterns]
        self._private_patterns = [(pattern, _required_chars(pattern))
                                  for pattern in map(re.compile, s.private_patterns)]
        # "password: hunter2", "api_key=abc" inside free text
        self._inline = re.compile(rf"(?i)\b(?P<key>(?:\w+[_\-])?(?:{s.secret_fields})(?:[_\-]\w+)?)"
                                  rf"(?P<sep>[\"']?\s*[:=]\s*)(?P<value>\"[^\"]*\"|'[^']*'|[^\s,;&\"'}}]+)")
        markers = "|".join(re.escape(m) for m in s.private_markers) or "private"
        self._private_text = re.compile(rf"(?is)<(?P<tag>{markers})>.*?</(?P=tag)>")
        self._markers = {m.lower() for m in s.private_markers}
        self._keep = frozenset(s.private_run_keys)
        self._texts: dict[str, str] = {}
        self._fields: dict[str, bool] = {}

    def __call__(self, *, data: Any, **_: Any) -> Any:
        if not self.settings.enabled:
            return data
        if self.settings.mask_private_runs and _PRIVATE_SCOPE.get():
            return self.mask_private(data)
        return self.mask(data)

    @staticmethod
    @contextmanager
    def private_scope() -> Iterator[None]:
        """Within this block (this thread / task only) the mask replaces every value whole: a private run's data."""
        token = _PRIVATE_SCOPE.set(True)
        try:
            yield
        finally:
            _PRIVATE_SCOPE.reset(token)

    @staticmethod
    def in_private_scope() -> bool:
        """Whether the data masked now belongs to a private run."""
        return _PRIVATE_SCOPE.get()

    def mask(self, data: Any, depth: int = 0) -> Any:
        """A masked JSON copy of ``data`` (any type); the input is not modified."""
        return self._mask(data, depth, set())

    def _mask(self, data: Any, depth: int, path: set[int]) -> Any:
        if isinstance(data, enum.Enum):
            data = data.value
        if data is None or isinstance(data, bool | int | float):
            return data
        if isinstance(data, str):
            return self.mask_text(str(data))
        if depth > _MAX_DEPTH:
            return self.settings.replacement
        if id(data) in path:  # a structure that contains itself
            return f"<cycle: {type(data).__name__}>"
        path.add(id(data))
        try:
            if isinstance(data, Mapping):
                if self.is_private(data):
                    return self.settings.private_replacement
                return {self._key(key): self.settings.replacement
                        if self.is_secret_field(key) and not _empty(value)
                        else self._mask(value, depth + 1, path) for key, value in data.items()}
            if isinstance(data, list | tuple | set | frozenset):
                return [self._mask(item, depth + 1, path) for item in data]
            return self._mask(to_plain(data), depth + 1, path)
        finally:
            path.discard(id(data))

    def mask_private(self, data: Any) -> Any:
        """Data of a private run: replaced whole; a mapping (metadata) keeps only ``private_run_keys``, masked."""
        replacement = self.settings.private_replacement
        if isinstance(data, Mapping):
            return {self._key(key): self.mask(value, 1) if key in self._keep else replacement
                    for key, value in data.items()}
        return replacement

    def mask_text(self, text: str) -> str:
        """Free text with private sections, secret-shaped and private-looking substrings replaced."""
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
        text = self._inline.sub(lambda m: f"{m['key']}{m['sep']}{self.settings.replacement}", text)
        # after the secrets, so "password: [REDACTED]" goes whole
        return self._replace_private(text) if self._private_patterns else text

    def _replace_private(self, text: str) -> str:
        """Every match of any private pattern replaced; overlapping matches (a card number inside an IBAN) go as one."""
        spans: list[tuple[int, int]] = []
        for pattern, required in self._private_patterns:
            if not all(char in text for char in required):  # no "@": no e-mail address to look for
                continue
            for match in _windowed(pattern, text):
                found = match.group().rstrip()
                end = match.start() + len(found)
                if found.endswith((":", "=")):  # only the key matched ("password:"): its value goes with it
                    value = _VALUE.match(text, end)
                    end = value.end() if value else end
                if end > match.start():
                    spans.append((match.start(), end))
        if not spans:
            return text
        parts: list[str] = []
        last = 0
        start, stop = -1, -1
        for begin, end in sorted(spans):
            if begin > stop:  # a new, separate span
                if stop >= 0:
                    parts += (text[last:start], self.settings.private_replacement)
                    last = stop
                start, stop = begin, end
            else:
                stop = max(stop, end)
        parts += (text[last:start], self.settings.private_replacement, text[stop:])
        return "".join(parts)

    def _key(self, key: object) -> str:
        """A mapping key as exported: text, masked like any other text (an e-mail can be a key)."""
        return self.mask_text(key if isinstance(key, str) else str(to_plain(key)))

    def is_secret_field(self, key: object) -> bool:
        """Whether values under ``key`` are secrets (``password``, ``api_key``, ``Authorization``, ...)."""
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
        try:
            privacy = data.get("privacy")
            if isinstance(privacy, str) and privacy.lower() in self._markers:
                return True
            return any(data.get(marker) is True for marker in self._markers)
        except Exception:  # a mapping whose lookups fail is masked like its items
            return False


def _required_chars(pattern: re.Pattern[str]) -> frozenset[str]:
    """Punctuation every match of ``pattern`` contains (``@`` for e-mail addresses); empty when unknown.

    Text without one of them cannot match, so the search is skipped: cheap, and most text has no ``@``.
    """
    try:
        from re import _constants, _parser  # the standard library's own parser of patterns

        items = list(_parser.parse(pattern.pattern, pattern.flags))
        return frozenset(chr(av) for op, av in items if op is _constants.LITERAL and not chr(av).isalnum())
    except Exception:  # another Python's internals: search every text
        return frozenset()


def _windowed(pattern: re.Pattern[str], text: str) -> Iterator[re.Match[str]]:
    """Matches of ``pattern`` in overlapping windows of ``text`` (a match cut by a window's end is also found whole)."""
    if len(text) <= _WINDOW:
        yield from pattern.finditer(text)
        return
    for start in range(0, len(text), _WINDOW - _OVERLAP):
        yield from pattern.finditer(text, start, start + _WINDOW)
        if start + _WINDOW >= len(text):
            return


def to_plain(obj: Any) -> Any:
    """``obj`` as JSON-able data (before masking): models and dataclasses as dicts, objects by their fields or text.

    Never raises: what cannot be converted becomes ``str(obj)`` (masked as text by the caller), or its type name.
    """
    try:
        return _to_plain(obj)
    except Exception:
        try:
            return str(obj)
        except Exception:
            return f"<{type(obj).__name__}>"


def _to_plain(obj: Any) -> Any:
    if obj is None or isinstance(obj, str | bool | int | float | Mapping | list | tuple | set | frozenset):
        return obj
    if isinstance(obj, SecretStr | SecretBytes):
        return "<secret>"
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, bytes | bytearray):
        return bytes(obj).decode("utf-8", errors="replace")
    if isinstance(obj, datetime | date | time):
        return obj.isoformat()
    if isinstance(obj, UUID):
        return str(obj)
    if isinstance(obj, BaseException):
        return f"{type(obj).__name__}: {obj}"
    if isinstance(obj, BaseModel):  # LangChain messages and documents too
        return obj.model_dump()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name, None) for f in dataclasses.fields(obj)}  # fields recurse in mask()
    if hasattr(obj, "node") and hasattr(obj, "arg"):  # LangGraph Send: which node gets which state
        return {"node": obj.node, "arg": obj.arg}
    to_json = getattr(obj, "to_json", None)  # LangChain Serializable
    if callable(to_json) and not isinstance(obj, type):
        return to_json()
    slots = [s for c in type(obj).__mro__ for s in _names(getattr(c, "__slots__", ())) if not s.startswith("_")]
    if slots:
        return {s: getattr(obj, s, None) for s in slots}
    fields = getattr(obj, "__dict__", None)
    if isinstance(fields, dict) and not isinstance(obj, type) and not callable(obj):
        return {k: v for k, v in fields.items() if not k.startswith("_")}
    return str(obj)


def _names(slots: str | Any) -> tuple[str, ...]:
    return (slots,) if isinstance(slots, str) else tuple(slots)


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value)
