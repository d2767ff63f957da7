"""Errors of the core package. Each layer owns its errors (tools.ToolError, envs.EnvError, server codes)."""

from __future__ import annotations


class ResrlError(Exception):
    """Base class of every error raised by resrl_agent itself."""


class ConfigError(ResrlError, ValueError):
    """A configuration value is unknown, mistyped or inconsistent; the message names the key and the fix."""


class RecordError(ResrlError, ValueError):
    """A Turn/Episode record breaks an invariant, or a JSONL line cannot be read back."""


class RolloutError(ResrlError):
    """The rollout loop cannot continue (for example, a chat template that is not prefix-stable)."""


class ModelBuildError(ResrlError):
    """A model or tokenizer cannot be built or converted."""


class TrainerError(ResrlError):
    """The trainer cannot continue."""
