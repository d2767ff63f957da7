"""The @tool decorator: schemas from varied signatures, pydantic validation, structured errors, the registry."""

from __future__ import annotations

from enum import Enum
from typing import Literal

import pydantic
import pytest

from tools import Tool, ToolError, ToolRegistry, tool


class Color(str, Enum):
    RED = "red"
    BLUE = "blue"


class Address(pydantic.BaseModel):
    street: str
    zipcode: int


@tool
def book(city: str, nights: int, vip: bool = False, note: str | None = None) -> str:
    """Book a hotel room.

    Args:
        city: City to stay in.
        nights: Number of nights,
            at least one.
        vip: Whether to upgrade.
        note: Free text for the desk.
    """
    if nights < 1:
        raise ToolError("nights must be at least 1")
    return f"booked {nights} nights in {city}{' (vip)' if vip else ''}"


@tool(name="paint_house", description="Paint a house.")
def paint(address: Address, colors: list[Color], finish: Literal["matte", "gloss"] = "matte") -> dict:
    return {"street": address.street, "colors": [c.value for c in colors], "finish": finish}


def test_schema_of_simple_signature_with_optional_and_docstring() -> None:
    schema = book.schema
    assert schema["type"] == "function"
    fn = schema["function"]
    assert fn["name"] == "book"
    assert fn["description"] == "Book a hotel room."
    params = fn["parameters"]
    assert params["type"] == "object"
    assert params["required"] == ["city", "nights"]
    assert params["properties"]["city"] == {"type": "string", "description": "City to stay in."}
    assert params["properties"]["nights"] == {"type": "integer", "description": "Number of nights, at least one."}
    assert params["properties"]["vip"]["default"] is False
    assert {"type": "null"} in params["properties"]["note"]["anyOf"]


def test_schema_with_enum_literal_nested_model_and_list() -> None:
    fn = paint.schema["function"]
    assert fn["name"] == "paint_house" and fn["description"] == "Paint a house."
    props = fn["parameters"]["properties"]
    assert props["address"]["type"] == "object"
    assert props["address"]["properties"] == {"street": {"type": "string"}, "zipcode": {"type": "integer"}}
    assert props["colors"] == {"type": "array", "items": {"enum": ["red", "blue"], "type": "string"}}
    assert props["finish"]["enum"] == ["matte", "gloss"]
    assert "$ref" not in str(fn) and "$defs" not in str(fn)


def test_invoke_validates_and_coerces_nested_models() -> None:
    result = paint.invoke({"address": {"street": "Main", "zipcode": "12345"}, "colors": ["red"]})
    assert result.ok
    assert result.content == '{"street": "Main", "colors": ["red"], "finish": "matte"}'
    assert book.invoke('{"city": "Oslo", "nights": 2}').content == "booked 2 nights in Oslo"


@pytest.mark.parametrize(
    ("arguments", "code", "fragment"),
    [
        ({"city": "Oslo"}, "invalid_arguments", "missing required argument 'nights'"),
        ({"city": "Oslo", "nights": "many"}, "invalid_arguments", "argument 'nights'"),
        ({"city": "Oslo", "nights": 1, "pool": True}, "invalid_arguments", "unexpected argument 'pool'"),
        ("{not json", "invalid_arguments", "not valid JSON"),
        ([1, 2], "invalid_arguments", "must be a JSON object"),
        ({"city": "Oslo", "nights": 0}, "tool_failed", "nights must be at least 1"),
    ],
)
def test_invoke_errors_are_structured(arguments: object, code: str, fragment: str) -> None:
    result = book.invoke(arguments)  # type: ignore[arg-type]
    assert not result.ok
    assert result.error is not None and result.error["code"] == code
    assert fragment in result.error["message"]
    assert result.content.startswith("Error: ")


def test_exceptions_inside_tools_become_results() -> None:
    @tool
    def boom() -> str:
        """Always fails."""
        raise RuntimeError("kaput")

    result = boom.invoke({})
    assert result.error == {"code": "tool_failed", "message": "RuntimeError: kaput"}


def test_registry_lists_and_calls_and_reports_unknown_tools() -> None:
    registry = ToolRegistry()
    registry.register(book)
    registry.register(paint)
    assert registry.names() == ["book", "paint_house"]
    assert [s["function"]["name"] for s in registry.schemas()] == ["book", "paint_house"]
    assert registry.call("book", {"city": "Rome", "nights": 3, "vip": True}).content == "booked 3 nights in Rome (vip)"
    missing = registry.call("fly", {})
    assert missing.error is not None and missing.error["code"] == "unknown_tool"
    assert "available tools: book, paint_house" in missing.error["message"]
    with pytest.raises(ValueError, match="already registered"):
        registry.register(book)


def test_var_args_are_rejected_at_definition() -> None:
    def bad(*items: int) -> int:
        return sum(items)

    with pytest.raises(TypeError, match="cannot be described"):
        Tool(bad)
