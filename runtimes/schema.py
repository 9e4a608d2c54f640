"""One reading of ``response_format``: whatever a caller passes, the JSON schema it asks for.

Callers pass a pydantic model class, a JSON schema, OpenAI's ``{"type": "json_schema", ...}`` or llama.cpp's
``{"type": "json_object", "schema": ...}``; the router validates replies against :func:`schema_of` and each tier
turns it into its own wire form, so no tier parses the formats on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Keys and types that make a bare dict a JSON schema rather than a response-format envelope.
_SCHEMA_KEYS = frozenset({"properties", "items", "required", "enum", "const", "anyOf", "oneOf", "allOf", "$ref",
                          "$defs", "$schema"})
_JSON_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})


def schema_of(response_format: Any) -> dict[str, Any] | None:
    """The JSON schema ``response_format`` asks for, or None when it names none (plain JSON, text, nothing)."""
    if response_format is None:
        return None
    if isinstance(response_format, type) and hasattr(response_format, "model_json_schema"):
        return response_format.model_json_schema()
    if not isinstance(response_format, Mapping):
        return None
    kind = response_format.get("type")
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
    elif kind == "json_object" or (kind is None and "schema" in response_format):
        schema = response_format.get("schema")  # llama.cpp's form, or OpenAI's inner {"name", "schema"}
    elif kind in _JSON_TYPES or isinstance(kind, list) or (kind is None and _SCHEMA_KEYS & response_format.keys()):
        schema = response_format  # a JSON schema given as it is
    else:
        return None
    return dict(schema) if isinstance(schema, Mapping) else None


def asks_for_json(response_format: Any) -> bool:
    """True when ``response_format`` asks for a JSON reply, with or without a schema (``{"type": "text"}`` does not)."""
    if response_format is None:
        return False
    if isinstance(response_format, Mapping):
        return response_format.get("type") in ("json_object", "json_schema") or schema_of(response_format) is not None
    return True


def json_object_format(response_format: Any) -> Any:
    """llama.cpp's grammar-constrained form ``{"type": "json_object", "schema": ...}`` of a format with a schema.

    Formats without a schema (plain ``json_object``, ``text``) come back unchanged.
    """
    if isinstance(response_format, Mapping) and response_format.get("type") == "json_object":
        return response_format
    schema = schema_of(response_format)
    if schema is None and not (isinstance(response_format, Mapping) and response_format.get("type") == "json_schema"):
        return response_format
    return {"type": "json_object", "schema": schema or {}}
