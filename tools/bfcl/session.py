"""One BFCL task's backends: build them from the task's initial config, run BFCL call strings, snapshot state."""

from __future__ import annotations

import ast
import copy
import inspect
import json
from functools import cache
from importlib import resources
from typing import Any

from tools.bfcl.base import Backend
from tools.bfcl.encoding import encode_value, result_to_string
from tools.bfcl.filesystem import GorillaFileSystem
from tools.bfcl.math_api import MathAPI
from tools.bfcl.social import MessageAPI, TicketAPI, TwitterAPI
from tools.bfcl.trading import TradingBot
from tools.bfcl.travel import TravelAPI
from tools.bfcl.vehicle import VehicleControlAPI

__all__ = [
    "BACKEND_CLASSES",
    "BFCLSession",
    "CallSyntaxError",
    "func_docs",
    "openai_tool",
    "openai_tools",
    "parse_python_call",
]

BACKEND_CLASSES: dict[str, type[Backend]] = {
    cls.__name__: cls
    for cls in (GorillaFileSystem, MathAPI, MessageAPI, TwitterAPI, TicketAPI, TradingBot, TravelAPI, VehicleControlAPI)
}
# BFCL refuses to run calls with these names whatever the class.
BLOCKED_NAMES = frozenset({"kill", "exit", "quit", "remove", "unlink", "popen", "Popen", "run"})
ERROR_PREFIX = "Error during execution: "


class CallSyntaxError(ValueError):
    """A call string that is not ``name(literal args...)``."""


@cache
def _docs_for(doc_file: str) -> tuple[dict[str, Any], ...]:
    path = resources.files("tools.bfcl").joinpath(f"data/func_docs/{doc_file}.json")
    lines = path.read_text(encoding="utf-8").splitlines()
    return tuple(json.loads(line) for line in lines if line.strip())


def func_docs(class_name: str, *, fresh: bool = True) -> list[dict[str, Any]]:
    """BFCL's function docs (name, description, parameters, response) of one backend class.

    ``fresh=False`` returns the shared cached dicts (faster; the caller must not mutate them).
    """
    try:
        cls = BACKEND_CLASSES[class_name]
    except KeyError:
        raise ValueError(f"unknown BFCL class {class_name!r}; known: {sorted(BACKEND_CLASSES)}") from None
    docs = list(_docs_for(cls.doc_file))
    return copy.deepcopy(docs) if fresh else docs


_TYPE_NAMES = {"dict": "object", "float": "number", "tuple": "array", "any": "string"}


