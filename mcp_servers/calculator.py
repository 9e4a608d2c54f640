"""The ``calculator`` MCP server: exact arithmetic and exact unit conversion (rational numbers, no floats).

Run: ``python -m tierflow.mcp_servers.calculator`` (stdio) or with ``--http --port N``. Stateless: any number of
sessions may be pooled.
"""

from __future__ import annotations

import argparse
from typing import Annotated

from mcp.server.fastmcp import FastMCP
from pydantic import Field

from tierflow.mcp_servers.serve import add_serve_arguments, serve_from_args
from tierflow.tools.grounding import GROUNDED
from tierflow.tools.native import evaluate, format_number
from tierflow.tools.units import TEMPERATURES, UNITS, convert, parse_value, unit_name

# Grounded arguments (tools.grounding): a schema-constrained agent may use only numbers from its context.
Expression = Annotated[str, Field(description="arithmetic only, e.g. 17*23 or (2+3)/4",
                                  json_schema_extra={GROUNDED: "expression"})]
Value = Annotated[str | float, Field(description="the number to convert, e.g. 5 or 2.5",
                                     json_schema_extra={GROUNDED: "number"})]


def build_calculator_server() -> FastMCP:
    """The calculator/units server; its tools keep no state."""
    # Plain JSON replies over HTTP: these tools send no progress, and an SSE reply the SDK client closes early
    # costs a fresh TCP connection per call.
    server = FastMCP("tierflow-calculator", instructions="Exact arithmetic and unit conversion.",
                     log_level="WARNING", json_response=True)

    @server.tool()
    def calculate(expression: Expression) -> str:
        """Exact arithmetic on an expression with + - * / // % ** ^ and parentheses (no variables)."""
        return format_number(evaluate(expression))

    @server.tool()
    def convert_units(value: Value, from_unit: str, to_unit: str) -> str:
        """Convert a value exactly between units of length, mass, time, area, volume, data, speed, temperature."""
        result = convert(parse_value(str(value)), from_unit, to_unit)
        return f"{format_number(result)} {unit_name(to_unit)}"

    @server.tool()
    def list_units() -> dict[str, list[str]]:
        """The units convert_units knows, by quantity."""
        return {**{dim: list(table) for dim, table in UNITS.items()}, "temperature": sorted(TEMPERATURES)}

    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tierflow.mcp_servers.calculator", description=__doc__)
    add_serve_arguments(parser)
    serve_from_args(build_calculator_server(), parser.parse_args(argv))


if __name__ == "__main__":
    main()
