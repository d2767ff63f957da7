"""The one metric reducer: every rule of METRIC_RULES on values worked out by hand."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch

from resrl_agent.trainer.learner import Learner, LearnerSettings
from resrl_agent.trainer.metrics import MetricRule, metric_rule, reduce_metrics
from resrl_agent.types import collate


def test_the_table_gives_each_key_its_rule() -> None:
    assert metric_rule("guard/skipped_step") == MetricRule("sum")
    assert metric_rule("resrl/neg_tokens") == MetricRule("sum")
    assert metric_rule("time/resrl_s") == MetricRule("max")
    assert metric_rule("loss/ratio_max") == MetricRule("max")
    assert metric_rule("resrl/neg_weight_max") == MetricRule("max")  # an extreme before what it is an extreme of
    assert metric_rule("adv/token_min") == MetricRule("min")
    assert metric_rule("adv/token_std") == MetricRule("std")
    assert metric_rule("resrl/neg_weight_std") == MetricRule("std", weight="resrl/neg_tokens")
    assert metric_rule("resrl/neg_weight_mean") == MetricRule("mean", weight="resrl/neg_tokens")
    assert metric_rule("resrl/residual_energy_mean") == MetricRule("mean", weight="resrl/groups_processed")
    assert metric_rule("loss/pg_loss") == MetricRule("mean")


def test_skipped_steps_are_counted_once() -> None:
    # Four optimizer steps of one update, the second and the fourth skipped. The update logs how many were
    # skipped (2), under the learner's own key; it used to log their mean (0.5) there and the count again as
    # guard/skipped_steps.
    steps = [
        {"guard/skipped_step": 0.0, "loss/total": 0.5, "loss/ratio_max": 1.25},
        {"guard/skipped_step": 1.0, "loss/total": math.nan, "loss/ratio_max": 1.0},
        {"guard/skipped_step": 0.0, "loss/total": 0.25, "loss/ratio_max": 1.5},
        {"guard/skipped_step": 1.0, "loss/total": math.nan, "loss/ratio_max": 1.0},
    ]
    out = reduce_metrics((s, 1.0) for s in steps)
    assert out["guard/skipped_step"] == 2.0
    assert "guard/skipped_steps" not in out
    assert out["loss/ratio_max"] == 1.5
    assert math.isnan(out["loss/total"])  # a skipped step's NaN loss is not averaged away
    out = reduce_metrics([(steps[0], 1.0), (steps[2], 1.0)])
    assert out["guard/skipped_step"] == 0.0 and out["loss/total"] == 0.375  # (0.5 + 0.25) / 2: steps weigh 1


def test_means_are_weighted_by_the_record_or_by_what_they_average() -> None:
    parts = [
        (
            {
                "loss/clip_frac": 0.5,
                "resrl/neg_tokens": 1.0,
                "resrl/neg_weight_mean": 0.2,
                "resrl/groups_processed": 2.0,
                "resrl/residual_energy_mean": 0.5,
                "rollout/entropy": 3.0,
            },
            3.0,
        ),
        (
            {
                "loss/clip_frac": 0.0,
                "resrl/neg_tokens": 3.0,
                "resrl/neg_weight_mean": 0.8,
                "resrl/groups_processed": 0.0,
                "resrl/residual_energy_mean": math.nan,  # no group fitted on this rank: weight 0, left out
            },
            1.0,
        ),
    ]
    out = reduce_metrics(parts)
    assert out["loss/clip_frac"] == pytest.approx(0.375)  # (3 * 0.5 + 1 * 0) / 4 tokens
    assert out["resrl/neg_weight_mean"] == pytest.approx(0.65)  # (1 * 0.2 + 3 * 0.8) / 4 negative tokens
    assert out["resrl/residual_energy_mean"] == 0.5  # (2 * 0.5) / 2 groups
    assert out["resrl/neg_tokens"] == 4.0 and out["resrl/groups_processed"] == 2.0  # counts add
    assert out["rollout/entropy"] == 3.0  # only one record has it


def test_a_mean_of_nothing_weighed() -> None:
    # no negative token and no fitted group on any rank: the plain mean of the values (0.0, and NaN)
    parts = [
        ({"resrl/neg_tokens": 0.0, "resrl/neg_reweighted_frac": 0.0, "resrl/groups_processed": 0.0}, 5.0),
        ({"resrl/neg_tokens": 0.0, "resrl/neg_reweighted_frac": 0.0, "resrl/groups_processed": 0.0}, 2.0),
    ]
    parts[0][0]["resrl/projection_energy_mean"] = math.nan
    parts[1][0]["resrl/projection_energy_mean"] = math.nan
    out = reduce_metrics(parts)
    assert out["resrl/neg_reweighted_frac"] == 0.0
    assert math.isnan(out["resrl/projection_energy_mean"])


def test_extremes_and_times_take_the_extreme() -> None:
    parts = [
        ({"adv/token_min": -1.0, "adv/token_max": 2.0, "time/resrl_s": 0.1}, 3.0),
        ({"adv/token_min": -3.0, "adv/token_max": 0.5, "time/resrl_s": 0.3}, 1.0),
    ]
    assert reduce_metrics(parts) == {"adv/token_min": -3.0, "adv/token_max": 2.0, "time/resrl_s": 0.3}


def test_stds_pool_over_ranks_with_different_counts() -> None:
    # Rank 0 holds the samples 1, 3 (mean 2, unbiased std sqrt(2)), rank 1 holds 4, 6, 8 (mean 6, std 2).
    # The union 1, 3, 4, 6, 8: mean 22 / 5 = 4.4; squared deviations 11.56 + 1.96 + 0.16 + 2.56 + 12.96 = 29.2,
    # so std = sqrt(29.2 / 4) = sqrt(7.3). Pooled: within 1 * 2 + 2 * 4 = 10, between 2 * 2.4^2 + 3 * 1.6^2 = 19.2.
    parts = [
        ({"adv/token_mean": 2.0, "adv/token_std": math.sqrt(2.0)}, 2.0),
        ({"adv/token_mean": 6.0, "adv/token_std": 2.0}, 3.0),
    ]
    out = reduce_metrics(parts)
    assert out["adv/token_mean"] == pytest.approx(4.4)
    assert out["adv/token_std"] == pytest.approx(math.sqrt(7.3))
    # the same samples as negative-token weights: weighted by resrl/neg_tokens, whatever the records' own weight
    neg = [
        ({"resrl/neg_tokens": 2.0, "resrl/neg_weight_mean": 2.0, "resrl/neg_weight_std": math.sqrt(2.0)}, 100.0),
        ({"resrl/neg_tokens": 3.0, "resrl/neg_weight_mean": 6.0, "resrl/neg_weight_std": 2.0}, 1.0),
    ]
    out = reduce_metrics(neg)
    assert out["resrl/neg_weight_mean"] == pytest.approx(4.4)
    assert out["resrl/neg_weight_std"] == pytest.approx(math.sqrt(7.3))
    # one sample in all: no spread to estimate
    assert reduce_metrics([({"adv/token_mean": 1.0, "adv/token_std": 0.0}, 1.0)])["adv/token_std"] == 0.0


def test_stds_pool_like_the_whole_batch() -> None:
    from resrl_agent.trainer.update import tensor_stats

    a, b = torch.tensor([0.5, -1.0, 2.0, 4.0]), torch.tensor([1.5, 0.25])
    merged = reduce_metrics([(tensor_stats("adv/token", a), 4.0), (tensor_stats("adv/token", b), 2.0)])
    whole = tensor_stats("adv/token", torch.cat([a, b]))
    assert merged.keys() == whole.keys()
    for key, value in whole.items():
        assert merged[key] == pytest.approx(value, rel=1e-12), key


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"])
def test_a_steps_pg_loss_does_not_depend_on_its_micro_batches(fresh_model: Any, episode_factory: Any, agg: str) -> None:
    # Each micro-batch reports its own pg_loss, weighted by its share of the denominator (tokens or rows): the
    # step's value is the whole mini-batch's, which (no KL, no entropy term) is its loss.
    batch = collate(episode_factory(num_groups=2, group_size=4, num_turns=2), "concat")
    adv = torch.where(batch.loss_mask, torch.linspace(-1, 1, batch.loss_mask.numel()).view_as(batch.loss_mask), 0)
    old = batch.old_logprobs - 0.05
    values = []
    for budget in (10_000, 24):  # one micro-batch, then one row each
        learner = Learner(copy.deepcopy(fresh_model), LearnerSettings(micro_batch_tokens=budget, agg=agg))
        metrics = learner.ppo_step(batch.input_ids, batch.attention_mask, batch.loss_mask, old, adv, apply=False)
        assert metrics["loss/pg_loss"] == pytest.approx(metrics["loss/total"], rel=1e-6)
        values.append(metrics)
    assert values[1]["loss/pg_loss"] == pytest.approx(values[0]["loss/pg_loss"], rel=1e-5)
    assert values[1]["loss/clip_frac"] == pytest.approx(values[0]["loss/clip_frac"], abs=1e-6)
