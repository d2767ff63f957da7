"""Model text -> WebShop action (Contract 2): a pure function that never raises.

Accepted forms (reasoning in ``<think>...</think>`` is allowed before either):

- ``<action>search[red running shoes]</action>`` or ``<action>click[buy now]</action>``, exactly one block;
- a tool call as chat templates write it, ``<tool_call>{"name": "click", "arguments": {"target": "buy now"}}
  </tool_call>`` (tools ``search`` with ``query`` and ``click`` with ``target``, see ``prompts.TOOLS``), or the JSON
  object ``{"tool_calls": [{"name": ..., "arguments": {...}}]}`` (arguments may be a JSON string).

The action is lowercased with whitespace collapsed (the original lowercases the argument, verl-agent the whole
reply) and must read ``search[...]`` or ``click[...]`` with a non-empty argument; whether the page accepts it is the
env's call (``action_valid``). Unlike verl-agent, a reply without ``<think>`` is still valid.
"""

from __future__ import annotations

import json
import re
from typing import Any

from envs.base import Parsed

__all__ = ["CLICK_TOOL", "MAX_ACTION_CHARS", "SEARCH_TOOL", "parse_action"]

SEARCH_TOOL = "search"
CLICK_TOOL = "click"
MAX_ACTION_CHARS = 300

_THINK_RE = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_ACTION_RE = re.compile(r"<action>(.*?)</action>", re.DOTALL | re.IGNORECASE)
_TOOL_CALL_RE = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL | re.IGNORECASE)
_SHAPE_RE = re.compile(r"(search|click)\[(.+)\]")
_EXAMPLE = "<action>search[red running shoes]</action> or <action>click[buy now]</action>"
_TOOL_ARGUMENT = {SEARCH_TOOL: "query", CLICK_TOOL: "target"}


def _invalid(reason: str) -> Parsed:
    return Parsed(None, False, f"Invalid response: {reason} Reply with one admissible action, e.g. {_EXAMPLE}.")


def _normalise(action: Any) -> Parsed:
    if not isinstance(action, str):
        return _invalid("the action must be text.")
    action = " ".join(action.split()).lower()
    if not action:
        return _invalid("the action is empty.")
    if len(action) > MAX_ACTION_CHARS:
        return _invalid(f"the action is longer than {MAX_ACTION_CHARS} characters.")
    match = _SHAPE_RE.fullmatch(action)
    if match is None or not match.group(2).strip():
        return _invalid(f"{action[:60]!r} is not search[...] or click[...].")
    return Parsed(action, True)


def _from_tool_call(call: Any) -> Parsed:
    if not isinstance(call, dict):
        return _invalid("a tool call must be a JSON object with name and arguments.")
    if isinstance(call.get("function"), dict):  # OpenAI wire format
        call = call["function"]
    name = call.get("name")
    if name not in _TOOL_ARGUMENT:
        return _invalid(f"unknown tool {name!r}; the tools are 'search' and 'click'.")
    arguments = call.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return _invalid("the tool call's arguments are not valid JSON.")
    key = _TOOL_ARGUMENT[name]
    if not isinstance(arguments, dict) or not isinstance(arguments.get(key), str):
        return _invalid(f'the {name} tool takes {{"{key}": "<text>"}}.')
    return _normalise(f"{name}[{arguments[key]}]")


def _tool_calls_in(text: str) -> list[Any] | None:
    """The tool calls in ``text``, or None if it holds none; raises ValueError on broken JSON."""
    blocks = _TOOL_CALL_RE.findall(text)
    if blocks:
        return [json.loads(block) for block in blocks]
    stripped = text.strip()
    if stripped.startswith("{") and '"tool_calls"' in stripped:
        payload = json.loads(stripped)
        calls = payload.get("tool_calls") if isinstance(payload, dict) else None
        if not isinstance(calls, list):
            raise ValueError("tool_calls must be a list")
        return calls
    return None


def parse_action(text: str) -> Parsed:
    """Turn one model reply into a WebShop action, or an invalid result with feedback."""
    if not isinstance(text, str):
        return _invalid("the reply must be text.")
    body = _THINK_RE.sub(" ", text)
    if re.search(r"</?think>", body, re.IGNORECASE):
        return _invalid("a <think> block is not closed.")
    actions = _ACTION_RE.findall(body)
    if len(actions) > 1:
        return _invalid(f"found {len(actions)} <action> blocks; give exactly one.")
    if actions:
        return _normalise(actions[0])
    try:
        calls = _tool_calls_in(body)
    except (ValueError, AttributeError):
        return _invalid("the tool call is not valid JSON.")
    if calls is not None:
        if len(calls) != 1:
            return _invalid(f"found {len(calls)} tool calls; make exactly one.")
        return _from_tool_call(calls[0])
    if re.search(r"</?action>", body, re.IGNORECASE):
        return _invalid("the <action> block is not closed.")
    return _invalid("no <action>...</action> block found.")
