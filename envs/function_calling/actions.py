"""Model text -> function-calling env action (Contract 1 and 2).

Tool calls in any format ``tools.parse_tool_calls`` knows (Hermes/Qwen ``<tool_call>``, Llama-3 JSON, BFCL
Python calls, an OpenAI message as JSON) become ``{"tool_calls": [{"name", "arguments"}]}``; text without calls
becomes ``{"content": text}``; a failed call attempt is unparsable (format_valid=False, with feedback).
"""

from __future__ import annotations

import json

from envs.base import Parsed
from tools import parse_tool_calls


def parse_action(text: str) -> Parsed:
    parsed = parse_tool_calls(text)
    if not parsed.valid:
        return Parsed(
            None,
            False,
            f"Your tool call could not be parsed ({parsed.error}). Use "
            '<tool_call>{"name": "<function>", "arguments": {...}}</tool_call>.',
        )
    if parsed.calls:
        action = {"tool_calls": [call.to_dict() for call in parsed.calls]}
        return Parsed(json.dumps(action, ensure_ascii=False), True)
    content = parsed.content.strip()
    if not content:
        return Parsed(None, False, "Your reply was empty. Call a function or answer the user.")
    return Parsed(json.dumps({"content": content}, ensure_ascii=False), True)
