"""Tool-call parsing: every format, several calls per turn, JSON repair, and fuzzing (never raises)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tools import ToolCall, parse_tool_calls, repair_json


def test_hermes_qwen_blocks_with_content_and_several_calls() -> None:
    text = (
        'Let me check.\n<tool_call>\n{"name": "cd", "arguments": {"folder": "docs"}}\n</tool_call>\n'
        '<tool_call>{"name": "ls", "arguments": {}}</tool_call>'
    )
    parsed = parse_tool_calls(text)
    assert parsed.valid and parsed.fmt == "hermes"
    assert parsed.calls == [ToolCall("cd", {"folder": "docs"}), ToolCall("ls", {})]
    assert parsed.content == "Let me check."


def test_hermes_repairs_slightly_malformed_json() -> None:
    text = "<tool_call>{'name': 'mkdir', 'arguments': {'dir_name': 'temp',}}</tool_call>"
    assert parse_tool_calls(text).calls == [ToolCall("mkdir", {"dir_name": "temp"})]
    truncated = '<tool_call>{"name": "echo", "arguments": {"content": "hi", "flag": true'
    assert parse_tool_calls(truncated).calls == [ToolCall("echo", {"content": "hi", "flag": True})]


def test_llama3_json_forms() -> None:
    single = '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}'
    assert parse_tool_calls(single).calls == [ToolCall("get_weather", {"city": "Paris"})]
    listed = '[{"name": "a", "parameters": {}}, {"name": "b", "parameters": {"x": 1}}]'
    assert [c.name for c in parse_tool_calls(listed).calls] == ["a", "b"]
    chained = '{"name": "a", "parameters": {}}; {"name": "b", "parameters": {"x": 1}}'
    assert parse_tool_calls(chained).calls == [ToolCall("a", {}), ToolCall("b", {"x": 1})]


def test_openai_message_dict() -> None:
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "cd", "arguments": '{"folder": "x"}'}},
            {"id": "c2", "type": "function", "function": {"name": "pwd", "arguments": ""}},
        ],
    }
    parsed = parse_tool_calls(message)
    assert parsed.valid and parsed.fmt == "openai"
    assert parsed.calls == [ToolCall("cd", {"folder": "x"}, id="c1"), ToolCall("pwd", {}, id="c2")]


def test_bfcl_python_calls_use_ast_not_eval() -> None:
    parsed = parse_tool_calls("[cd(folder='document'), mkdir(dir_name='temp'), ls(a=True)]")
    assert parsed.fmt == "python"
    assert parsed.calls == [
        ToolCall("cd", {"folder": "document"}),
        ToolCall("mkdir", {"dir_name": "temp"}),
        ToolCall("ls", {"a": True}),
    ]
    hostile = parse_tool_calls("[cd(folder=__import__('os').system('echo pwned'))]")
    assert not hostile.valid and "literal" in hostile.error


def test_plain_answer_and_invalid_attempts() -> None:
    answer = parse_tool_calls("The file was moved to temp.")
    assert answer.valid and answer.calls == [] and answer.content == "The file was moved to temp."
    broken = parse_tool_calls('<tool_call>{"arguments": {}}</tool_call>')
    assert not broken.valid and "name" in broken.error
    garbage = parse_tool_calls("<tool_call>{{{{ nope ]]]</tool_call>")
    assert not garbage.valid and garbage.error


def test_repair_json_rejects_non_json() -> None:
    assert repair_json('```json\n{"a": [1, 2,]}\n```') == {"a": [1, 2]}
    with pytest.raises(ValueError):
        repair_json("definitely not json")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_arbitrary_text_never_raises(text: str) -> None:
    parsed = parse_tool_calls(text)
    assert isinstance(parsed.valid, bool)
    for call in parsed.calls:
        assert isinstance(call.name, str) and isinstance(call.arguments, dict)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(
    st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True),
    st.dictionaries(st.text(max_size=8), json_values, max_size=4),
)
def test_fuzz_hermes_roundtrip(name: str, arguments: dict) -> None:
    text = f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"
    assert parse_tool_calls(text).calls == [ToolCall(name, arguments)]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="{}[]\"':,<>/tool_cal ntrue", max_size=120))
def test_fuzz_near_miss_text_never_raises(text: str) -> None:
    parse_tool_calls("<tool_call>" + text)
    parse_tool_calls(text)
