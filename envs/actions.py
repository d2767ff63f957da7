"""Shared agent-text envelope for single-action envs: think tags, one ``<action>`` block or one tool call.

Envs whose step takes one text command (ALFWorld, WebShop) accept the same reply shapes; this module finds the raw
command in a reply and each env's ``actions.py`` normalises and checks it. Pure functions that never raise on model
text (Contract 2): every problem becomes ``Parsed(None, False, feedback)``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from envs.base import Parsed

__all__ = ["SingleActionReply", "ToolArgument", "normalise_command"]

_THINK_RE = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_ACTION_RE = re.compile(r"<action>(.*?)</action>", re.DOTALL | re.IGNORECASE)
_TOOL_CALL_RE = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class ToolArgument:
    """The one argument a tool takes (``key``) and how its help text shows the value (``placeholder``)."""

    key: str
    placeholder: str = "<text>"


@dataclass(frozen=True)
class SingleActionReply:
    """Finds one command in a model reply.

    Accepted: ``<think>...</think>`` anywhere, then exactly one ``<action>...</action>`` block, or exactly one tool
    call (``<tool_call>{json}</tool_call>`` as chat templates write it, or ``{"tool_calls": [...]}``; OpenAI's
    ``{"function": {...}}`` wrapper and JSON-string arguments too). ``to_action(tool, value)`` turns a tool call into
    the command text (e.g. ``click`` + ``buy now`` -> ``click[buy now]``).
    """

    example: str
    noun: str
    tools: Mapping[str, ToolArgument]
    to_action: Callable[[str, Any], Any]

    def parse_command(self, text: Any, *, max_chars: int) -> Parsed:
        """One reply -> a command, lowercased with runs of whitespace collapsed (:func:`normalise_command`); empty
        or longer than ``max_chars`` is invalid. Whether the env accepts the command is the env's call."""
        raw = self.extract(text)
        if isinstance(raw, Parsed):
            return raw
        if not isinstance(raw, str):
            return self.invalid("the action must be text.")
        command = normalise_command(raw)
        if not command:
            return self.invalid("the action is empty.")
        if len(command) > max_chars:
            return self.invalid(f"the action is longer than {max_chars} characters.")
        return Parsed(command, True)

    def invalid(self, reason: str) -> Parsed:
        return Parsed(None, False, f"Invalid response: {reason} Reply with one {self.noun}, e.g. {self.example}.")

    def extract(self, text: Any) -> Any | Parsed:
        """The raw command (usually a str, but a tool argument may be any JSON value), or an invalid Parsed."""
        if not isinstance(text, str):
            return self.invalid("the reply must be text.")
        body = _THINK_RE.sub(" ", text)
        if re.search(r"</?think>", body, re.IGNORECASE):
            return self.invalid("a <think> block is not closed.")
        actions = _ACTION_RE.findall(body)
        if len(actions) > 1:
            return self.invalid(f"found {len(actions)} <action> blocks; give exactly one.")
        if actions:
            return actions[0]
        try:
            calls = _tool_calls_in(body)
        except (ValueError, AttributeError, RecursionError):  # RecursionError: absurdly deep nesting
            return self.invalid("the tool call is not valid JSON.")
        if calls is not None:
            if len(calls) != 1:
                return self.invalid(f"found {len(calls)} tool calls; make exactly one.")
            return self._from_tool_call(calls[0])
        if re.search(r"</?action>", body, re.IGNORECASE):
            return self.invalid("the <action> block is not closed.")
        return self.invalid("no <action>...</action> block found.")

    def _from_tool_call(self, call: Any) -> Any | Parsed:
        if not isinstance(call, dict):
            return self.invalid("a tool call must be a JSON object with name and arguments.")
        if isinstance(call.get("function"), dict):  # OpenAI wire format
            call = call["function"]
        name = call.get("name")
        if name not in self.tools:
            names = sorted(self.tools)
            known = (
                f"the only tool is {names[0]!r}"
                if len(names) == 1
                else "the tools are " + " and ".join(repr(n) for n in names)
            )
            return self.invalid(f"unknown tool {name!r}; {known}.")
        arguments = call.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except (ValueError, RecursionError):
                return self.invalid("the tool call's arguments are not valid JSON.")
        argument = self.tools[name]
        if not isinstance(arguments, dict) or argument.key not in arguments:
            return self.invalid(f'the {name} tool takes {{"{argument.key}": "{argument.placeholder}"}}.')
        return self.to_action(name, arguments[argument.key])


def normalise_command(command: str) -> str:
    """Lowercase with runs of whitespace collapsed to one space: how parsers and envs compare command texts."""
    return " ".join(command.split()).lower()


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
