"""A tool's JSON schemas compiled once, and the checks of arguments before sending and of structured results."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
from mcp import types
from referencing import Registry
from referencing.exceptions import Unresolvable

from tierflow.tools.errors import ToolInputError
from tierflow.tools.mcp.errors import McpToolError


class ToolSchemas:
    """A tool's input and output JSON schemas, each checked and compiled into a validator once.

    Building a jsonschema validator (and checking the schema against its metaschema) costs far more than
    validating a small object, so the pool compiles them when it lists the tools. An empty registry keeps
    ``$ref`` inside the schema: a server's schema can never make the client fetch a URL.
    """

    __slots__ = ("error", "input", "name", "output")

    def __init__(self, spec: types.Tool) -> None:
        self.name = spec.name
        self.input: jsonschema.protocols.Validator | None = None
        self.output: jsonschema.protocols.Validator | None = None
        self.error: str | None = None
        try:
            self.input = _compile(spec.inputSchema or {"type": "object"})
            self.output = _compile(spec.outputSchema) if spec.outputSchema is not None else None
        except jsonschema.SchemaError as exc:
            self.error = f"MCP tool {spec.name!r} declares an invalid JSON schema: {exc.message}"


def _compile(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    return cls(schema, registry=Registry())


def validate_arguments(spec: types.Tool, args: Any, max_chars: int, schemas: ToolSchemas | None = None) -> None:
    """Refuse arguments that are too large or do not match the tool's input schema, before sending them.

    ``schemas`` is the tool's compiled :class:`ToolSchemas` (compiled here when not given).
    """
    if not isinstance(args, dict):
        raise ToolInputError(f"arguments for {spec.name!r} must be an object, got {type(args).__name__}")
    try:
        size = len(json.dumps(args, ensure_ascii=False))
    except (TypeError, ValueError) as exc:
        raise ToolInputError(f"arguments for {spec.name!r} are not JSON: {exc}") from None
    if size > max_chars:
        raise ToolInputError(f"arguments for {spec.name!r} are {size} characters; the limit is {max_chars}")
    schemas = schemas or ToolSchemas(spec)
    if schemas.error is not None or schemas.input is None:  # refused before sending, as a bad call would be
        raise McpToolError(schemas.error or f"MCP tool {spec.name!r} has no usable input schema")
    try:
        if next(schemas.input.iter_errors(args), None) is None:
            return
        errors = sorted(schemas.input.iter_errors(args), key=lambda e: list(e.absolute_path))
    except Unresolvable as exc:
        raise McpToolError(f"the input schema of MCP tool {spec.name!r} refers to {exc.ref!r}, which is not "
                           "in the schema (the client never fetches schemas)") from None
    shown = "; ".join(f"{'/'.join(str(p) for p in e.absolute_path) or '(arguments)'}: {e.message}"
                      for e in errors[:3])
    raise ToolInputError(f"arguments for {spec.name!r} do not match its input schema: {shown}")


def check_structured_result(schemas: ToolSchemas, result: types.CallToolResult) -> None:
    """Refuse a successful result whose structured content does not match the tool's declared output schema."""
    if result.isError:
        return
    if schemas.error is not None:
        raise McpToolError(schemas.error)
    if schemas.output is None:
        return
    if result.structuredContent is None:
        raise McpToolError(f"MCP tool {schemas.name!r} declares an output schema but returned no structured content")
    try:
        error = next(schemas.output.iter_errors(result.structuredContent), None)
    except Unresolvable as exc:
        raise McpToolError(f"the output schema of MCP tool {schemas.name!r} refers to {exc.ref!r}, which is not "
                           "in the schema (the client never fetches schemas)") from None
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(result)"
        raise McpToolError(f"MCP tool {schemas.name!r} returned structured content that does not match its "
                           f"output schema: {where}: {error.message}")
