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

import re
from typing import Any

from envs.actions import SingleActionReply, ToolArgument
from envs.base import Parsed

__all__ = ["CLICK_TOOL", "MAX_ACTION_CHARS", "SEARCH_TOOL", "parse_action"]

SEARCH_TOOL = "search"
CLICK_TOOL = "click"
MAX_ACTION_CHARS = 300

_SHAPE_RE = re.compile(r"(search|click)\[(.+)\]")


def _tool_action(tool: str, value: Any) -> Any:
    return f"{tool}[{value}]" if isinstance(value, str) else value


_REPLY = SingleActionReply(
    example="<action>search[red running shoes]</action> or <action>click[buy now]</action>",
    noun="admissible action",
    tools={SEARCH_TOOL: ToolArgument("query"), CLICK_TOOL: ToolArgument("target")},
    to_action=_tool_action,
)


def _normalise(action: Any) -> Parsed:
    if not isinstance(action, str):
        return _REPLY.invalid("the action must be text.")
    action = " ".join(action.split()).lower()
    if not action:
        return _REPLY.invalid("the action is empty.")
    if len(action) > MAX_ACTION_CHARS:
        return _REPLY.invalid(f"the action is longer than {MAX_ACTION_CHARS} characters.")
    match = _SHAPE_RE.fullmatch(action)
    if match is None or not match.group(2).strip():
        return _REPLY.invalid(f"{action[:60]!r} is not search[...] or click[...].")
    return Parsed(action, True)


def parse_action(text: str) -> Parsed:
    """Turn one model reply into a WebShop action, or an invalid result with feedback."""
    raw = _REPLY.extract(text)
    return raw if isinstance(raw, Parsed) else _normalise(raw)
