"""The environment contract every resrl-agent env keeps (docs/design.md "Contracts" and "Environments").

An env is a ``gymnasium.Env`` whose observations and actions are text. ``reset(seed, options)`` takes
``options={"task_id": ...}`` (or ``"split"`` / ``"task_type"``) so that the G rollouts of a group start from
the same task; ``step(action)`` takes the env-level action text. Turning model text into that action is the
agent layer's job: each env ships a pure ``parse_action(text) -> Parsed`` in ``envs/<name>/actions.py``.

Every ``info`` dict carries the keys in :data:`REQUIRED_INFO_KEYS` (``anchor``, ``action_valid``, ``won``,
``task_id``) and, where the env has them, ``available_actions`` and ``expert_action``.
Envs never add penalties (Contract 4): an invalid action changes nothing and gives reward 0.

This module imports gymnasium and the standard library only: env-server images stay small.
"""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import gymnasium as gym
from gymnasium import spaces

__all__ = [
    "INFO_ACTION_VALID",
    "INFO_ANCHOR",
    "INFO_AVAILABLE_ACTIONS",
    "INFO_EXPERT_ACTION",
    "INFO_TASK_ID",
    "INFO_WON",
    "REQUIRED_INFO_KEYS",
    "EnvError",
    "Message",
    "Parsed",
    "PromptBuilder",
    "TextEnv",
    "TextSpace",
    "anchor_key",
    "check_info",
    "info_json_default",
    "jsonable_info",
    "register",
]

INFO_ANCHOR: Final = "anchor"
INFO_ACTION_VALID: Final = "action_valid"
INFO_WON: Final = "won"
INFO_TASK_ID: Final = "task_id"
INFO_AVAILABLE_ACTIONS: Final = "available_actions"
INFO_EXPERT_ACTION: Final = "expert_action"
REQUIRED_INFO_KEYS: Final = (INFO_ANCHOR, INFO_ACTION_VALID, INFO_WON, INFO_TASK_ID)

# Random actions drawn by gymnasium's check_env come from this charset: printable ASCII incl. whitespace,
# so brackets, quotes and JSON punctuation are exercised, not only alphanumerics.
TEXT_CHARSET: Final = frozenset(string.printable)


class EnvError(RuntimeError):
    """An infrastructure failure inside an env (engine crash, missing data, bad configuration).

    Model mistakes are never EnvErrors: they are invalid actions (``info["action_valid"] = False``).
    The rollout loop catches EnvError in one place and ends the episode with ``stop_reason="env_error"``.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message if hint is None else f"{message} ({hint})")
        self.message = message
        self.hint = hint


@dataclass(frozen=True, slots=True)
class Parsed:
    """Result of turning model text into an env action (Contract 2).

    ``action`` is None when the text did not parse; then ``format_valid`` is False and ``feedback`` is the
    observation the model sees next (the env is not stepped, Contract 3).
    """

    action: str | None
    format_valid: bool
    feedback: str = ""

    def __post_init__(self) -> None:
        if self.format_valid and self.action is None:
            raise ValueError("Parsed(format_valid=True) needs an action; use format_valid=False for unparsable text")


Message = dict[str, Any]  # an OpenAI-style chat message: {"role": ..., "content": ..., "tool_calls"?: [...]}


class PromptBuilder:
    """Message contents for one env; the rollout loop renders them with the model's chat template.

    Each env's ``prompts.py`` exposes ``PROMPTS``, an instance of this class or a subclass. The defaults suit an
    env whose observations are plain text: the system prompt, then one user message per observation.
    """

    system_prompt: str | None = None
    #: Renders the whole window-mode user message, called as ``window_text(observation, info, history=...,
    #: history_window=..., actions=...)`` (an env's ``user_message``); None: the generic layout of :meth:`window`.
    window_text: ClassVar[Callable[..., str] | None] = None

    def system(self, info: dict[str, Any]) -> str | None:
        """The system message for a task (``info`` is the reset info), or None for no system message."""
        return self.system_prompt

    def tools(self, info: dict[str, Any]) -> list[dict[str, Any]] | None:
        """OpenAI function schemas handed to the chat template (``tools=``), or None."""
        return None

    def initial(self, observation: str, info: dict[str, Any]) -> list[Message]:
        """Messages after the system message at turn 0 (concat mode)."""
        return [{"role": "user", "content": observation}]

    def reply(self, observation: str, info: dict[str, Any]) -> list[Message]:
        """Messages appended after an assistant turn (concat mode): the env's answer, or parse feedback."""
        return [{"role": "user", "content": observation}]

    def window(
        self,
        observation: str,
        info: dict[str, Any],
        history: list[tuple[str, str]],
        *,
        actions: Sequence[str] | None = None,
    ) -> list[Message]:
        """The whole prompt of one window-mode turn after the system message.

        ``history`` holds the last k (observation acted on, action taken) pairs, oldest first; ``observation`` is
        the current one; ``actions`` every action of the episode so far, oldest first (the window's actions when not
        given, which undercounts the steps once the episode is longer than the window).
        """
        if self.window_text is not None:
            text = self.window_text(observation, info, history=history, history_window=len(history), actions=actions)
            return [{"role": "user", "content": text}]
        lines = [f"Observation: {obs}\nAction: {action}" for obs, action in history]
        recent = ("Recent history:\n" + "\n".join(lines) + "\n\n") if lines else ""
        return [{"role": "user", "content": f"{recent}Current observation:\n{observation}"}]


