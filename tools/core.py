"""Typed tools: ``@tool`` turns a Python function into an OpenAI function schema plus pydantic validation.

A tool call never raises into the caller: :meth:`Tool.invoke` and :meth:`ToolRegistry.call` return a
:class:`ToolResult` whose ``content`` is what the model sees, with ``error`` set (code + message) for an unknown
tool, a missing or mistyped argument, or a failure inside the tool.
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pydantic

__all__ = ["Tool", "ToolError", "ToolRegistry", "ToolResult", "tool"]


class ToolError(Exception):
    """A tool failure the model should see (raise it inside a tool for a clean error message).

    ``code`` is one of ``unknown_tool``, ``invalid_arguments``, ``tool_failed``, ``timeout``, ``refused``.
    """

    def __init__(self, message: str, *, code: str = "tool_failed") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The outcome of one call: ``content`` for the model, ``error`` = {"code", "message"} when it failed."""

    name: str
    content: str
    error: dict[str, str] | None = None
    value: Any = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "content": self.content, "error": self.error}

    @classmethod
    def failure(cls, name: str, code: str, message: str) -> ToolResult:
        return cls(name=name, content=f"Error: {message}", error={"code": code, "message": message})


_ARG_LINE = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Summary text and per-argument descriptions from a Google-style docstring (``Args:`` section)."""
    lines = inspect.cleandoc(doc or "").splitlines()
    summary: list[str] = []
    params: dict[str, str] = {}
    section = "summary"
    current: str | None = None
    for line in lines:
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            section, current = "args", None
            continue
        if stripped.endswith(":") and stripped[:-1] in ("Returns", "Raises", "Yields", "Examples", "Example", "Note"):
            section = "other"
            continue
        if section == "summary":
            summary.append(stripped)
        elif section == "args" and stripped:
            match = _ARG_LINE.match(line)
            indent = len(line) - len(line.lstrip())
            if match and (current is None or indent <= 4):
                current = match.group(1).lstrip("*")
                params[current] = match.group(3).strip()
            elif current is not None:
                params[current] = f"{params[current]} {stripped}".strip()
    text = " ".join(part for part in summary if part).strip()
    return text, params


def _inline_refs(schema: Any, defs: dict[str, Any]) -> Any:
    """Replace ``$ref`` with the referenced definition and drop pydantic's ``title`` keys."""
    if isinstance(schema, list):
        return [_inline_refs(item, defs) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return _inline_refs(merged, defs)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("title", "$defs"):
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: _inline_refs(sub, defs) for name, sub in value.items()}
        else:
            out[key] = _inline_refs(value, defs)
    return out


class Tool:
    """A typed function the model can call; built by :func:`tool`."""

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        summary, arg_docs = _parse_docstring(fn.__doc__ or "")
        self.description = description if description is not None else summary
        hints = typing.get_type_hints(fn, include_extras=True)
        fields: dict[str, Any] = {}
        for param in inspect.signature(fn).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise TypeError(f"tool {self.name!r}: *args/**kwargs cannot be described by a schema")
            annotation = hints.get(param.name, Any)
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[param.name] = (annotation, pydantic.Field(default, description=arg_docs.get(param.name)))
        config = pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=False)
        self.args_model: type[pydantic.BaseModel] = pydantic.create_model(  # type: ignore[call-overload]
            f"{self.name}_args", __config__=config, **fields
        )
        raw = self.args_model.model_json_schema()
        params = _inline_refs(raw, raw.get("$defs", {}))
        params.pop("additionalProperties", None)
        params.setdefault("properties", {})
        params.setdefault("required", [])
        self.parameters: dict[str, Any] = params

    @property
    def schema(self) -> dict[str, Any]:
        """OpenAI function-calling schema: ``{"type": "function", "function": {name, description, parameters}}``."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def invoke(self, arguments: dict[str, Any] | str | None = None) -> ToolResult:
        """Validate ``arguments`` (a dict or a JSON object string) and run the tool; never raises."""
        if arguments is None:
            arguments = {}
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as exc:
                return ToolResult.failure(self.name, "invalid_arguments", f"arguments are not valid JSON ({exc.msg})")
        if not isinstance(arguments, dict):
            return ToolResult.failure(
                self.name, "invalid_arguments", f"arguments must be a JSON object, got {type(arguments).__name__}"
            )
        try:
            validated = self.args_model.model_validate(arguments)
        except pydantic.ValidationError as exc:
            return ToolResult.failure(self.name, "invalid_arguments", _describe_validation(self.name, exc))
        kwargs = {key: getattr(validated, key) for key in type(validated).model_fields}
        try:
            value = self.fn(**kwargs)
        except ToolError as exc:
            return ToolResult.failure(self.name, exc.code, exc.message)
        except Exception as exc:
            return ToolResult.failure(self.name, "tool_failed", f"{type(exc).__name__}: {exc}")
        return ToolResult(name=self.name, content=_to_text(value), value=value)


def _describe_validation(name: str, exc: pydantic.ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "arguments"
        if error["type"] == "missing":
            problems.append(f"missing required argument '{where}'")
        elif error["type"] == "extra_forbidden":
            problems.append(f"unexpected argument '{where}'")
        else:
            problems.append(f"argument '{where}': {error['msg']} (got {error.get('input')!r})")
    return f"invalid arguments for {name}: " + "; ".join(problems)


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump_json()
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def tool(fn: Callable[..., Any] | None = None, *, name: str | None = None, description: str | None = None) -> Any:
    """Decorator: ``@tool`` or ``@tool(name=..., description=...)`` makes a :class:`Tool` from a typed function."""
    if fn is not None:
        return Tool(fn, name=name, description=description)
    return lambda inner: Tool(inner, name=name, description=description)


@dataclass
class ToolRegistry:
    """Named tools; ``call(name, arguments)`` never raises (unknown tools give an ``unknown_tool`` error)."""

    tools: dict[str, Tool] = field(default_factory=dict)

    def register(self, item: Tool | Callable[..., Any]) -> Tool:
        tool_obj = item if isinstance(item, Tool) else Tool(item)
        if tool_obj.name in self.tools:
            raise ValueError(f"a tool named {tool_obj.name!r} is already registered")
        self.tools[tool_obj.name] = tool_obj
        return tool_obj

    def __contains__(self, name: object) -> bool:
        return name in self.tools

    def __len__(self) -> int:
        return len(self.tools)

    def get(self, name: str) -> Tool | None:
        return self.tools.get(name)

    def names(self) -> list[str]:
        return list(self.tools)

    def schemas(self) -> list[dict[str, Any]]:
        return [item.schema for item in self.tools.values()]

    def call(self, name: str, arguments: dict[str, Any] | str | None = None) -> ToolResult:
        item = self.tools.get(name)
        if item is None:
            known = ", ".join(self.tools) or "none"
            return ToolResult.failure(name, "unknown_tool", f"unknown tool '{name}'; available tools: {known}")
        return item.invoke(arguments)
