"""``resrl/BabyAI-v0``: Farama's ``minigrid`` BabyAI levels (e.g. GoToObj, GoToLocal, PickupLoc) as a text game.

``BabyAIEnv(level="GoToObj")`` wraps ``gymnasium.make("BabyAI-GoToObj-v0")``. A task id names a split and an index,
``train-<i>``, ``valid-<i>`` or ``test-<i>``, and the layout is minigrid's for the seed of that id: train ``i``,
valid ``1_000_000_000 + i``, test ``2_000_000_000 + i`` (disjoint ranges, so held-out layouts are never trained on).
``reset(options={"task_id": ...})`` plays that layout; without a task id (``options={"split": ...}`` optional, train
by default) a task of the split is drawn with the env's RNG.

Observation (also the anchor text; it holds no step count)::

    Mission: go to the red ball
    You see a red ball 2 steps forward and 1 step left.
    You see a wall 3 steps forward.
    You carry nothing.

One line per object in the agent's 7x7 partial view (minigrid's ``gen_obs_grid``: only cells the agent can see), the
nearest first (steps forward plus steps sideways; ties: straight ahead first, then left before right), then the
nearest visible wall straight ahead, left and right (as BALROG's BabyAI-Text: in each straight line, up to the first
wall or closed door), then what the agent carries.

Actions: the six words of :data:`envs.babyai.actions.ACTIONS` (minigrid's actions 0-5). Any other text (compared
lowercased, whitespace collapsed) is played as ALFWorld plays an inadmissible command: ``action_valid=False``, reward
0, the state and observation unchanged, and it counts as a step toward ``max_steps``. Reward 1.0 when minigrid reports
success, else 0.0. The episode terminates when minigrid terminates it (success, or the failure of a strict
instruction in the *Debug levels) and is truncated after ``max_steps`` steps; minigrid's own step limit is raised out
of the way, so ours decides. An exception from minigrid itself is an EnvError (an infrastructure failure).

Info keys: ``anchor``, ``action_valid``, ``won``, ``task_id``, ``available_actions`` (the six), ``expert_action``
(minigrid's ``BabyAIBot``, one bot per episode told each action taken; absent where the bot has no answer), and
``mission``, ``level``, ``seed``, ``step``.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Final

import gymnasium as gym
import minigrid  # noqa: F401 - registers the BabyAI-* ids with gymnasium
from minigrid.envs.babyai.core import roomgrid_level
from minigrid.utils.baby_ai_bot import BabyAIBot, DisappearedBoxError

from envs.actions import normalise_command
from envs.babyai.actions import ACTIONS
from envs.base import INFO_AVAILABLE_ACTIONS, INFO_EXPERT_ACTION, EnvError, TextEnv

__all__ = ["ACTIONS", "SEED_OFFSETS", "SPLITS", "BabyAIEnv", "describe", "levels"]

SPLITS: Final = ("train", "valid", "test")
SEED_OFFSETS: Final = {"train": 0, "valid": 1_000_000_000, "test": 2_000_000_000}
MAX_SPLIT_SIZE: Final = 1_000_000_000  # keeps the seed ranges disjoint
# minigrid's own step limit (and the scale of its success reward 1 - 0.9 * steps / max_steps), set after each reset
# so that it never truncates an episode nor makes the success reward <= 0 before our max_steps does.
_MINIGRID_MAX_STEPS: Final = 1 << 30
_ACTION_INDEX: Final = {name: index for index, name in enumerate(ACTIONS)}
_TASK_ID_RE: Final = re.compile(r"(train|valid|test)-(0|[1-9][0-9]*)")
_PREFIX: Final = "BabyAI-"


def _drop_print(*_args: Any, **_kwargs: Any) -> None:
    """Stands in for ``print`` inside minigrid's level generator (see :func:`_silence_level_generation`)."""