class TextSpace(spaces.Text):
    """A text space whose membership test accepts any string up to ``max_length`` characters.

    Observations are natural-language text from real engines (product titles, tool results) and may hold any
    Unicode character, so membership checks only type and length. The charset drives random sampling, which
    is what ``check_env`` uses to throw arbitrary actions at the env.
    """

    def __init__(
        self,
        max_length: int,
        *,
        min_length: int = 0,
        charset: frozenset[str] | str = TEXT_CHARSET,
        seed: int | None = None,
    ) -> None:
        super().__init__(max_length=max_length, min_length=min_length, charset=charset, seed=seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"TextSpace(min_length={self.min_length}, max_length={self.max_length})"


def anchor_key(task_id: str, text: str) -> str:
    """Stable hash of a history-free state description within one task (Contract 5).

    Uses blake2b of the task identity and the text, never Python's process-salted ``hash()``, so keys are
    equal across processes, machines and runs.
    """
    digest = hashlib.blake2b(digest_size=12)
    digest.update(task_id.encode("utf-8"))
    digest.update(b"\x1f")
    digest.update(text.encode("utf-8"))
    return digest.hexdigest()


def check_info(info: dict[str, Any]) -> None:
    """Raise EnvError if ``info`` lacks a key or type the contract requires (used by tests and servers)."""
    missing = [key for key in REQUIRED_INFO_KEYS if key not in info]
    if missing:
        raise EnvError(
            f"info lacks required key(s) {missing}; every reset/step info must carry {list(REQUIRED_INFO_KEYS)}"
        )
    if not isinstance(info[INFO_ANCHOR], str) or not info[INFO_ANCHOR]:
        raise EnvError(f"info['anchor'] must be a non-empty str, got {info[INFO_ANCHOR]!r}")
    for key in (INFO_ACTION_VALID, INFO_WON):
        if not isinstance(info[key], bool):
            raise EnvError(f"info[{key!r}] must be a bool, got {type(info[key]).__name__}")
    available = info.get(INFO_AVAILABLE_ACTIONS)
    if available is not None and not (isinstance(available, list) and all(isinstance(a, str) for a in available)):
        raise EnvError("info['available_actions'] must be a list of str")


class TextEnv(gym.Env[str, str]):
    """Base class for text environments: text spaces, the info contract, ``ansi`` rendering.

    Subclasses implement ``reset`` and ``step`` and build their info dicts with :meth:`make_info`.
    """

    metadata = {"render_modes": ["ansi", "human"]}  # noqa: RUF012 - gymnasium reads it as a class attribute
    # Whether several instances may step at once in threads of one process; an env whose engine keeps global state
    # (ALFWorld's textworld parser) says False, and the rollout loop then steps it in worker processes.
    thread_safe: ClassVar[bool] = True
    max_observation_chars: ClassVar[int] = 16_384
    max_action_chars: ClassVar[int] = 4_096

    def __init__(self, *, render_mode: str | None = None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r} is not one of {self.metadata['render_modes']}")
        self.render_mode = render_mode
        self.observation_space = TextSpace(self.max_observation_chars)
        self.action_space = TextSpace(self.max_action_chars)
        self._last_observation = ""

    def make_info(
        self, *, task_id: str, anchor_text: str, action_valid: bool, won: bool, **extra: Any
    ) -> dict[str, Any]:
        """Build an info dict with the required keys; ``anchor_text`` is the history-free state text."""
        info: dict[str, Any] = {
            INFO_ANCHOR: anchor_key(task_id, anchor_text),
            INFO_ACTION_VALID: bool(action_valid),
            INFO_WON: bool(won),
            INFO_TASK_ID: task_id,
        }
        info.update(extra)
        return info

    def _observe(self, observation: str) -> str:
        """Remember (and optionally print) the latest observation; returns it, clipped to the space."""
        observation = observation[: self.max_observation_chars]
        self._last_observation = observation
        if self.render_mode == "human":
            print(observation)  # noqa: T201 - "human" render mode prints by definition
        return observation

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self._last_observation
        return None


def register(env_id: str, entry_point: str, *, max_episode_steps: int | None = None, **kwargs: Any) -> None:
    """Register ``env_id`` (``namespace/Name-vN``) with gymnasium, lazily by ``"module:Class"`` entry point.

    Registering the same id with the same entry point twice is a no-op, so re-imports are harmless.
    """
    existing = gym.registry.get(env_id)
    if existing is not None:
        if existing.entry_point == entry_point:
            return
        raise EnvError(f"env id {env_id!r} is already registered to {existing.entry_point!r}, not {entry_point!r}")
    # Our envs enforce their own step limits and report them as truncated; gymnasium's passive checker
    # warns on text spaces, so it is disabled and tests run check_env explicitly instead.
    gym.register(
        id=env_id, entry_point=entry_point, max_episode_steps=max_episode_steps, disable_env_checker=True, kwargs=kwargs
    )


def info_json_default(value: Any) -> Any:
    """The one rule for info values JSON has no type for (``json.dumps(..., default=info_json_default)``): numpy
    scalars and arrays become Python numbers and lists (anything with ``tolist``), sets sorted lists, anything else
    its ``str``. The env server encodes infos with it, and a local rollout stores :func:`jsonable_info`, so an info
    reads the same in a local and in a remote run."""
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


def jsonable_info(info: dict[str, Any]) -> dict[str, Any]:
    """``info`` as it reads after a JSON round trip with :func:`info_json_default` (what a remote client gets)."""
    try:
        loaded: dict[str, Any] = json.loads(json.dumps(info, default=info_json_default, ensure_ascii=False))
    except (TypeError, ValueError) as err:  # a non-str key that JSON cannot hold, a circular value
        raise EnvError(
            f"the env's info cannot be stored as JSON: {err}", hint="use str keys and plain values"
        ) from None
    return loaded
