"""PPO loss with dual clip, aggregation modes and KL estimators against hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from resrl_agent.algorithms.losses import agg_loss, kl_penalty, masked_mean, ppo_loss

SETTINGS = settings(max_examples=50, deadline=None)

# One row of four tokens, ratios r = [1.5, 0.5, 4.0, 1.1], advantages A = [1, -1, -1, 2]; clip 0.2/0.2, c = 3:
#   t0: A > 0, r = 1.5: max(-1.5, -1 * 1.2) = -1.2                       (ratio clip active)
#   t1: A < 0, r = 0.5: max(0.5, 1 * 0.8) = 0.8; min(0.8, 3) = 0.8       (ratio clip active)
#   t2: A < 0, r = 4.0: max(4.0, 1.2) = 4.0; min(4.0, 3) = 3             (dual clip active)
#   t3: A > 0, r = 1.1: max(-2.2, -2.2) = -2.2                            (inside the clip range)
RATIOS = [1.5, 0.5, 4.0, 1.1]
ADV = torch.tensor([[1.0, -1.0, -1.0, 2.0]])


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    old = torch.tensor([[-1.0, -2.0, -3.0, -0.5]])
    new = (old + torch.log(torch.tensor([RATIOS]))).requires_grad_(True)
    return new, old


def test_ppo_loss_dual_clip_by_hand() -> None:
    new, old = inputs()
    mask = torch.ones(1, 4, dtype=torch.bool)
    loss, metrics = ppo_loss(new, old, ADV, mask)
    # token-mean: (-1.2 + 0.8 + 3 - 2.2) / 4 = 0.4 / 4 = 0.1
    assert loss.item() == pytest.approx(0.1, abs=1e-6)
    assert metrics["loss/clip_frac"].item() == pytest.approx(0.5)  # t0, t1
    assert metrics["loss/clip_frac_lower"].item() == pytest.approx(0.25)  # t2
    assert metrics["loss/ratio_max"].item() == pytest.approx(4.0, rel=1e-6)
    assert metrics["loss/ratio_mean"].item() == pytest.approx(sum(RATIOS) / 4, rel=1e-6)
    # ppo_kl = mean(-log r); approx_kl = mean(r - 1 - log r).
    assert metrics["loss/ppo_kl"].item() == pytest.approx(-sum(math.log(r) for r in RATIOS) / 4, rel=1e-5)
    assert metrics["loss/approx_kl"].item() == pytest.approx(sum(r - 1 - math.log(r) for r in RATIOS) / 4, rel=1e-5)
    # Gradient: clipped tokens t0, t1, t2 give 0; t3: d(-A r)/dlogp = -A r = -2.2, divided by 4 tokens.
    loss.backward()
    assert new.grad is not None
    torch.testing.assert_close(new.grad, torch.tensor([[0.0, 0.0, 0.0, -2.2 / 4]]))


def test_ppo_loss_without_dual_clip_and_with_mask() -> None:
    new, old = inputs()
    # No dual clip: t2 stays 4 -> (-1.2 + 0.8 + 4 - 2.2) / 4 = 1.4 / 4 = 0.35.
    loss, metrics = ppo_loss(new, old, ADV, torch.ones(1, 4, dtype=torch.bool), dual_clip=None)
    assert loss.item() == pytest.approx(0.35, abs=1e-6)
    assert metrics["loss/clip_frac_lower"].item() == 0.0
    # Masking t2 out: (-1.2 + 0.8 - 2.2) / 3 = -2.6 / 3.
    loss, _ = ppo_loss(new, old, ADV, torch.tensor([[True, True, False, True]]))
    assert loss.item() == pytest.approx(-2.6 / 3, abs=1e-6)


def test_asymmetric_clip() -> None:
    # clip_high 0.28 (DAPO): t0 becomes max(-1.5, -1.28) = -1.28; the rest as before:
    # (-1.28 + 0.8 + 3 - 2.2) / 4 = 0.32 / 4 = 0.08.
    new, old = inputs()
    loss, _ = ppo_loss(new, old, ADV, torch.ones(1, 4, dtype=torch.bool), clip_high=0.28)
    assert loss.item() == pytest.approx(0.08, abs=1e-6)


def test_log_ratio_is_clamped() -> None:
    # logp - logp_old = 50 is clamped to 20: r = e^20, finite; A = -1 -> the dual clip caps the loss at 3.
    loss, metrics = ppo_loss(
        torch.tensor([[0.0]]), torch.tensor([[-50.0]]), torch.tensor([[-1.0]]), torch.ones(1, 1, dtype=torch.bool)
    )
    assert loss.item() == pytest.approx(3.0)
    assert metrics["loss/ratio_max"].item() == pytest.approx(math.exp(20), rel=1e-5)


def test_agg_modes_by_hand() -> None:
    # Row 0: [1, 2, 3]; row 1: [4, 5, x] with x masked; row 2 fully masked (ignored by the seq modes).
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 99.0], [7.0, 7.0, 7.0]])
    mask = torch.tensor([[True, True, True], [True, True, False], [False, False, False]])
    assert agg_loss(values, mask, "token-mean").item() == pytest.approx(15 / 5)  # (1+2+3+4+5) / 5 = 3
    assert agg_loss(values, mask, "seq-mean-token-sum").item() == pytest.approx((6 + 9) / 2)  # 7.5
    assert agg_loss(values, mask, "seq-mean-token-mean").item() == pytest.approx((2 + 4.5) / 2)  # 3.25
    # A global denominator (micro-batching): token-mean over a mini-batch of 10 tokens -> 15 / 10.
    assert agg_loss(values, mask, "token-mean", denominator=10).item() == pytest.approx(1.5)
    assert agg_loss(values, torch.zeros_like(mask), "token-mean").item() == 0.0
    with pytest.raises(ValueError, match="agg="):
        agg_loss(values, mask, "sum")  # type: ignore[arg-type]


def test_kl_estimators_by_hand() -> None:
    # logp = log 0.5, logp_ref = log 0.25: k1 = log 2 = 0.693147; k2 = log(2)^2 / 2 = 0.240227;
    # k3 = exp(-log 2) + log 2 - 1 = 0.5 + 0.693147 - 1 = 0.193147.
    lp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    assert kl_penalty(lp, ref, "k1").item() == pytest.approx(math.log(2), rel=1e-6)
    assert kl_penalty(lp, ref, "k2").item() == pytest.approx(math.log(2) ** 2 / 2, rel=1e-6)
    assert kl_penalty(lp, ref, "low_var_kl").item() == pytest.approx(0.5 + math.log(2) - 1, rel=1e-6)


def test_kl_and_entropy_terms_enter_the_loss() -> None:
    new, old = inputs()
    mask = torch.ones(1, 4, dtype=torch.bool)
    ref = new.detach() - math.log(2)  # every token: logp - logp_ref = log 2 -> k1 = log 2
    entropy = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # mean 2.5
    loss, metrics = ppo_loss(
        new, old, ADV, mask, ref_logprobs=ref, kl_coef=0.5, kl_kind="k1", entropy=entropy, entropy_coef=0.01
    )
    # 0.1 + 0.5 * log 2 - 0.01 * 2.5
    assert loss.item() == pytest.approx(0.1 + 0.5 * math.log(2) - 0.025, abs=1e-6)
    assert metrics["loss/kl"].item() == pytest.approx(math.log(2), rel=1e-6)
    assert metrics["loss/entropy"].item() == pytest.approx(2.5)


def test_validation() -> None:
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="dual_clip"):
        ppo_loss(x, x, x, x.bool(), dual_clip=1.0)
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        ppo_loss(x, x, torch.zeros(2, 1), x.bool())


@SETTINGS
@given(
    log_ratio=st.lists(st.floats(-3, 3), min_size=1, max_size=12),
    adv=st.floats(-2, 2),
    dual_clip=st.sampled_from([None, 3.0]),
)
def test_loss_is_bounded_by_the_clips(log_ratio: list[float], adv: float, dual_clip: float | None) -> None:
    # Per token, the clipped loss is >= -A clip(r), hence for A > 0 at least -A (1 + clip_high), and with the dual
    # clip at most -A c for A < 0.
    lr = torch.tensor([log_ratio], dtype=torch.float64)
    a = torch.full_like(lr, adv)
    mask = torch.ones_like(lr, dtype=torch.bool)
    loss, _ = ppo_loss(lr, torch.zeros_like(lr), a, mask, dual_clip=dual_clip)
    if adv > 0:
        assert loss.item() >= -adv * 1.2 - 1e-9
    if adv < 0 and dual_clip is not None:
        assert loss.item() <= -adv * dual_clip + 1e-9
    if adv == 0:
        assert loss.item() == 0.0
    assert masked_mean(lr, mask).item() == pytest.approx(sum(log_ratio) / len(log_ratio), abs=1e-9)
