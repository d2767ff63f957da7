"""The two parts a :class:`~resrl_agent.trainer.loop.Trainer` holds: a generator and a learner group.

- A **generator** plays tasks into episodes with the current policy (``play``), takes the learner group's weights
  after every update (``load_weights_from``) and reports its own counters (``stats``).
- A **learner group** runs the RL update and SFT on episodes, and holds the weights, optimizer and RNG state that a
  checkpoint saves (``update``, ``sft``, ``state_dict`` / ``load_state_dict``, ``weights``).

Here are the in-process ones (:class:`LocalGenerator`: an engine in this process; :class:`LocalLearners`: one
:class:`~resrl_agent.trainer.learner.Learner`); :mod:`resrl_agent.trainer.ray_driver` has the Ray ones (rollout
worker actors around an inference actor; one or several learner actors). The Trainer's phases, checkpoints, evals
and metrics are the same code for both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from resrl_agent.config import RunConfig
from resrl_agent.rollout.chat import ChatFormatter
from resrl_agent.rollout.loop import RolloutSettings, TaskSpec, run_episodes
from resrl_agent.run.engines import close_engine
from resrl_agent.trainer.learner import Learner
from resrl_agent.trainer.sft import sft_phase
from resrl_agent.trainer.update import train_on_episodes
from resrl_agent.types import Episode

__all__ = ["Generator", "LearnerGroup", "LocalGenerator", "LocalLearners"]

OnStep = Callable[[int, dict[str, float]], None]


class LearnerGroup(Protocol):
    def update(self, episodes: list[Episode]) -> dict[str, float]: ...

    def sft(
        self, episodes: list[Episode], on_step: OnStep | None, *, epochs: int | None, lr: float | None
    ) -> list[dict[str, float]]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def stats(self) -> dict[str, float]: ...

    def close(self) -> None: ...


class Generator(Protocol):
    def play(
        self,
        tasks: list[TaskSpec],
        settings: RolloutSettings,
        *,
        policy_version: int,
        progress: Callable[[int], None] | None = None,
    ) -> list[Episode]: ...

    def load_weights_from(self, learners: Any) -> None: ...

    def stats(self) -> dict[str, float]: ...

    def close(self) -> None: ...


class LocalLearners:
    """One learner in this process. ``sft`` streams each step to ``on_step`` as it happens."""

    def __init__(self, learner: Learner, config: RunConfig, pad_id: int) -> None:
        self.learner, self.config, self.pad_id = learner, config, pad_id

    @property
    def model(self) -> Any:
        return self.learner.model

    def update(self, episodes: list[Episode]) -> dict[str, float]:
        return train_on_episodes(self.learner, episodes, self.config, pad_id=self.pad_id)

    def sft(
        self, episodes: list[Episode], on_step: OnStep | None, *, epochs: int | None, lr: float | None
    ) -> list[dict[str, float]]:
        return sft_phase(self.learner, episodes, self.config, pad_id=self.pad_id, on_step=on_step, epochs=epochs, lr=lr)

    def state_dict(self) -> dict[str, Any]:
        return self.learner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.learner.load_state_dict(state)

    def stats(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        return None


class LocalGenerator:
    """An engine in this process; an HF engine that shares the learner's module needs no weight push at all."""

    def __init__(self, config: RunConfig, engine: Any, formatter: ChatFormatter) -> None:
        self.config, self.engine, self.formatter = config, engine, formatter

    def play(
        self,
        tasks: list[TaskSpec],
        settings: RolloutSettings,
        *,
        policy_version: int,
        progress: Callable[[int], None] | None = None,
    ) -> list[Episode]:
        return run_episodes(
            self.config.env.id,
            tasks,
            self.engine,
            self.formatter,
            settings,
            env_kwargs=dict(self.config.env.kwargs),
            policy_version=policy_version,
            progress=progress,
        )

    def load_weights_from(self, learners: LocalLearners) -> None:
        if getattr(self.engine, "model", None) is learners.model:
            return  # the HF engine shares the policy's module
        self.engine.update_weights(learners.model.state_dict())

    def stats(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            close_engine(engine)
