"""The project's cache dir, one rule for every part that keeps files there (models, ALFWorld games, translations)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir(*parts: str) -> Path:
    """``$RESRL_CACHE`` (``~`` expanded; unset or empty: ``~/.cache/resrl-agent``), joined with ``parts``."""
    root = os.environ.get("RESRL_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "resrl-agent"
    return base.joinpath(*parts)
