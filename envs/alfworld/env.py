"""``resrl/ALFWorld-v0``: the real ALFWorld engine (alfworld 0.4.2 on TextWorld's PDDL backend), one game per episode.

``reset(seed, options)`` picks a game (``options={"task_id": ...}``, or ``{"split": ..., "task_type": ...}`` to draw
one with the env's RNG) and returns the engine's first observation, which ends with "Your task is to: ...".
``step(action)`` sends the command to the engine. A command that is not admissible is still played, as alfworld
plays it ("Nothing happens.", state unchanged), and reported with ``action_valid=False``. Reward is ``won_reward``
(10) on the winning step and 0 otherwise; the episode terminates on a win and is truncated after ``max_steps`` (50).

Info keys: ``anchor`` (hash of the observation and the admissible commands, within the task), ``action_valid``,
``won``, ``task_id``, ``available_actions`` (the admissible commands), ``expert_action`` (alfworld's handcoded
expert's next command), ``task_type``, ``task`` (the goal text), ``goal_condition_success`` (the share of the goal's
conditions that hold, computed from the engine's facts; 1.0 exactly when won) and ``step``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from envs.alfworld.engine import TASK_TYPE_IDS, TASK_TYPES, ExpertRandom, make_engine, memoized_translation, quiet
from envs.alfworld.games import GameRecord, generated_games_dir, index_games, shipped_games_dir
from envs.alfworld.generator import SPLITS, expert_stream_seed
from envs.base import INFO_AVAILABLE_ACTIONS, INFO_EXPERT_ACTION, EnvError, TextEnv

_TASK_MARK = "Your task is to: "


class AlfworldConfig(BaseModel):
    """Keyword arguments of :class:`AlfworldEnv` (validated at ``make``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: str | None = Field(None, description="A generated games tree; None uses the shipped set.")
    num_train_games: int | None = Field(
        None, ge=1, description="If set (and data_dir is None): generate this many train games into the cache dir."
    )
    num_eval_games: int = Field(20, ge=0, description="With num_train_games: games per eval split to generate.")
    generate_seed: int = Field(0, description="With num_train_games: the generator's seed.")
    split: str = Field("train", description="Default split for resets without a task_id.")
    task_types: tuple[int, ...] = Field((1, 2, 3, 4, 5, 6), description="Task type ids (1-6) drawn from.")
    max_steps: int = Field(50, ge=1, description="Steps before the episode is truncated (alfworld's eval uses 50).")
    won_reward: float = Field(10.0, description="Reward on the winning step (verl-agent uses 10).")
    cache_translations: bool = Field(True, description="Memoize the engine's PDDL translation and grammar parse.")
    optimized_replan: bool = Field(
        False,
        description="With cache_translations: also translate the optimized task textworld's planner searches (never "
        "asked for here; by default the plain translation stands in for it, one translation per state instead of two)",
    )


class AlfworldEnv(TextEnv):
    """One ALFWorld game at a time on the real engine; see the module docstring for the contract."""

    # kwargs a client of the env server may set: never data_dir (a path), nor the game generator's (it writes games)
    remote_kwargs: ClassVar[frozenset[str]] = frozenset({"split", "task_types", "max_steps", "won_reward"})

    thread_safe = False  # the engine swaps module-level functions while it loads a game

    def __init__(self, *, render_mode: str | None = None, **kwargs: Any) -> None:
        super().__init__(render_mode=render_mode)
        try:
            self.config = AlfworldConfig(**kwargs)
        except ValueError as error:
            raise EnvError(f"invalid resrl/ALFWorld-v0 kwargs: {error}") from None
        if self.config.split not in SPLITS:
            raise EnvError(f"split={self.config.split!r} is unknown", hint=f"use one of {list(SPLITS)}")
        bad = [t for t in self.config.task_types if t not in TASK_TYPES]
        if bad or not self.config.task_types:
            raise EnvError(
                f"task_types={list(self.config.task_types)} must be a non-empty subset of 1-6", hint=str(TASK_TYPES)
            )
        if self.config.data_dir:
            root = Path(self.config.data_dir).expanduser()
        elif self.config.num_train_games:
            root = generated_games_dir(
                self.config.num_train_games,
                self.config.num_eval_games,
                seed=self.config.generate_seed,
                task_types=self.config.task_types,
            )
        else:
            root = shipped_games_dir()
        self.games_root = root.resolve()
        self.games = index_games(self.games_root)
        self._by_id = {game.task_id: game for game in self.games}
        if not self.games:
            # AlfredTWEnv hangs forever in reset on an empty game list; refuse here instead.
            raise EnvError(
                f"no solvable ALFWorld games under {self.games_root}",
                hint="run `resrl-agent alfworld generate --out DIR` and pass data_dir=DIR",
            )
        self._choices(self.config.split, self.config.task_types)  # fail now, not at the first reset
        self._engine: Any = None
        self._expert_random = ExpertRandom()
        self._game: GameRecord | None = None
        self._loaded_file: Path | None = None
        self._state: Any = None
        self._task = ""
        self._steps = 0
        self._done = True

    # --- episode API -------------------------------------------------------------------------------------------------

    def task_ids(self, split: str | None = None, task_type: str | int | None = None) -> list[str]:
        """Task ids of the games in ``split`` (all splits if None) of ``task_type`` (all if None)."""
        types = tuple(TASK_TYPES) if task_type is None else (_task_type_id(task_type),)
        return [
            g.task_id for g in self.games if (split is None or g.split == split) and TASK_TYPE_IDS[g.task_type] in types
        ]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        options = dict(options or {})
        task_id = options.pop("task_id", None)
        split = options.pop("split", None)
        task_type = options.pop("task_type", None)
        if options:
            raise EnvError(f"unknown reset options {sorted(options)}", hint="use task_id, split or task_type")
        if task_id is not None:
            game = self._by_id.get(str(task_id))
            if game is None:
                raise EnvError(
                    f"unknown task_id {task_id!r} under {self.games_root}", hint="env.unwrapped.task_ids() lists them"
                )
        else:
            types = self.config.task_types if task_type is None else (_task_type_id(task_type),)
            choices = self._choices(split or self.config.split, types)
            game = choices[int(self.np_random.integers(len(choices)))]
        self._game = game
        self._expert_random = ExpertRandom(expert_stream_seed(game.task_id, game.expert_seed))
        with self._engine_call():
            engine = self._get_engine()
            if self._loaded_file != game.game_file:
                self._loaded_file = None
                engine.load(str(game.game_file))
                self._loaded_file = game.game_file
            self._state = engine.reset()
        observation = self._state.feedback
        self._task = observation.rsplit(_TASK_MARK, 1)[-1].strip().rstrip(".") if _TASK_MARK in observation else ""
        self._steps = 0
        self._done = False
        return self._observe(observation), self._info(action_valid=True)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._done or self._state is None:
            raise EnvError("step() called on a finished episode; call reset() first")
        if not isinstance(action, str):
            raise EnvError(f"action must be a str, got {type(action).__name__}")
        # Every ALFWorld command is lowercase with single spaces; the engine itself only strips the ends.
        command = " ".join(action.split()).lower()
        action_valid = command in self._state["admissible_commands"]
        with self._engine_call():
            # An inadmissible command goes to the engine too ("Nothing happens."): the expert tracks it, as in alfworld.
            self._state, _, _ = self._engine.step(command)
        self._steps += 1
        won = bool(self._state["won"])
        terminated = won
        truncated = not won and self._steps >= self.config.max_steps
        self._done = terminated or truncated
        reward = self.config.won_reward if won else 0.0
        return self._observe(self._state.feedback), reward, terminated, truncated, self._info(action_valid=action_valid)

    def close(self) -> None:
        self._engine = None
        self._loaded_file = None
        self._state = None
        self._done = True
        super().close()

    # --- helpers -----------------------------------------------------------------------------------------------------

    @property
    def game(self) -> GameRecord | None:
        return self._game

    def _choices(self, split: str, task_types: tuple[int, ...]) -> list[GameRecord]:
        if split not in SPLITS:
            raise EnvError(f"split={split!r} is unknown", hint=f"use one of {list(SPLITS)}")
        names = {TASK_TYPES[t] for t in task_types}
        choices = [g for g in self.games if g.split == split and g.task_type in names]
        if not choices:
            raise EnvError(
                f"no games of split {split!r} and task types {sorted(task_types)} under {self.games_root}",
                hint="generate more with `resrl-agent alfworld generate`",
            )
        return choices

    def _get_engine(self) -> Any:
        if self._engine is None:
            self._engine = make_engine()
        return self._engine

    @contextlib.contextmanager
    def _engine_call(self) -> Iterator[None]:
        translation = (
            memoized_translation(optimized_replan=self.config.optimized_replan)
            if self.config.cache_translations
            else contextlib.nullcontext()
        )
        try:
            with self._expert_random.active(), quiet(), translation:
                yield
        except EnvError:
            raise
        except Exception as error:  # an engine failure is an infrastructure error, never a model mistake
            self._done = True
            self._loaded_file = None
            game = self._game.task_id if self._game else "?"
            raise EnvError(f"the ALFWorld engine failed on {game}: {error!r}") from error

    def _info(self, *, action_valid: bool) -> dict[str, Any]:
        assert self._game is not None and self._state is not None
        admissible = list(self._state["admissible_commands"])
        won = bool(self._state["won"])
        observation = self._state.feedback
        plan = self._state.get("extra.expert_plan") or ["look"]
        return self.make_info(
            task_id=self._game.task_id,
            anchor_text=observation + "\n\n" + "\n".join(admissible),
            action_valid=action_valid,
            won=won,
            **{INFO_AVAILABLE_ACTIONS: admissible, INFO_EXPERT_ACTION: plan[0]},
            task_type=self._game.task_type,
            task=self._task,
            goal_condition_success=goal_condition_success(self._game, self._state["facts"]),
            step=self._steps,
        )


def _task_type_id(task_type: str | int) -> int:
    if isinstance(task_type, str) and task_type in TASK_TYPE_IDS:
        return TASK_TYPE_IDS[task_type]
    with contextlib.suppress(TypeError, ValueError):
        if int(task_type) in TASK_TYPES:
            return int(task_type)
    raise EnvError(f"unknown task_type {task_type!r}", hint=f"use an id or name from {TASK_TYPES}")


def goal_condition_success(game: GameRecord, facts: list[Any]) -> float:
    """Share of the goal's conditions that hold, for the best candidate object (ALFRED's goal-condition success).

    Conditions per task type: place: the object in the parent; clean/heat/cool: the object clean/hot/cool and in the
    parent (both on the same object); two: two distinct objects in the parent; look: the object held, and a toggled
    lamp in a receptacle at the agent's location.
    """
    args: dict[str, list[tuple[str, ...]]] = {}
    for fact in facts:
        args.setdefault(fact.name.lower(), []).append(tuple(name.strip() for name in fact.names))
    params = game.pddl_params
    obj = str(params["object_target"]).lower()
    objects = {a[0] for a in args.get("objecttype", []) if a[1] == f"{obj}type"}
    if game.task_type == "look_at_obj_in_light":
        toggle = str(params["toggle_target"]).lower()
        lamps = {a[0] for a in args.get("objecttype", []) if a[1] == f"{toggle}type"}
        held = any(a[1] in objects for a in args.get("holds", []))
        here = {a[1] for a in args.get("atlocation", [])}
        receptacles_here = {a[0] for a in args.get("receptacleatlocation", []) if a[1] in here}
        toggled = {a[0] for a in args.get("istoggled", [])}
        lit = any(a[0] in lamps and a[0] in toggled and a[1] in receptacles_here for a in args.get("inreceptacle", []))
        return (held + lit) / 2
    parent = str(params["parent_target"]).lower()
    parents = {a[0] for a in args.get("receptacletype", []) if a[1] == f"{parent}type"}
    inside = {a[0] for a in args.get("inreceptacle", []) if a[0] in objects and a[1] in parents}
    if game.task_type == "pick_and_place_simple":
        return 1.0 if inside else 0.0
    if game.task_type == "pick_two_obj_and_place":
        return min(len(inside), 2) / 2
    state = {
        "pick_clean_then_place_in_recep": "isclean",
        "pick_heat_then_place_in_recep": "ishot",
        "pick_cool_then_place_in_recep": "iscool",
    }[game.task_type]
    changed = {a[0] for a in args.get(state, [])}
    return max(((o in changed) + (o in inside)) / 2 for o in objects) if objects else 0.0
