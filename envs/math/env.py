"""A single-turn math env: the observation is a problem, the action is the final answer (the boxed content).

Reward 1 when math-verify finds the answer equivalent to the reference, else 0; the episode always terminates
after one step. ``task_set`` picks which ids ``task_ids()`` lists (and which tasks a reset without a task id
draws from); a reset with any task id works (``gen-train-00042``, ``math500-17``, see :mod:`envs.math.tasks`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from envs.base import INFO_EXPERT_ACTION, EnvError, TextEnv
from envs.math.checker import answers_match
from envs.math.tasks import TASK_SETS, MathTask, load_task, task_ids

__all__ = ["MathEnv"]


class MathEnv(TextEnv):
    """``gymnasium.make("resrl/Math-v0", task_set="math500")``; ``reset(options={"task_id": "math500-3"})``."""

    # kwargs a client of the env server may set (never minerva_path: a path on the server); num_generated bounded
    remote_kwargs: ClassVar[frozenset[str]] = frozenset({"task_set", "split", "num_generated"})
    remote_kwarg_limits: ClassVar[dict[str, int]] = {"num_generated": 20_000}

    def __init__(
        self,
        *,
        task_set: str = "generated",
        split: str = "train",
        num_generated: int = 5000,
        minerva_path: str | None = None,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(render_mode=render_mode)
        if task_set not in TASK_SETS:
            raise EnvError(f"task_set={task_set!r} is unknown", hint=f"choose one of {', '.join(TASK_SETS)}")
        if num_generated < 1:
            raise EnvError(f"num_generated={num_generated} must be >= 1")
        self.task_set = task_set
        self.split = split
        self.num_generated = num_generated
        self.minerva_path = minerva_path
        self._ids = task_ids(task_set, split=split, num_generated=num_generated, minerva_path=minerva_path)
        self._task: MathTask | None = None
        self._done = True

    def task_ids(self, split: str | None = None) -> list[str]:
        """Ids of the configured task set (``split`` selects train/test of the generated set)."""
        if split is None or split == self.split:
            return list(self._ids)
        if split in TASK_SETS and split != "generated":
            return task_ids(split, minerva_path=self.minerva_path)
        return task_ids(self.task_set, split=split, num_generated=self.num_generated, minerva_path=self.minerva_path)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        options = dict(options or {})
        task_id = options.pop("task_id", None)
        if options:
            raise EnvError(f"unknown reset options {sorted(options)}", hint="use task_id")
        if task_id is None:
            task_id = self._ids[int(self.np_random.integers(len(self._ids)))]
        self._task = load_task(str(task_id), minerva_path=self.minerva_path)
        self._done = False
        return self._observe(self._task.problem), self._info(self._task.problem, won=False)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._done or self._task is None:
            raise EnvError("step() called on a finished episode; call reset() first")
        if not isinstance(action, str):
            raise EnvError(f"action must be a str, got {type(action).__name__}")
        self._done = True
        correct = answers_match(self._task.answer, action)
        observation = "Correct." if correct else "Incorrect."
        info = self._info(observation, won=correct)
        info["answer"] = action
        return self._observe(observation), 1.0 if correct else 0.0, True, False, info

    def _info(self, anchor_text: str, *, won: bool) -> dict[str, Any]:
        assert self._task is not None
        return self.make_info(
            task_id=self._task.task_id,
            anchor_text=anchor_text,
            action_valid=True,
            won=won,
            source=self._task.source,
            reference=self._task.answer,
            **{INFO_EXPERT_ACTION: self._task.answer},
            **self._task.meta,
        )
