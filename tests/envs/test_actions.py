"""The shared single-action envelope: hostile model text becomes an invalid turn, never an exception."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.alfworld.actions import parse_action as alfworld_parse
from envs.base import Parsed
from envs.webshop.actions import parse_action as webshop_parse

HOSTILE = [
    "<tool_call>" + "[" * 5000 + "</tool_call>",  # json.loads -> RecursionError
    '{"tool_calls": ' + "[" * 5000 + "]" * 5000 + "}",
    '<tool_call>{"name": "act", "arguments": "' + "[" * 5000 + '"}</tool_call>',
    '<tool_call>{"name": "click", "arguments": "' + "[" * 5000 + '"}</tool_call>',
    "<think>" * 1000,
]


@pytest.mark.parametrize("parse", [alfworld_parse, webshop_parse], ids=["alfworld", "webshop"])
@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_text_is_invalid_not_an_exception(parse, text: str) -> None:  # type: ignore[no-untyped-def]
    parsed = parse(text)
    assert isinstance(parsed, Parsed)
    assert not parsed.format_valid and parsed.feedback.startswith("Invalid response:")


def test_odd_characters_parse_without_error() -> None:
    assert alfworld_parse("\x00\ud800<action>\x00</action>") == Parsed("\x00", True)  # the env will refuse it


def test_tool_names_in_feedback() -> None:
    assert "the only tool is 'act'" in alfworld_parse('<tool_call>{"name": "go"}</tool_call>').feedback
    assert "the tools are 'click' and 'search'" in webshop_parse('<tool_call>{"name": "go"}</tool_call>').feedback
    assert webshop_parse(
        '<tool_call>{"name": "click", "arguments": "{\\"target\\": \\"Buy Now\\"}"}</tool_call>'
    ) == Parsed("click[buy now]", True)
    assert alfworld_parse('{"tool_calls": [{"function": {"name": "act", "arguments": {"action": "Look"}}}]}') == Parsed(
        "look", True
    )


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('<>/{}[]":,actiontoolthink_ \n')), max_size=200))
def test_parse_never_raises(text: str) -> None:
    for parse in (alfworld_parse, webshop_parse):
        parsed = parse(text)
        assert parsed.format_valid == (parsed.action is not None)
