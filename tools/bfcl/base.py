"""Shared pieces of the BFCL-compatible backends: the base class and the long-context filler data.

A backend's public state is every instance attribute whose name does not start with ``_``, in assignment order
(BFCL's state checker compares exactly these), so each backend assigns its public attributes in BFCL's order and
keeps everything else private. Tool methods are the public methods named in the class's function docs.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from typing import Any, ClassVar

__all__ = ["ELLIPSIS", "Backend", "filler", "long_context_data"]

ELLIPSIS = "__Ellipsis__"


class Backend:
    """Base of the eight BFCL backends; subclasses define ``load`` and their tool methods."""

    doc_file: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}

    def load(self, config: dict[str, Any], long_context: bool = False) -> None:
        raise NotImplementedError

    def _get(self, config: dict[str, Any], key: str, default_key: str | None = None) -> Any:
        """``config[key]`` or a fresh copy of the class default."""
        if key in config:
            return config[key]
        return copy.deepcopy(self.defaults[default_key or key])

    def public_state(self) -> dict[str, Any]:
        return {name: value for name, value in vars(self).items() if not name.startswith("_")}


def _read_json(name: str) -> dict[str, Any]:
    text = resources.files("tools.bfcl").joinpath(f"data/{name}").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@cache
def long_context_data() -> dict[str, Any]:
    """The long-context filler.

    ``data/long_context.json`` is derived from the golden traces (see tools/bfcl/derive_long_context.py);
    ``data/long_context_upstream.json`` carries the constants no trace shows, copied from BFCL's
    ``long_context.py`` (see data/SOURCE.md): the file-name whitelist ``files_tail_used``, the automobile
    sector's filler, the transaction-history filler and the long weather report. Its keys win over the derived ones.
    """
    return {**_read_json("long_context.json"), **_read_json("long_context_upstream.json")}


def filler(key: str, default: Any = None) -> Any:
    """A fresh copy of one long-context constant (callers may mutate what they get), ``default`` if unknown."""
    value = copy.deepcopy(long_context_data().get(key, default))
    if isinstance(value, list):
        # BFCL's watch-list filler holds Python's Ellipsis object; JSON stores it as a marker string.
        return [Ellipsis if item == ELLIPSIS else item for item in value]
    return value
