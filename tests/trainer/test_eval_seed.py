"""eval.seed: runs of different seeds play the very same held-out episodes (tasks, reset and sampling seeds)."""

from __future__ import annotations

from resrl_agent.config import load_config
from resrl_agent.run.settings import rollout_settings
from resrl_agent.run.tasks import eval_tasks, held_out_split

BASE = ["env.id=resrl/Echo-v0", "eval.num_tasks=5"]


def test_eval_seed_fixes_the_held_out_draw_across_run_seeds() -> None:
    a = load_config(None, [*BASE, "seed=0", "eval.seed=7"])
    b = load_config(None, [*BASE, "seed=1", "eval.seed=7"])
    assert a.eval_seed == b.eval_seed == 7
    assert eval_tasks(a, 5, 2) == eval_tasks(b, 5, 2)
    assert rollout_settings(a, evaluation=True).seed == rollout_settings(b, evaluation=True).seed == 7
    # training rollouts keep the run's own seed
    assert (rollout_settings(a).seed, rollout_settings(b).seed) == (0, 1)


def test_without_eval_seed_the_run_seed_draws_the_held_out_set() -> None:
    a = load_config(None, [*BASE, "seed=0"])
    b = load_config(None, [*BASE, "seed=1"])
    assert (a.eval_seed, b.eval_seed) == (0, 1)
    assert [t.seed for t in eval_tasks(a, 5)] != [t.seed for t in eval_tasks(b, 5)]
    assert rollout_settings(b, evaluation=True).seed == 1
    sampling = rollout_settings(b, evaluation=True).sampling
    assert (sampling.temperature, sampling.top_p) == (b.eval.temperature, b.eval.top_p)


def test_held_out_split_prefers_the_eval_sections_own_split() -> None:
    """``eval.split`` is an evaluation's override (``resrl-agent eval CONFIG eval.split=valid``), so it wins over
    the env's ``eval_split``; the trainer's comparison and ``eval`` read the same rule."""
    assert held_out_split(load_config(None, ["env.eval_split=valid", "eval.split=test"])) == "test"
    assert held_out_split(load_config(None, ["env.eval_split=valid"])) == "valid"
    assert held_out_split(load_config(None, ["eval.split=test"])) == "test"
    assert held_out_split(load_config(None, [])) is None