def _openai_types(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_openai_types(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _openai_types(value) for key, value in schema.items()}
    if isinstance(out.get("type"), str):
        out["type"] = _TYPE_NAMES.get(out["type"], out["type"])
    return out


@cache
def openai_tools(class_name: str) -> tuple[dict[str, Any], ...]:
    """The OpenAI tool schemas of one class, cached and shared (do not mutate)."""
    return tuple(openai_tool(doc) for doc in func_docs(class_name, fresh=False))


def openai_tool(doc: dict[str, Any]) -> dict[str, Any]:
    """A BFCL function doc as an OpenAI tool schema (BFCL's ``dict``/``float``/``tuple`` become JSON types)."""
    return {
        "type": "function",
        "function": {
            "name": doc["name"],
            "description": doc["description"],
            "parameters": _openai_types(doc["parameters"]),
        },
    }


def parse_python_call(text: str) -> tuple[str, list[Any], dict[str, Any]]:
    """Parse ``name(arg, key=value)`` with literal arguments using ``ast`` (never ``eval``)."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise CallSyntaxError(f"invalid syntax in call {text!r}: {exc.msg}") from None
    node = tree.body
    if not isinstance(node, ast.Call):
        raise CallSyntaxError(f"{text!r} is not a function call")
    if isinstance(node.func, ast.Name):
        name = node.func.id
    elif isinstance(node.func, ast.Attribute):
        name = node.func.attr
    else:
        raise CallSyntaxError(f"{text!r} does not call a named function")
    try:
        args = [ast.literal_eval(arg) for arg in node.args]
        kwargs: dict[str, Any] = {}
        for keyword in node.keywords:
            if keyword.arg is None:
                raise CallSyntaxError(f"{text!r} uses **kwargs; pass each argument by name")
            kwargs[keyword.arg] = ast.literal_eval(keyword.value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise CallSyntaxError(f"arguments of {name}() must be literal values (strings, numbers, lists...)") from None
    return name, args, kwargs


class BFCLSession:
    """The backends of one task, persistent across its turns, as BFCL's executor keeps them.

    Args:
        initial_config: the task's ``initial_config`` (class name -> config); it is deep-copied, never mutated.
        involved_classes: the task's backend class names, in order (this order is the state's order).
        long_context: load the long-context filler (BFCL's ``multi_turn_long_context`` category).
    """

    def __init__(
        self, initial_config: dict[str, Any], involved_classes: list[str], *, long_context: bool = False
    ) -> None:
        self.involved_classes = list(involved_classes)
        self.long_context = long_context
        self.backends: dict[str, Backend] = {}
        self._methods: dict[str, Any] = {}
        for class_name in self.involved_classes:
            if class_name not in BACKEND_CLASSES:
                raise ValueError(f"unknown BFCL class {class_name!r}; known: {sorted(BACKEND_CLASSES)}")
            backend = BACKEND_CLASSES[class_name]()
            backend.load(copy.deepcopy(initial_config.get(class_name, {})), long_context=long_context)
            self.backends[class_name] = backend
            for doc in _docs_for(backend.doc_file):
                self._methods[doc["name"]] = getattr(backend, doc["name"])

    @property
    def function_names(self) -> list[str]:
        return list(self._methods)

    def tools(self) -> list[dict[str, Any]]:
        """The function docs of every involved class, in class order (BFCL's tool list)."""
        return [doc for class_name in self.involved_classes for doc in func_docs(class_name)]

    def execute(self, call: str) -> str:
        """Run one BFCL call string; return its result string exactly as BFCL's checker sees it."""
        try:
            name, args, kwargs = parse_python_call(call)
        except CallSyntaxError as exc:
            return ERROR_PREFIX + str(exc)
        return self.call(name, args, kwargs)

    def bind_call(self, call: str) -> tuple[str, dict[str, Any]]:
        """``name`` and keyword arguments of a call string (positional arguments are named by the signature)."""
        name, args, kwargs = parse_python_call(call)
        method = self._methods.get(name)
        if args and method is not None:
            bound = inspect.signature(method).bind_partial(*args, **kwargs)
            return name, dict(bound.arguments)
        return name, kwargs

    def call(self, name: str, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None) -> str:
        """Run one call given by name and already-parsed arguments; errors become BFCL's error string."""
        if name in BLOCKED_NAMES:
            return f"{ERROR_PREFIX}Function call {name} is not allowed."
        method = self._methods.get(name)
        if method is None:
            return f"{ERROR_PREFIX}name '{name}' is not defined"
        try:
            result = method(*(args or []), **(kwargs or {}))
        except Exception as exc:
            return ERROR_PREFIX + str(exc)
        return result_to_string(result)

    def state(self) -> dict[str, Any]:
        """Every involved backend's public state, encoded as in the golden traces."""
        return {
            class_name: {key: encode_value(value) for key, value in backend.public_state().items()}
            for class_name, backend in self.backends.items()
        }

    def private_state(self) -> dict[str, str]:
        """What the public state leaves out but the next call depends on: the file system's current directory."""
        out = {}
        for class_name, backend in self.backends.items():
            if class_name == "GorillaFileSystem":
                out[class_name] = backend.pwd()["current_working_directory"]  # type: ignore[attr-defined]
        return out

    def raw_state(self) -> dict[str, dict[str, Any]]:
        """Every involved backend's public attributes as live Python values (compare with ``==``)."""
        return {class_name: backend.public_state() for class_name, backend in self.backends.items()}
