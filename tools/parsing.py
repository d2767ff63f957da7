"""Tool calls from model output, for the formats models actually emit; never raises.

Formats (``fmt="auto"`` tries them in this order):
- ``openai``: a message dict with ``tool_calls`` (``{"function": {"name", "arguments": "<json>"}}``).
- ``hermes``: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks (Hermes, Qwen 2.5/3).
- ``llama3``: a bare JSON object ``{"name": ..., "parameters": {...}}`` (optionally after ``<|python_tag|>``),
  a JSON list of them, or several separated by ``;``.
- ``python``: BFCL's Python calls ``[cd(folder='x'), ls()]`` parsed with ``ast`` (never ``eval``).
Slightly malformed JSON is repaired (code fences, single quotes, Python literals, trailing commas, missing
closing brackets). Text with no call is a plain answer; text that tries a call and fails is ``valid=False``
with an ``error`` saying what went wrong.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["ParsedCalls", "ToolCall", "parse_tool_calls", "repair_json"]

Format = Literal["auto", "openai", "hermes", "llama3", "python"]
_TOOL_CALL_RE = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
_FENCE_RE = re.compile(r"^```[a-zA-Z0-9_-]*\s*|\s*```$")
_PYTHON_TAG = "<|python_tag|>"


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments}


@dataclass(frozen=True, slots=True)
class ParsedCalls:
    """``calls`` found, the remaining ``content`` text, and whether the text parsed (``valid``)."""

    calls: list[ToolCall] = field(default_factory=list)
    content: str = ""
    valid: bool = True
    error: str = ""
    fmt: str = ""


def repair_json(text: str) -> Any:
    """Parse JSON leniently; raises ValueError if even the repaired text is not a JSON/Python literal."""
    text = _FENCE_RE.sub("", text.strip()).strip()
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        pass
    candidate = re.sub(r",\s*([}\]])", r"\1", text)
    candidate = _close_brackets(candidate)
    try:
        return json.loads(candidate)
    except (json.JSONDecodeError, RecursionError):
        pass
    try:
        # Python-style literals (single quotes, True/None) parse safely with literal_eval.
        return ast.literal_eval(candidate)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    pythonish = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", re.sub(r"\bnull\b", "None", candidate)))
    try:
        return ast.literal_eval(pythonish)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise ValueError(f"not valid JSON: {text[:80]!r}") from exc


def _close_brackets(text: str) -> str:
    """Append the closing brackets/quote a truncated JSON text is missing."""
    stack: list[str] = []
    quote: str | None = None
    escaped = False
    for char in text:
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char in "{[":
            stack.append("}" if char == "{" else "]")
        elif char in "}]" and stack and stack[-1] == char:
            stack.pop()
    return text + (quote or "") + "".join(reversed(stack))


def _call_from_obj(obj: Any) -> ToolCall:
    """One call from ``{"name", "arguments"|"parameters"}`` or OpenAI's ``{"function": {...}}``."""
    if not isinstance(obj, dict):
        raise ValueError(f"a tool call must be a JSON object, got {type(obj).__name__}")
    call_id = obj.get("id") if isinstance(obj.get("id"), str) else None
    if isinstance(obj.get("function"), dict):
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a tool call needs a non-empty string 'name'")
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        args = repair_json(args) if args.strip() else {}
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ValueError(f"arguments of '{name}' must be a JSON object, got {type(args).__name__}")
    return ToolCall(name=name.strip(), arguments=args, id=call_id)


def _parse_openai(message: dict[str, Any]) -> ParsedCalls:
    content = message.get("content") or ""
    content = content if isinstance(content, str) else ""
    raw_calls = message.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        return ParsedCalls(content=content, valid=False, error="'tool_calls' must be a list", fmt="openai")
    try:
        calls = [_call_from_obj(item) for item in raw_calls]
    except ValueError as exc:
        return ParsedCalls(content=content, valid=False, error=str(exc), fmt="openai")
    return ParsedCalls(calls=calls, content=content, fmt="openai")


