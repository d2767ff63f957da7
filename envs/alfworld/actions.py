"""Model text -> ALFWorld command (Contract 2): a pure function that never raises.

Accepted forms (reasoning in ``<think>...</think>`` is allowed before either):

- ``<action>go to countertop 1</action>``, exactly one action block;
- a tool call to :data:`envs.alfworld.prompts.TOOL_NAME` as chat templates write it,
  ``<tool_call>{"name": "act", "arguments": {"action": "go to countertop 1"}}</tool_call>``, or as the JSON object
  ``{"tool_calls": [{"name": "act", "arguments": {...}}]}`` (arguments may be a JSON string).

The command is lowercased with whitespace collapsed; whether it is admissible is the env's call (``action_valid``).
"""

from __future__ import annotations

from envs.actions import SingleActionReply, ToolArgument
from envs.base import Parsed

TOOL_NAME = "act"
MAX_ACTION_CHARS = 200

_REPLY = SingleActionReply(
    example="<action>go to countertop 1</action>",
    noun="admissible command",
    tools={TOOL_NAME: ToolArgument("action", "<command>")},
    to_action=lambda _tool, value: value,
)


def parse_action(text: str) -> Parsed:
    """Turn one model reply into an ALFWorld command, or an invalid result with feedback."""
    return _REPLY.parse_command(text, max_chars=MAX_ACTION_CHARS)
