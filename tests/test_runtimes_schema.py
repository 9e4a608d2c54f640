"""One reading of ``response_format`` for the router and every tier: the schema asked for and its wire forms."""

import pytest
from pydantic import BaseModel

from tierflow.runtimes.schema import asks_for_json, json_object_format, schema_of

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


class City(BaseModel):
    city: str


@pytest.mark.parametrize("response_format", [
    {"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA, "strict": False}},  # OpenAI
    {"type": "json_object", "schema": SCHEMA},  # llama.cpp
    {"name": "city", "schema": SCHEMA},  # OpenAI's inner form
    SCHEMA,  # a JSON schema as it is
])
def test_every_form_of_a_schema_reads_as_the_same_schema(response_format):
    assert schema_of(response_format) == SCHEMA
    assert asks_for_json(response_format)
    assert json_object_format(response_format) == {"type": "json_object", "schema": SCHEMA}


def test_a_pydantic_model_class_reads_as_its_json_schema():
    assert schema_of(City) == City.model_json_schema()
    assert json_object_format(City) == {"type": "json_object", "schema": City.model_json_schema()}


@pytest.mark.parametrize(("response_format", "wants_json"), [
    (None, False), ({"type": "text"}, False), ({"type": "json_object"}, True),
    ({"type": "json_schema", "json_schema": {"name": "x"}}, True), ("json", True),
])
def test_formats_without_a_schema_name_none(response_format, wants_json):
    assert schema_of(response_format) is None
    assert asks_for_json(response_format) is wants_json


def test_formats_without_a_schema_keep_their_wire_form():
    plain = {"type": "json_object"}
    assert json_object_format(plain) is plain
    assert json_object_format({"type": "text"}) == {"type": "text"}
    # OpenAI's form without a schema still asks llama.cpp for JSON
    assert json_object_format({"type": "json_schema", "json_schema": {"name": "x"}}) == {"type": "json_object",
                                                                                          "schema": {}}
