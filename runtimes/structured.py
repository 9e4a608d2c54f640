"""Schema-constrained calls: ask any tier for JSON that follows a schema and parse it."""

from __future__ import annotations

import json
from typing import Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig

from tierflow.runtimes.errors import StructuredOutputError


def json_schema_format(schema: dict[str, Any], name: str = "output") -> dict[str, Any]:
    """OpenAI's ``response_format`` for a JSON schema; tiers translate it to their own form."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": False}}


def invoke_json(model: BaseChatModel, messages: LanguageModelInput, schema: dict[str, Any],
                config: RunnableConfig | None = None, *, name: str = "output") -> dict[str, Any]:
    """Call ``model`` under ``schema`` and return the parsed object; bad JSON raises StructuredOutputError.

    Checking the object against domain rules is the caller's job (a pydantic model usually).
    """
    message = model.bind(response_format=json_schema_format(schema, name)).invoke(messages, config)
    raw = message.text if isinstance(message, AIMessage) else str(message)
    tier = str(getattr(model, "tier", "?"))
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise StructuredOutputError(tier, f"not JSON ({exc.msg} at char {exc.pos})", raw) from exc
    if not isinstance(value, dict):
        raise StructuredOutputError(tier, f"expected a JSON object, got {type(value).__name__}", raw)
    return value
