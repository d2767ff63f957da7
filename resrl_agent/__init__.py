"""resrl-agent: train tool-using LLM agents with RL on multi-turn environments (GiGPO grouping + ResRL)."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
