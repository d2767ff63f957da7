"""Model text -> ALFWorld command (Contract 2): a pure function that never raises.

Accepted forms (reasoning in ``<think>...</think>`` is allowed before either):

- ``<action>go to countertop 1</action>``, exactly one action block;
- a tool call to :data:`envs.alfworld.prompts.TOOL_NAME` as chat templates write it,
  ``<tool_call>{"name": "act", "arguments": {"action": "go to countertop 1"}}</tool_call>``, or as the JSON object
  ``{"tool_calls": [{"name": "act", "arguments": {...}}]}`` (arguments may be a JSON string).

The command is lowercased with whitespace collapsed; whether it is admissible is the env's call (``action_valid``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from envs.base import Parsed

TOOL_NAME = "act"
MAX_ACTION_CHARS = 200

_THINK_RE = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_ACTION_RE = re.compile(r"<action>(.*?)</action>", re.DOTALL | re.IGNORECASE)
_TOOL_CALL_RE = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL | re.IGNORECASE)
_EXAMPLE = "<action>go to countertop 1</action>"


def _invalid(reason: str) -> Parsed:
    return Parsed(None, False, f"Invalid response: {reason} Reply with one admissible command, e.g. {_EXAMPLE}.")


def _normalise(command: Any) -> Parsed:
    if not isinstance(command, str):
        return _invalid("the action must be text.")
    command = " ".join(command.split()).lower()
    if not command:
        return _invalid("the action is empty.")
    if len(command) > MAX_ACTION_CHARS:
        return _invalid(f"the action is longer than {MAX_ACTION_CHARS} characters.")
    return Parsed(command, True)


def _from_tool_call(call: Any) -> Parsed:
    if not isinstance(call, dict):
        return _invalid("a tool call must be a JSON object with name and arguments.")
    if "function" in call and isinstance(call["function"], dict):  # OpenAI wire format
        call = call["function"]
    if call.get("name") != TOOL_NAME:
        return _invalid(f"unknown tool {call.get('name')!r}; the only tool is {TOOL_NAME!r}.")
    arguments = call.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return _invalid("the tool call's arguments are not valid JSON.")
    if not isinstance(arguments, dict) or "action" not in arguments:
        return _invalid(f'the {TOOL_NAME} tool takes {{"action": "<command>"}}.')
    return _normalise(arguments["action"])


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
    """Turn one model reply into an ALFWorld command, or an invalid result with feedback."""
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
