"""Pure tensor math of the update: advantages, GiGPO grouping, ResRL token weights and the PPO loss.

The advantage estimators are registered by name (``estimators``: ``algo.advantage`` picks one; register your own
with :func:`register_estimator`).

No Ray, no I/O, no logging, no global RNG (import-linter checks the imports). docs/design.md "Algorithms (exact)"
is the spec.
"""

from __future__ import annotations

from resrl_agent.algorithms.advantages import (
    dapo_keep_mask,
    dapo_overlong_penalty,
    group_index,
    group_normalize,
    grpo,
    nsr,
    outcome_turn_advantages,
    psr,
    w_reinforce,
)
from resrl_agent.algorithms.estimators import (
    Estimator,
    TurnAdvantages,
    estimator_names,
    get_estimator,
    register_estimator,
)
from resrl_agent.algorithms.gigpo import gigpo_advantages
from resrl_agent.algorithms.losses import agg_loss, kl_penalty, ppo_loss
from resrl_agent.algorithms.resrl import ResRLFit, ResRLParams, fit_resrl, reweight_advantages

__all__ = [
    "Estimator",
    "ResRLFit",
    "ResRLParams",
    "TurnAdvantages",
    "agg_loss",
    "dapo_keep_mask",
    "dapo_overlong_penalty",
    "estimator_names",
    "fit_resrl",
    "get_estimator",
    "gigpo_advantages",
    "group_index",
    "group_normalize",
    "grpo",
    "kl_penalty",
    "nsr",
    "outcome_turn_advantages",
    "ppo_loss",
    "psr",
    "register_estimator",
    "reweight_advantages",
    "w_reinforce",
]