def _silence_level_generation() -> None:
    """Silence the "Sampling rejected: ..." lines BabyAI's rejection sampling prints to stdout during ``reset``.

    Those are the only prints of ``minigrid.envs.babyai.core.roomgrid_level``; the module's global name ``print`` is
    pointed at a no-op once, at import. Unlike ``contextlib.redirect_stdout`` around each reset, this swaps no
    process-wide ``sys.stdout``: two envs resetting in threads cannot leave stdout pointing at a null stream (the
    second redirect saves the first one's null stream and restores it last), and other threads' output is never lost.
    """
    roomgrid_level.print = _drop_print  # type: ignore[attr-defined]


_silence_level_generation()


def levels() -> list[str]:
    """The BabyAI level names gymnasium knows (``BabyAI-<name>-v<n>`` ids registered by minigrid)."""
    names = {spec.name for spec in gym.registry.values() if spec.namespace is None}
    return sorted(name[len(_PREFIX) :] for name in names if name.startswith(_PREFIX))


def _level_env_id(level: Any) -> str:
    """``BabyAI-<level>-v0`` (or the level's newest version if it has no v0); EnvError naming valid levels if none."""
    versions = sorted(
        (spec.version or 0, spec.id)
        for spec in gym.registry.values()
        if isinstance(level, str) and spec.namespace is None and spec.name == f"{_PREFIX}{level}"
    )
    if not versions:
        known = levels()
        examples = [name for name in ("GoToObj", "GoToLocal", "PickupLoc", "PutNextLocal", "GoTo") if name in known]
        raise EnvError(
            f"unknown BabyAI level {level!r}",
            hint=f"use a minigrid BabyAI level name such as {', '.join(examples)} ({len(known)} levels in all)",
        )
    for version, env_id in versions:
        if version == 0:
            return env_id
    return versions[-1][1]


def _where(forward: int, lateral: int) -> str:
    """Where a cell is, e.g. "2 steps forward and 1 step left": ``forward`` ahead, ``lateral`` right (< 0: left)."""
    parts = []
    if forward:
        parts.append(f"{forward} step{'s' if forward != 1 else ''} forward")
    if lateral:
        side = "right" if lateral > 0 else "left"
        parts.append(f"{abs(lateral)} step{'s' if abs(lateral) != 1 else ''} {side}")
    return " and ".join(parts)


def _noun(obj: Any) -> str:
    """An object with its article: "a red ball", "a closed blue door", "an open grey door", "a locked red door"."""
    if obj.type == "door":
        state = "an open" if obj.is_open else "a locked" if obj.is_locked else "a closed"
        return f"{state} {obj.color} door"
    return f"a {obj.color} {obj.type}"


def describe(env: Any) -> str:
    """The text observation of a minigrid env's current state (see the module docstring)."""
    base = env.unwrapped
    grid, visible = base.gen_obs_grid()  # rotated: the agent at (size // 2, size - 1), facing up (decreasing j)
    size = grid.width
    ax, ay = size // 2, size - 1
    seen: list[tuple[tuple[int, int, int], str]] = []
    for j in range(size):
        for i in range(size):
            if (i, j) == (ax, ay) or not visible[i, j]:
                continue
            cell = grid.get(i, j)
            if cell is None or cell.type in ("wall", "floor"):
                continue
            forward, lateral = ay - j, i - ax
            order = (forward + abs(lateral), abs(lateral), lateral)  # nearest; then ahead, left, right
            seen.append((order, f"You see {_noun(cell)} {_where(forward, lateral)}."))
    lines = [f"Mission: {base.mission}"]
    lines += [text for _, text in sorted(seen)]
    # The nearest wall straight ahead, left and right: the line's first cell that hides what is behind it (a wall, a
    # closed door) if that is a wall, and if visible (in a straight line it is: the cells before it are see-through).
    for di, dj, reach in ((0, -1, ay), (-1, 0, ax), (1, 0, size - 1 - ax)):
        for k in range(1, reach + 1):
            i, j = ax + di * k, ay + dj * k
            cell = grid.get(i, j)
            if not visible[i, j] or (cell is not None and not cell.see_behind()):
                if visible[i, j] and cell.type == "wall":
                    lines.append(f"You see a wall {_where(-dj * k, di * k)}.")
                break
    lines.append(f"You carry {_noun(base.carrying)}." if base.carrying is not None else "You carry nothing.")
    return "\n".join(lines)


