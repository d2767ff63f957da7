"""Model text -> BabyAI action (Contract 2): a pure function that never raises.

Accepted forms (reasoning in ``<think>...</think>`` is allowed before either):

- ``<action>go forward</action>``, exactly one action block;
- a tool call to :data:`TOOL_NAME` as chat templates write it,
  ``<tool_call>{"name": "act", "arguments": {"action": "turn left"}}</tool_call>``, or as the JSON object
  ``{"tool_calls": [{"name": "act", "arguments": {...}}]}`` (arguments may be a JSON string).

The action is lowercased with whitespace collapsed. As in ALFWorld, the format and the action are two checks: a
well-formed reply that names none of :data:`ACTIONS` is format-valid here, and the env reports it as
``action_valid=False`` (state unchanged, reward 0). This module imports no minigrid.
"""

from __future__ import annotations

from typing import Final

from envs.actions import SingleActionReply, ToolArgument
from envs.base import Parsed

__all__ = ["ACTIONS", "MAX_ACTION_CHARS", "TOOL_NAME", "parse_action"]

#: The six action words, in minigrid's order: ``ACTIONS[i]`` is ``minigrid.core.actions.Actions(i)`` (left, right,
#: forward, pickup, drop, toggle). minigrid's ``done`` (6) is not offered.
ACTIONS: Final = ("turn left", "turn right", "go forward", "pick up", "drop", "toggle")
TOOL_NAME: Final = "act"
MAX_ACTION_CHARS: Final = 200

_REPLY = SingleActionReply(
    example="<action>go forward</action>",
    noun="action (turn left, turn right, go forward, pick up, drop or toggle)",
    tools={TOOL_NAME: ToolArgument("action", "<action>")},
    to_action=lambda _tool, value: value,
)


def parse_action(text: str) -> Parsed:
    """Turn one model reply into a BabyAI action text, or an invalid result with feedback."""
    return _REPLY.parse_command(text, max_chars=MAX_ACTION_CHARS)
