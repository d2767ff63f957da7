"""Advantage estimators by name: each maps a collated ``Batch`` (and the run config) to one advantage per turn.

``algo.advantage`` names the estimator; the trainer looks it up here (:func:`get_estimator`) and reads nothing
but the batch after ``collate``. Every estimator has one signature, ``(batch, config) -> (TurnAdvantages,
metrics)``: it reads the batch's turn and episode tensors (``Batch.turn_*``, ``Batch.episode_*``) and the config
sections it needs, and returns one advantage per entry of the batch's turn table plus which turns enter the loss.

Built in: GRPO, NSR, PSR, W-REINFORCE and DAPO (outcome estimators: every turn starts from its episode's score,
:func:`~resrl_agent.algorithms.advantages.outcome_turn_advantages`) and GiGPO (each turn its own A_E + omega A_S,
:func:`~resrl_agent.algorithms.gigpo.gigpo_advantages`). Every one of them takes ``algo.invalid_penalty`` off the
turns whose output did not parse.

A new estimator registers under its own name, and the config then accepts that name::

    @register_estimator("my_estimator")
    def my_estimator(batch: Batch, config: RunConfigLike) -> tuple[TurnAdvantages, dict[str, float]]:
        ...

The registry is per process: register in a module that every process running the update imports.

The config imports this module (to check ``algo.advantage`` when it loads), so this module does not import the
config, not even for type checking: an estimator's ``config`` is typed by what it reads (:class:`RunConfigLike`,
which a ``RunConfig`` is).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

import torch

from resrl_agent.algorithms.advantages import dapo_keep_mask, dapo_overlong_penalty, outcome_turn_advantages
from resrl_agent.algorithms.gigpo import gigpo_advantages
from resrl_agent.errors import ConfigError
from resrl_agent.types import Batch

__all__ = [
    "Estimator",
    "RunConfigLike",
    "TurnAdvantages",
    "estimator_names",
    "get_estimator",
    "register_estimator",
]


class RunConfigLike(Protocol):
    """The sections of a ``RunConfig`` an estimator may read."""

    @property
    def algo(self) -> Any: ...

    @property
    def rollout(self) -> Any: ...


@dataclass(frozen=True)
class TurnAdvantages:
    """One advantage per turn of the batch's turn table, and which turns enter the loss."""

    values: torch.Tensor  # [N] float32
    keep: torch.Tensor  # [N] bool: False for turns of samples an estimator drops (NSR, PSR, DAPO)


class Estimator(Protocol):
    """``(batch, config) -> (TurnAdvantages, metrics)``: advantages over the batch's exact groups."""

    def __call__(self, batch: Batch, config: RunConfigLike, /) -> tuple[TurnAdvantages, dict[str, float]]: ...


EstimatorT = TypeVar("EstimatorT", bound=Estimator)

_ESTIMATORS: dict[str, Estimator] = {}


def register_estimator(name: str, *, replace: bool = False) -> Callable[[EstimatorT], EstimatorT]:
    """Register an estimator under ``name`` (a decorator); ``algo.advantage=name`` then selects it.

    A name that is taken raises ValueError unless ``replace`` is set.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"an estimator's name must be a non-empty str; got {name!r}")

    def add(estimator: EstimatorT) -> EstimatorT:
        if name in _ESTIMATORS and not replace:
            raise ValueError(f"an advantage estimator named {name!r} is registered already; pass replace=True")
        _ESTIMATORS[name] = estimator
        return estimator

    return add


def estimator_names() -> tuple[str, ...]:
    """The registered names, sorted."""
    return tuple(sorted(_ESTIMATORS))


def get_estimator(name: str) -> Estimator:
    """The estimator registered under ``name``; ConfigError naming the registered ones otherwise."""
    try:
        return _ESTIMATORS[name]
    except KeyError:
        raise ConfigError(
            f"no advantage estimator named {name!r}; registered: {', '.join(estimator_names())} (add one with "
            "resrl_agent.algorithms.register_estimator)"
        ) from None


def _outcome(estimator: Literal["grpo", "nsr", "psr", "w_reinforce"]) -> Estimator:
    """An outcome estimator on the episodes' returns."""

    def estimate(batch: Batch, config: RunConfigLike, /) -> tuple[TurnAdvantages, dict[str, float]]:
        values, keep = outcome_turn_advantages(
            batch.episode_return,
            batch.episode_group.tolist(),
            batch.turn_episode,
            ~batch.turn_format_valid,
            estimator=estimator,
            invalid_penalty=config.algo.invalid_penalty,
        )
        return TurnAdvantages(values, keep), {}

    estimate.__name__ = estimator
    estimate.__doc__ = f"{estimator}: see resrl_agent.algorithms.advantages.outcome_turn_advantages."
    return estimate


register_estimator("grpo")(_outcome("grpo"))
register_estimator("nsr")(_outcome("nsr"))
register_estimator("psr")(_outcome("psr"))
register_estimator("w_reinforce")(_outcome("w_reinforce"))


@register_estimator("dapo")
def dapo(batch: Batch, config: RunConfigLike, /) -> tuple[TurnAdvantages, dict[str, float]]:
    """DAPO: GRPO over the groups whose scores differ, on returns shaped by the soft overlong penalty.

    Dynamic sampling looks at the scores themselves: a group that is all right (or all wrong) is dropped even when
    the overlong penalty makes its shaped rewards differ (DAPO filters on accuracy). The penalty (``algo.
    overlong_buffer`` > 0) measures an episode's sampled tokens against its response budget, ``rollout.
    max_new_tokens`` per turn for ``rollout.max_turns`` turns.
    """
    algo = config.algo
    groups = batch.episode_group.tolist()
    returns = batch.episode_return
    keep = dapo_keep_mask(returns, groups)
    if algo.overlong_buffer > 0:
        budget = config.rollout.max_new_tokens * config.rollout.max_turns
        returns = returns + dapo_overlong_penalty(
            batch.episode_response_tokens, max_len=budget, buffer=min(algo.overlong_buffer, budget)
        )
    values, keep_turn = outcome_turn_advantages(
        returns,
        groups,
        batch.turn_episode,
        ~batch.turn_format_valid,
        estimator="dapo",
        invalid_penalty=algo.invalid_penalty,
        keep=keep,
    )
    kept = float(keep.float().mean()) if batch.num_episodes else 0.0
    return TurnAdvantages(values, keep_turn), {"dapo/kept_group_frac": kept}


@register_estimator("gigpo")
def gigpo(batch: Batch, config: RunConfigLike, /) -> tuple[TurnAdvantages, dict[str, float]]:
    """GiGPO: each turn its A_E + omega A_S, with step groups from the batch's anchor step groups; keeps all."""
    algo = config.algo
    g = algo.gigpo
    values = gigpo_advantages(
        batch.turn_reward,
        batch.turn_episode,
        batch.turn_number,
        batch.episode_group,
        batch.turn_anchor_idx,
        ~batch.turn_format_valid,
        gamma=g.gamma,
        omega=g.omega,
        norm=g.norm,
        episode_stats=g.episode_stats,
        invalid_penalty=algo.invalid_penalty,
    ).to(torch.float32)
    sizes = torch.bincount(batch.turn_anchor_idx)
    metrics = {
        "gigpo/anchor_group_size_mean": float(sizes[sizes > 0].float().mean()) if sizes.numel() else 0.0,
        "gigpo/singleton_anchor_frac": float((sizes == 1).sum()) / max(int((sizes > 0).sum()), 1),
    }
    return TurnAdvantages(values, torch.ones_like(values, dtype=torch.bool)), metrics
