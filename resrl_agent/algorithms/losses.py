"""The one policy loss: PPO clip with dual clip, plus optional KL-to-reference and entropy terms.

With r = exp(clamp(logp - logp_old, -20, 20)) per token and advantage A:

    l_clip = max(-A r, -A clip(r, 1 - clip_low, 1 + clip_high))            (PPO, asymmetric as in DAPO)
    l      = min(l_clip, -A c)  where A < 0,  l_clip  where A >= 0          (dual clip, c = dual_clip)

The dual clip bounds the loss of a negative-advantage token whose ratio has run far above 1, so a
single stale token cannot dominate the update. ResRL and the advantage estimators only reshape A
before this loss; there is no second loss.
"""

from __future__ import annotations

from typing import Literal

import torch

Agg = Literal["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"]
KlKind = Literal["low_var_kl", "k1", "k2"]

__all__ = ["Agg", "KlKind", "agg_loss", "kl_penalty", "masked_mean", "ppo_loss"]

LOG_RATIO_CLAMP = 20.0
# low_var_kl (k3) is clamped as well: exp of a large log-ratio gap would otherwise swamp the loss.
LOW_VAR_KL_CLAMP = 10.0


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` over True entries of `mask` (same shape); 0 when the mask is empty."""
    keep = mask.to(torch.bool)
    total = torch.where(keep, values, torch.zeros_like(values)).sum()
    return total / keep.sum().clamp_min(1).to(values.dtype)


def agg_loss(
    values: torch.Tensor, mask: torch.Tensor, agg: Agg = "token-mean", *, denominator: float | None = None
) -> torch.Tensor:
    """Reduce per-token losses [B, T] to a scalar.

    Modes:
        "token-mean": sum over valid tokens / number of valid tokens (DAPO, the ResRL runs).
        "seq-mean-token-sum": per-row sum of valid tokens, averaged over rows with any valid token.
        "seq-mean-token-mean": per-row token mean, averaged over rows with any valid token.

    Args:
        denominator: replaces the count (tokens for token-mean, rows otherwise). Pass the whole
            mini-batch's count when a step is split into micro-batches, so that the accumulated loss is
            exactly the mini-batch loss (the release divides by each micro-batch's own count).
    """
    if values.shape != mask.shape or values.dim() != 2:
        raise ValueError(f"values and mask must both be [B, T]; got {tuple(values.shape)} and {tuple(mask.shape)}.")
    keep = mask.to(torch.bool)
    masked = torch.where(keep, values, torch.zeros_like(values))
    if agg == "token-mean":
        count = keep.sum().clamp_min(1).to(values.dtype)
        return masked.sum() / (count if denominator is None else denominator)
    per_row_tokens = keep.sum(dim=-1)
    rows = (per_row_tokens > 0).sum().clamp_min(1).to(values.dtype)
    if agg == "seq-mean-token-sum":
        per_row = masked.sum(dim=-1)
    elif agg == "seq-mean-token-mean":
        per_row = masked.sum(dim=-1) / per_row_tokens.clamp_min(1).to(values.dtype)
    else:
        raise ValueError(f"agg={agg!r} is not one of 'token-mean', 'seq-mean-token-sum', 'seq-mean-token-mean'.")
    return per_row.sum() / (rows if denominator is None else denominator)


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: KlKind = "low_var_kl") -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) from tokens sampled by pi (Schulman's k1, k2, k3).

    "k1": logp - logp_ref (unbiased, can be negative); "k2": (logp - logp_ref)^2 / 2;
    "low_var_kl" (k3): exp(logp_ref - logp) - (logp_ref - logp) - 1, always >= 0, clamped to 10.
    """
    diff = logprobs - ref_logprobs
    if kind == "k1":
        return diff
    if kind == "k2":
        return 0.5 * diff.square()
    if kind == "low_var_kl":
        back = (-diff).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
        return (back.exp() - back - 1).clamp(-LOW_VAR_KL_CLAMP, LOW_VAR_KL_CLAMP)
    raise ValueError(f"kind={kind!r} is not one of 'low_var_kl', 'k1', 'k2'.")


def ppo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = 3.0,
    agg: Agg = "token-mean",
    ref_logprobs: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    kl_kind: KlKind = "low_var_kl",
    entropy: torch.Tensor | None = None,
    entropy_coef: float = 0.0,
    denominator: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO clipped policy loss with dual clip, aggregated by `agg`; optional KL and entropy terms.

    Args:
        logprobs: [B, T] log-probs of the taken tokens under the current policy (with grad).
        old_logprobs: [B, T] the same under the policy that produced the advantages (no grad).
        advantages: [B, T] per-token advantages (after any ResRL reweighting).
        mask: [B, T] bool, tokens that enter the loss.
        clip_low, clip_high: ratio clip 1 - clip_low .. 1 + clip_high (DAPO: 0.2 / 0.28).
        dual_clip: c > 1, applied only where A < 0; None turns it off.
        ref_logprobs, kl_coef, kl_kind: adds kl_coef * agg(kl_penalty) when ref_logprobs is given.
        entropy, entropy_coef: [B, T] token entropies; subtracts entropy_coef * agg(entropy).
        denominator: see `agg_loss`.

    Returns:
        (loss, metrics): metrics are detached scalars, token means over `mask`: `loss/pg_loss`,
        `loss/clip_frac` (the ratio clip was active), `loss/clip_frac_lower` (the dual clip was
        active), `loss/ppo_kl` (mean of logp_old - logp), `loss/approx_kl` (k3 of the same ratio),
        `loss/ratio_mean`, `loss/ratio_max`, and `loss/kl`, `loss/entropy` when given.
    """
    if not (logprobs.shape == old_logprobs.shape == advantages.shape == mask.shape) or logprobs.dim() != 2:
        raise ValueError(
            "logprobs, old_logprobs, advantages and mask must all be [B, T]; got "
            f"{tuple(logprobs.shape)}, {tuple(old_logprobs.shape)}, {tuple(advantages.shape)}, {tuple(mask.shape)}."
        )
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip={dual_clip} must be > 1 (the paper uses 3.0), or None to turn it off.")
    if clip_low < 0 or clip_high < 0:
        raise ValueError(f"clip_low={clip_low} and clip_high={clip_high} must be >= 0.")
    keep = mask.to(torch.bool)
    log_ratio = (logprobs - old_logprobs).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    ratio = log_ratio.exp()
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    per_token = torch.maximum(unclipped, clipped)
    dual_active = torch.zeros_like(keep)
    if dual_clip is not None:
        cap = -advantages * dual_clip
        negative = advantages < 0
        dual_active = negative & (per_token > cap)
        per_token = torch.where(negative, torch.minimum(per_token, cap), per_token)
    pg_loss = agg_loss(per_token, keep, agg, denominator=denominator)
    loss = pg_loss

    metrics: dict[str, torch.Tensor] = {}
    if ref_logprobs is not None:
        kl = kl_penalty(logprobs, ref_logprobs, kl_kind)
        if kl_coef:
            loss = loss + kl_coef * agg_loss(kl, keep, agg, denominator=denominator)
        metrics["loss/kl"] = masked_mean(kl.detach(), keep)
    if entropy is not None:
        if entropy_coef:
            loss = loss - entropy_coef * agg_loss(entropy, keep, agg, denominator=denominator)
        metrics["loss/entropy"] = masked_mean(entropy.detach(), keep)

    with torch.no_grad():
        lr = log_ratio.detach()
        r = ratio.detach()
        metrics["loss/pg_loss"] = pg_loss.detach()
        metrics["loss/clip_frac"] = masked_mean((clipped > unclipped).to(r.dtype), keep)
        metrics["loss/clip_frac_lower"] = masked_mean(dual_active.to(r.dtype), keep)
        metrics["loss/ppo_kl"] = masked_mean(-lr, keep)
        metrics["loss/approx_kl"] = masked_mean(r - 1 - lr, keep)
        metrics["loss/ratio_mean"] = masked_mean(r, keep)
        # ratio > 0, so filling with 0 gives the max over valid tokens (and 0 with none) without a host sync.
        metrics["loss/ratio_max"] = torch.where(keep, r, torch.zeros_like(r)).max()
    return loss, metrics