def _parse_hermes(text: str) -> ParsedCalls | None:
    bodies = _TOOL_CALL_RE.findall(text)
    if not bodies:
        return None
    content = _TOOL_CALL_RE.sub("", text).strip()
    calls: list[ToolCall] = []
    for body in bodies:
        try:
            parsed = repair_json(body)
            items = parsed if isinstance(parsed, list) else [parsed]
            calls.extend(_call_from_obj(item) for item in items)
        except ValueError as exc:
            return ParsedCalls(content=content, valid=False, error=f"bad <tool_call> block: {exc}", fmt="hermes")
    return ParsedCalls(calls=calls, content=content, fmt="hermes")


def _parse_llama3(text: str) -> ParsedCalls | None:
    body = text.strip()
    if body.startswith(_PYTHON_TAG):
        body = body[len(_PYTHON_TAG) :].strip()
    body = _FENCE_RE.sub("", body).strip()
    if not body.startswith(("{", "[")):
        return None
    try:
        parsed = repair_json(body)
    except ValueError:
        parts = [part for part in body.split(";") if part.strip()]
        if len(parts) < 2:
            return (
                None
                if body.startswith("[")
                else ParsedCalls(valid=False, error="malformed JSON tool call", fmt="llama3")
            )
        try:
            parsed = [repair_json(part) for part in parts]
        except ValueError as exc:
            return ParsedCalls(valid=False, error=str(exc), fmt="llama3")
    items = parsed if isinstance(parsed, list) else [parsed]
    if not items or not all(isinstance(item, dict) and ("name" in item or "function" in item) for item in items):
        return None
    try:
        return ParsedCalls(calls=[_call_from_obj(item) for item in items], fmt="llama3")
    except ValueError as exc:
        return ParsedCalls(valid=False, error=str(exc), fmt="llama3")


def _parse_python(text: str) -> ParsedCalls | None:
    body = _FENCE_RE.sub("", text.strip()).strip()
    if "(" not in body or len(body) > 20_000:
        return None
    try:
        tree = ast.parse(body, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    nodes = tree.elts if isinstance(tree, ast.List | ast.Tuple) else [tree]
    if not nodes or not all(isinstance(node, ast.Call) for node in nodes):
        return None
    calls = []
    for node in nodes:
        assert isinstance(node, ast.Call)
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if name is None:
            return ParsedCalls(valid=False, error="a call must name a function", fmt="python")
        if node.args:
            return ParsedCalls(valid=False, error=f"pass every argument of {name}() by name", fmt="python")
        try:
            arguments = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg is not None}
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            return ParsedCalls(valid=False, error=f"arguments of {name}() must be literal values", fmt="python")
        if len(arguments) != len(node.keywords):
            return ParsedCalls(valid=False, error=f"{name}() cannot take **kwargs", fmt="python")
        calls.append(ToolCall(name=name, arguments=arguments))
    return ParsedCalls(calls=calls, fmt="python")


def parse_tool_calls(output: str | dict[str, Any], fmt: Format = "auto") -> ParsedCalls:
    """Tool calls from model text (or an OpenAI message dict); never raises."""
    try:
        if isinstance(output, dict):
            return _parse_openai(output)
        if not isinstance(output, str):
            return ParsedCalls(valid=False, error=f"expected text, got {type(output).__name__}")
        parsers = {"hermes": _parse_hermes, "llama3": _parse_llama3, "python": _parse_python}
        order = list(parsers) if fmt == "auto" else [fmt]
        if fmt == "openai":
            try:
                message = json.loads(output)
            except json.JSONDecodeError:
                return ParsedCalls(valid=False, error="not a JSON message", fmt="openai")
            return _parse_openai(message) if isinstance(message, dict) else ParsedCalls(valid=False, fmt="openai")
        for name in order:
            result = parsers[name](output)
            if result is not None:
                return result
        if "<tool_call>" in output or "</tool_call>" in output:
            return ParsedCalls(content=output, valid=False, error="unbalanced <tool_call> tags")
        return ParsedCalls(content=output.strip(), fmt="text")
    except Exception as exc:
        return ParsedCalls(valid=False, error=f"could not parse tool calls: {type(exc).__name__}")
