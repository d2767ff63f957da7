"""Result strings and state encoding exactly as BFCL's checker sees them.

``result_to_string`` turns a backend's return value into the string the checker compares (a ``str`` as is, a
``dict`` through ``json.dumps`` with ``str`` as the fallback, anything else through ``str``).
``encode_value`` writes a backend's public state in the golden-trace encoding (tests/data/bfcl/golden/README.md):
JSON for plain values, ``__dict_items__`` for dicts with a non-``str`` key, ``__set__`` for sets, ``__tuple__``,
``__float__`` for non-finite floats, and ``__class__`` nodes for the file-system tree. ``decode_value`` inverts it.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["decode_value", "encode_value", "result_to_string"]


def result_to_string(value: Any) -> str:
    """The checker's view of one call's return value."""
    if type(value) is str:
        return value
    if type(value) is dict:
        try:
            return json.dumps(value)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def encode_value(value: Any) -> Any:
    """Encode one public attribute value (see the module docstring)."""
    from tools.bfcl.filesystem import Directory, File

    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {"__float__": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, list):
        return [encode_value(item) for item in value]
    if isinstance(value, tuple):
        return {"__tuple__": [encode_value(item) for item in value]}
    if isinstance(value, set | frozenset):
        return {"__set__": [encode_value(item) for item in sorted(value)]}
    if isinstance(value, dict):
        if all(type(key) is str for key in value):
            return {key: encode_value(item) for key, item in value.items()}
        return {"__dict_items__": [[encode_value(key), encode_value(item)] for key, item in value.items()]}
    if isinstance(value, Directory):
        contents = {key: encode_value(item) for key, item in value.contents.items()}
        return {"__class__": "Directory", "name": value.name, "contents": contents}
    if isinstance(value, File):
        return {"__class__": "File", "name": value.name, "content": value.content}
    raise TypeError(f"cannot encode a {type(value).__name__} in BFCL state: {value!r}")


def decode_value(value: Any) -> Any:
    """Inverse of :func:`encode_value` (file-system nodes decode to plain dicts)."""
    if isinstance(value, list):
        return [decode_value(item) for item in value]
    if not isinstance(value, dict):
        return value
    if "__dict_items__" in value and len(value) == 1:
        return {decode_value(key): decode_value(item) for key, item in value["__dict_items__"]}
    if "__set__" in value and len(value) == 1:
        return {decode_value(item) for item in value["__set__"]}
    if "__tuple__" in value and len(value) == 1:
        return tuple(decode_value(item) for item in value["__tuple__"])
    if "__float__" in value and len(value) == 1:
        return float(value["__float__"])
    return {key: decode_value(item) for key, item in value.items()}
