"""Settings as TOML text: a small writer for plain data (tomllib only reads), and secret masking."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import date, datetime, time
from enum import Enum
from pathlib import PurePath
from typing import Any

from pydantic import SecretBytes, SecretStr

MASK = "***"
# Keys whose values are secrets: a whole word of the key (after "_", "-" or at its start), so `neo4j_password`,
# `weaviate_api_key`, `token` and `Authorization` are masked but `max_tokens` and `secret_fields` are not.
SECRET_KEY = re.compile(r"(^|[_\-])(pass(word|wd|phrase)?|secret(_key)?|(access_|bearer_|auth_)?token|api_?key|"
                        r"authorization|credentials?|private_key)$", re.IGNORECASE)
# user:password@ in a URL (postgres://u:p@host/db).
URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.\-]*://[^:/@\s]*:)[^@/\s]+(?P<at>@)", re.IGNORECASE)
BARE_KEY = re.compile(r"^[A-Za-z0-9_\-]+$")


def plain(value: Any, *, mask: bool = False) -> Any:
    """``value`` as TOML-ready data (secrets revealed, or masked when ``mask``); None entries are left out."""
    if isinstance(value, SecretStr | SecretBytes):
        secret = value.get_secret_value()
        return (MASK if secret else secret) if mask else (secret.decode() if isinstance(secret, bytes) else secret)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if item is None:
                continue
            if mask and SECRET_KEY.search(str(key)) and isinstance(item, str | SecretStr | SecretBytes) and item:
                out[str(key)] = MASK
            else:
                out[str(key)] = plain(item, mask=mask)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        items = [plain(item, mask=mask) for item in value if item is not None]
        if mask:  # command-line arguments: the value after --token, --api-key, --password, ...
            items = [MASK if i and isinstance(items[i - 1], str) and SECRET_KEY.search(items[i - 1].lstrip("-"))
                     and isinstance(item, str) else item for i, item in enumerate(items)]
        return items
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Enum):
        return plain(value.value, mask=mask)
    if isinstance(value, str) and mask:
        return URL_PASSWORD.sub(rf"\g<head>{MASK}\g<at>", value)
    return value


def dumps(data: Mapping[str, Any]) -> str:
    """TOML text for ``data`` (output of :func:`plain`): scalars and arrays first, then one table per mapping."""
    lines: list[str] = []
    _table(data, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _table(data: Mapping[str, Any], path: list[str], lines: list[str]) -> None:
    tables = {k: v for k, v in data.items() if isinstance(v, Mapping) and v}
    if path and (len(tables) < len(data) or not data):
        lines.append("")
        lines.append(f"[{'.'.join(_key(p) for p in path)}]")
    for key, value in data.items():
        if key not in tables:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in tables.items():
        _table(value, [*path, key], lines)


def _key(key: str) -> str:
    return key if BARE_KEY.match(key) else _string(key)


def _string(text: str) -> str:
    # JSON's escapes are TOML's (\" \\ \n \t \uXXXX); non-ASCII text stays as it is.
    return json.dumps(text, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