def _mission_objects(instr: Any) -> list[Any]:
    """Every object a BabyAI instruction may refer to (the object sets of its descriptions, sub-instructions too)."""
    objects = []
    for name in ("desc", "desc_move", "desc_fixed"):
        desc = getattr(instr, name, None)
        objects += list(getattr(desc, "obj_set", ()))
    for name in ("instr_a", "instr_b"):
        sub = getattr(instr, name, None)
        if sub is not None:
            objects += _mission_objects(sub)
    return objects


class BabyAIEnv(TextEnv):
    """One BabyAI layout per episode; see the module docstring for the contract."""

    # kwargs a client of the env server may set (servers/env_sessions.py check_env_kwargs)
    remote_kwargs: ClassVar[frozenset[str]] = frozenset({"level", "max_steps", "num_train", "num_valid", "num_test"})

    # Instances share no mutable state: each wraps its own minigrid env and bot, and the one process-wide change (the
    # silenced generator print) is made once at import. Tested with envs stepping in threads (tests/envs/test_babyai).
    thread_safe = True

    def __init__(
        self,
        level: str = "GoToObj",
        max_steps: int = 20,
        num_train: int = 100_000,
        num_valid: int = 1_000,
        num_test: int = 1_000,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(render_mode=render_mode)
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise EnvError(f"max_steps={max_steps!r} must be an int >= 1")
        sizes = {"train": num_train, "valid": num_valid, "test": num_test}
        for split, size in sizes.items():
            if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_SPLIT_SIZE:
                raise EnvError(f"num_{split}={size!r} must be an int in [0, {MAX_SPLIT_SIZE}]")
        self.level = level
        self.env_id = _level_env_id(level)
        self.max_steps = max_steps
        self.split_sizes = sizes
        self._env: Any = gym.make(self.env_id, disable_env_checker=True).unwrapped
        self._bot: Any = None
        self._expert_gone = False
        self._task_id = ""
        self._seed = 0
        self._text = ""
        self._expert: str | None = None
        self._steps = 0
        self._done = True

    # --- episode API -------------------------------------------------------------------------------------------------

    def task_ids(self, split: str | None = None) -> list[str]:
        """The task ids of ``split`` (train, valid or test; None: train), ``<split>-0`` to ``<split>-<n - 1>``."""
        split = self._split(split)
        return [f"{split}-{i}" for i in range(self.split_sizes[split])]

    def task_seed(self, task_id: str) -> int:
        """The minigrid seed that lays out ``task_id``; EnvError for an id this env does not have."""
        split, index = self._parse_task_id(task_id)
        return SEED_OFFSETS[split] + index

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        options = dict(options or {})
        task_id = options.pop("task_id", None)
        split = options.pop("split", None)
        if options:
            raise EnvError(f"unknown reset options {sorted(options)}", hint="use task_id or split")
        if task_id is None:
            split = self._split(split)
            if not self.split_sizes[split]:
                raise EnvError(f"split {split!r} has no tasks", hint=f"num_{split} is 0")
            task_id = f"{split}-{int(self.np_random.integers(self.split_sizes[split]))}"
        self._seed = self.task_seed(task_id)
        self._task_id = str(task_id)
        self._done = True  # until the layout is in place
        try:
            self._env.reset(seed=self._seed)
            self._env.max_steps = _MINIGRID_MAX_STEPS
            self._text = describe(self._env)
        except Exception as error:  # minigrid failing is an infrastructure error, never a model mistake
            raise EnvError(f"minigrid failed to reset {self.env_id} for {task_id}: {error!r}") from error
        self._bot = None
        self._expert_gone = False
        self._steps = 0
        self._done = False
        self._expert = self._replan(None)
        return self._observe(self._text), self._info(action_valid=True, won=False)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise EnvError("step() called on a finished episode; call reset() first")
        if not isinstance(action, str):
            raise EnvError(f"action must be a str, got {type(action).__name__}")
        index = _ACTION_INDEX.get(normalise_command(action))
        self._steps += 1
        won = terminated = False
        if index is not None:  # an unknown action changes nothing (the expert's advice stands for the same state)
            try:
                _, reward, terminated, _, _ = self._env.step(index)
                self._text = describe(self._env)
            except Exception as error:
                self._done = True
                raise EnvError(f"minigrid failed to step {self.env_id} on {self._task_id}: {error!r}") from error
            won = bool(terminated and float(reward) > 0)
        truncated = not terminated and self._steps >= self.max_steps
        self._done = terminated or truncated
        if index is not None:
            self._expert = None if terminated else self._replan(index)
        info = self._info(action_valid=index is not None, won=won)
        return self._observe(self._text), 1.0 if won else 0.0, terminated, truncated, info

    def close(self) -> None:
        self._bot = None
        self._done = True
        super().close()

    # --- helpers -----------------------------------------------------------------------------------------------------

    @property
    def minigrid_env(self) -> Any:
        """The wrapped (unwrapped) minigrid env, for tests and tools."""
        return self._env

    def _replan(self, action_taken: int | None) -> str | None:
        """The bot's action for the current state, or None where it has none.

        One bot per episode, told each action taken (``replan(action)``): it keeps its map of the cells seen and plans
        back from the agent's detours. When the agent opens a box (toggle: the box is replaced by its contents) the bot
        raises ``DisappearedBoxError``; if the mission names that box (it is in one of the mission's object sets) the
        bot cannot help any more and the rest of the episode has no expert action, otherwise a fresh bot takes over.
        If the bot raises anything else, a fresh bot plans from the current state and stays; if that one raises too,
        this state has no expert action and the next state tries afresh.
        """
        if self._expert_gone:
            return None
        for fresh in (True,) if self._bot is None else (False, True):
            try:
                if fresh:
                    self._bot = BabyAIBot(self._env)  # type: ignore[no-untyped-call]
                suggested = int(self._bot.replan(None if fresh else action_taken))
            except DisappearedBoxError:
                opened = self._bot.prev_fwd_cell
                if any(obj is opened for obj in _mission_objects(self._env.instrs)):
                    self._bot, self._expert_gone = None, True
                    return None
                self._bot = None
                continue
            except Exception:  # the bot asserts on states it cannot plan for: never an error out of step()
                self._bot = None
                continue
            return ACTIONS[suggested] if 0 <= suggested < len(ACTIONS) else None  # "done" (6) is not offered
        return None

    def _split(self, split: str | None) -> str:
        split = "train" if split is None else split
        if split not in SPLITS:
            raise EnvError(f"unknown split {split!r}", hint=f"use one of {list(SPLITS)}")
        return split

    def _parse_task_id(self, task_id: Any) -> tuple[str, int]:
        match = _TASK_ID_RE.fullmatch(task_id) if isinstance(task_id, str) else None
        if match is None or int(match.group(2)) >= self.split_sizes[match.group(1)]:
            sizes = ", ".join(f"{split}-0..{split}-{n - 1}" for split, n in self.split_sizes.items() if n)
            raise EnvError(
                f"unknown task_id {task_id!r} for resrl/BabyAI-v0",
                hint=f"task ids look like 'train-3'; this env has {sizes}; env.unwrapped.task_ids(split) lists them",
            )
        return match.group(1), int(match.group(2))

    def _info(self, *, action_valid: bool, won: bool) -> dict[str, Any]:
        extra: dict[str, Any] = {INFO_AVAILABLE_ACTIONS: list(ACTIONS)}
        if self._expert is not None:
            extra[INFO_EXPERT_ACTION] = self._expert
        return self.make_info(
            task_id=self._task_id,
            anchor_text=self._text,
            action_valid=action_valid,
            won=won,
            **extra,
            mission=str(self._env.mission),
            level=self.level,
            seed=self._seed,
            step=self._steps,
        )
