"""ResRL token weights (arXiv 2605.00380): penalise a negative token by how far it lies outside the positives.

The LM-head gradients of a positive and a negative token interfere in proportion to <h+, h->, and for h+
in the positive subspace S, |<h+, h->| <= ||h+|| ||P_S h-||. So a negative token whose hidden state lies
mostly inside S (small residual) shares meaning with correct answers and is penalised less; one far
outside S is penalised fully. The six steps below are docs/design.md "Algorithms (exact)", per group:

1. X = hidden states of the group's valid positive tokens, fp32; skip if < 4; subsample to 4096.
2. LayerNorm without affine (eps 1e-5) on positives and negatives; mu = mean of the positives.
3. V_k = top-k right singular vectors of the centred positives, k = min(rank, M - 1, d).
4. e = ||z - V_k V_k^T z||^2 / d for every negative token, z = LN(x) - mu.
5. lo, hi = linear quantiles q_low, q_high of e over the group's negative tokens;
   f = clamp((e - lo) / max(hi - lo, 1e-6), 0, 1), or f = 0.5 when hi - lo < 1e-5.
6. w = xi + (1 - xi) f, clamped to [xi, 1]. Positives, neutral tokens and skipped groups keep w = 1.

Everything here is detached tensor math (the weights scale advantages; no gradient flows through them).
The hyper-parameters are one `ResRLParams`. Randomness (subsampling, the randomized range finder) has one
source: each fitted group draws from its own generator, seeded with `derive_seed(seed, group id)`, so a group's
weights depend on the call's seed and its own tokens, never on which other groups share the call (data-parallel
ranks fit different sets of groups); no global RNG.

`fit_resrl` runs steps 1-4 (the subspace fit, the expensive part) once per group and derives from that one fit both
the weights (steps 5-6) and the per-group `AlignmentStats`. Its inputs are flat, one entry per token ([n, d] states,
[n] signs and group ids), as the learner hands over the loss tokens' states.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F  # noqa: N812

from resrl_agent.algorithms.advantages import group_index
from resrl_agent.seeding import derive_seed

SvdMode = Literal["randomized", "exact"]

__all__ = [
    "DEFAULT_SEED",
    "AlignmentStats",
    "ResRLFit",
    "ResRLParams",
    "SvdMode",
    "fit_resrl",
    "group_quantile",
    "positive_subspace",
    "reweight_advantages",
]

# docs/design.md step 1: fewer positive tokens than this cannot describe a subspace worth trusting.
MIN_POS_TOKENS = 4
LN_EPS = 1e-5
# Step 5: a quantile range below FLAT_RANGE means every negative sits at the same distance (f = 0.5).
FLAT_RANGE = 1e-5
RANGE_FLOOR = 1e-6
# Negative tokens are projected in chunks so the fp32 copy of a large group never exceeds this many rows.
NEG_CHUNK = 4096
# The seed of `fit_resrl` when the caller gives none, and of `positive_subspace` without a generator.
DEFAULT_SEED = 0


@dataclass(frozen=True)
class ResRLParams:
    """ResRL's hyper-parameters (defaults: the paper's), checked when built.

    Attributes:
        rank: the cap 64 in k = min(rank, M - 1, d).
        q_low, q_high: step 5's quantiles.
        min_weight: xi, the weight of a negative token inside the positive subspace.
        pos_scale: lambda, the factor of every positive token's advantage (`reweight_advantages`).
        max_pos_tokens: positive tokens per group kept for the subspace (a seeded subsample beyond it).
        svd: "randomized" (a range finder with `niter` power iterations and `oversample` extra columns) or
            "exact" (full SVD, deterministic).
    """

    rank: int = 64
    q_low: float = 0.2
    q_high: float = 0.8
    min_weight: float = 0.1
    pos_scale: float = 0.1
    max_pos_tokens: int = 4096
    svd: SvdMode = "randomized"
    niter: int = 4
    oversample: int = 8

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_weight <= 1.0:
            raise ValueError(f"min_weight={self.min_weight} must lie in [0, 1] (ResRL uses 0.1).")
        if not 0.0 <= self.q_low <= self.q_high <= 1.0:
            raise ValueError(f"need 0 <= q_low <= q_high <= 1; got q_low={self.q_low}, q_high={self.q_high}.")
        if self.rank < 1 or self.max_pos_tokens < MIN_POS_TOKENS or self.niter < 0 or self.oversample < 0:
            raise ValueError(
                f"need rank >= 1, max_pos_tokens >= {MIN_POS_TOKENS}, niter >= 0, oversample >= 0; got "
                f"rank={self.rank}, max_pos_tokens={self.max_pos_tokens}, niter={self.niter}, "
                f"oversample={self.oversample}."
            )
        if self.pos_scale < 0:
            raise ValueError(f"pos_scale={self.pos_scale} must be >= 0 (ResRL uses 0.1).")
        if self.svd not in ("randomized", "exact"):
            raise ValueError(f"svd={self.svd!r} is not one of 'randomized', 'exact'.")

    @classmethod
    def from_config(cls, resrl: Any) -> ResRLParams:
        """From a run config's ``algo.resrl`` section (``resrl_agent.config.ResrlConfig``, not imported: the
        algorithms stand below the config); ``oversample`` has no config key and keeps its default."""
        return cls(
            rank=resrl.rank,
            q_low=resrl.q_low,
            q_high=resrl.q_high,
            min_weight=resrl.min_weight,
            pos_scale=resrl.pos_scale,
            max_pos_tokens=resrl.max_pos_tokens,
            svd=resrl.svd,
            niter=resrl.niter,
        )


def group_quantile(values: torch.Tensor, group_idx: torch.Tensor, num_groups: int, q: float) -> torch.Tensor:
    """Linear-interpolation quantile (numpy/torch "linear") of `values` [N] within each group.

    Sort-based and vectorised: one sort by value, one stable sort by group, then a gather at
    position q * (n - 1) of each group's slice. Returns [num_groups]; NaN for an empty group.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile q={q} must lie in [0, 1].")
    by_value = torch.argsort(values, stable=True)
    order = by_value[torch.argsort(group_idx[by_value], stable=True)]
    ordered = values[order]
    count = torch.bincount(group_idx, minlength=num_groups)
    start = torch.cumsum(count, 0) - count
    pos = q * (count - 1).clamp_min(0).to(torch.float64)
    below = pos.floor().to(torch.long)
    above = torch.minimum(below + 1, (count - 1).clamp_min(0))
    frac = (pos - below.to(torch.float64)).to(values.dtype)
    if ordered.numel() == 0:
        return torch.full((num_groups,), torch.nan, dtype=values.dtype, device=values.device)
    last = ordered.numel() - 1
    v_below = ordered[(start + below).clamp(0, last)]
    v_above = ordered[(start + above).clamp(0, last)]
    out = v_below + frac * (v_above - v_below)
    return torch.where(count > 0, out, torch.full_like(out, torch.nan))


def _randomized_basis(
    centred: torch.Tensor, k: int, *, niter: int, oversample: int, generator: torch.Generator
) -> torch.Tensor:
    """Top-k right singular vectors [d, k] of `centred` [M, d] by a randomized range finder.

    Halko, Martinsson and Tropp (2011), Alg. 4.4: sketch the range with a Gaussian test matrix, refine
    with `niter` power (subspace) iterations, re-orthonormalising by QR after each product, then take
    an exact SVD of the small projected matrix. This is what `torch.pca_lowrank` does, except that the
    test matrix comes from `generator` rather than the global RNG (algorithms never touch it) and `oversample` extra
    columns sharpen the k-th direction.
    """
    m, d = centred.shape
    width = min(k + oversample, m, d)
    omega = torch.randn(d, width, generator=generator, dtype=centred.dtype, device=generator.device)
    omega = omega.to(centred.device)
    q, _ = torch.linalg.qr(centred @ omega)  # [M, width]
    for _ in range(niter):
        q, _ = torch.linalg.qr(centred.T @ q)  # [d, width]
        q, _ = torch.linalg.qr(centred @ q)  # [M, width]
    small = q.T @ centred  # [width, d]
    vh: torch.Tensor = torch.linalg.svd(small, full_matrices=False).Vh
    return vh[:k].T.contiguous()


def positive_subspace(
    centred: torch.Tensor,
    k: int,
    *,
    svd: SvdMode = "randomized",
    niter: int = 4,
    oversample: int = 8,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Step 3: an orthonormal basis V_k [d, k] of the top-k right singular directions of `centred` [M, d]."""
    if svd == "exact":
        vh: torch.Tensor = torch.linalg.svd(centred, full_matrices=False).Vh
        return vh[:k].T.contiguous()
    if svd == "randomized":
        gen = generator if generator is not None else _default_generator(centred.device)
        return _randomized_basis(centred, k, niter=niter, oversample=oversample, generator=gen)
    raise ValueError(f"svd={svd!r} is not one of 'randomized', 'exact'.")


def _default_generator(device: torch.device) -> torch.Generator:
    # A fixed seed, never the global RNG: results without a generator are reproducible.
    return torch.Generator(device=device).manual_seed(DEFAULT_SEED)


def _token_sets(
    hidden: torch.Tensor,
    positive: torch.Tensor,
    group_ids: Sequence[Hashable],
    negative: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate the inputs and return the positive and negative token masks [n] (Contract 7)."""
    if hidden.dim() != 2:
        raise ValueError(f"hidden must be [n, d], one row per token; got shape {tuple(hidden.shape)}.")
    num_tokens = hidden.shape[0]
    if len(group_ids) != num_tokens:
        raise ValueError(
            f"group_ids has {len(group_ids)} entries for {num_tokens} tokens; pass one group id per token."
        )
    if tuple(positive.shape) != (num_tokens,):
        raise ValueError(f"positive must be [n] = ({num_tokens},), one sign per token; got {tuple(positive.shape)}.")
    pos_tok = positive.to(torch.bool)
    if negative is None:
        return pos_tok, ~pos_tok
    if tuple(negative.shape) != (num_tokens,):
        raise ValueError(f"negative must be [n] = ({num_tokens},); got {tuple(negative.shape)}.")
    neg_tok = negative.to(torch.bool)
    if bool((neg_tok & pos_tok).any()):
        raise ValueError("negative overlaps positive: a token must be positive, negative or neither.")
    return pos_tok, neg_tok


@dataclass(frozen=True)
class _Energies:
    """Per negative token of the processed groups: which token it is, its group, residual and projection energy."""

    tokens: torch.Tensor  # [N] int64 index into the n tokens
    group: torch.Tensor  # [N] int64 dense group index
    residual: torch.Tensor  # [N] fp32, ||z - V V^T z||^2 / d
    projection: torch.Tensor  # [N] fp32, ||V^T z||^2 / d
    num_groups: int


def _split_by_group(
    tokens: torch.Tensor, token_group: torch.Tensor, num_groups: int
) -> tuple[torch.Tensor, list[int], list[int]]:
    """Indices of the True entries of `tokens` [n], ordered by group (stably), with per-group counts/offsets."""
    (idx,) = tokens.nonzero(as_tuple=True)
    idx = idx[torch.argsort(token_group[idx], stable=True)]
    counts = torch.bincount(token_group[idx], minlength=num_groups).tolist()
    starts = [0] * num_groups
    for g in range(1, num_groups):
        starts[g] = starts[g - 1] + counts[g - 1]
    return idx, counts, starts


def _negative_energies(
    hidden: torch.Tensor,
    pos_tok: torch.Tensor,
    neg_tok: torch.Tensor,
    group_ids: Sequence[Hashable],
    params: ResRLParams,
    seed: int,
) -> _Energies:
    """Steps 1-4 for every group; skipped groups contribute no tokens.

    Each fitted group draws from a fresh generator on hidden's device seeded with ``derive_seed(seed, group id)``.
    """
    device = hidden.device
    d = hidden.shape[-1]
    token_group, num_groups = group_index(group_ids, device=device)
    pos_idx, pos_count, pos_start = _split_by_group(pos_tok, token_group, num_groups)
    neg_idx, neg_count, neg_start = _split_by_group(neg_tok, token_group, num_groups)
    keys = list(dict.fromkeys(group_ids))  # dense group index -> group id, in group_index's first-appearance order
    max_pos_tokens = params.max_pos_tokens

    keep_idx: list[torch.Tensor] = []
    residual: list[torch.Tensor] = []
    projection: list[torch.Tensor] = []
    for g in range(num_groups):
        m, n_neg = pos_count[g], neg_count[g]
        if m < MIN_POS_TOKENS or n_neg == 0:
            continue  # no positive sample, too few positive tokens, or no valid negative token: w stays 1
        gen = torch.Generator(device=device).manual_seed(derive_seed(seed, keys[g]))
        sel = torch.arange(pos_start[g], pos_start[g] + m, device=device)
        if m > max_pos_tokens:
            # Step 1: subsample with the group's generator; sorted so the token order stays the batch order.
            pick = torch.randperm(m, generator=gen, device=gen.device)[:max_pos_tokens].to(device)
            sel = sel[pick.sort().values]
            m = max_pos_tokens
        k = min(params.rank, m - 1, d)
        if k < 1:
            continue
        # Step 2: fp32 because bf16 LayerNorm and SVD lose the small residuals that separate tokens.
        centred = F.layer_norm(hidden[pos_idx[sel]].float(), (d,), eps=LN_EPS)
        mu = centred.mean(dim=0)
        centred.sub_(mu)  # in place: the [M, d] fp32 copy is the largest tensor of the step
        basis = positive_subspace(
            centred, k, svd=params.svd, niter=params.niter, oversample=params.oversample, generator=gen
        )
        del centred
        # Step 4: residual and projection energy of each negative token, chunked to bound fp32 memory.
        for lo in range(neg_start[g], neg_start[g] + n_neg, NEG_CHUNK):
            hi = min(lo + NEG_CHUNK, neg_start[g] + n_neg)
            z = F.layer_norm(hidden[neg_idx[lo:hi]].float(), (d,), eps=LN_EPS)
            z.sub_(mu)
            coef = z @ basis  # [n, k]
            # z <- z - coef V^T in place: the residual itself (not ||z||^2 - ||coef||^2), exact to fp32 even when tiny.
            z.addmm_(coef, basis.T, alpha=-1.0)
            residual.append(torch.linalg.vector_norm(z, dim=1).square() / d)
            projection.append(coef.square().sum(dim=1) / d)
            keep_idx.append(torch.arange(lo, hi, device=device))
            del z

    if keep_idx:
        tokens = neg_idx[torch.cat(keep_idx)]
        res_all, proj_all = torch.cat(residual), torch.cat(projection)
    else:
        tokens = torch.zeros(0, dtype=torch.long, device=device)
        res_all = proj_all = torch.zeros(0, dtype=torch.float32, device=device)
    return _Energies(tokens, token_group[tokens], res_all, proj_all, num_groups)


def _weights_from(en: _Energies, num_tokens: int, device: torch.device, params: ResRLParams) -> torch.Tensor:
    """Steps 5-6 from the fitted energies: [n] float32 weights, 1 outside the processed negatives."""
    weights = torch.ones(num_tokens, dtype=torch.float32, device=device)
    if en.residual.numel() == 0:
        return weights
    # Step 5: per-group linear quantiles over the group's valid negative tokens.
    lo = group_quantile(en.residual, en.group, en.num_groups, params.q_low)
    hi = group_quantile(en.residual, en.group, en.num_groups, params.q_high)
    spread = hi - lo
    span = spread.clamp_min(RANGE_FLOOR)
    frac = ((en.residual - lo[en.group]) / span[en.group]).clamp(0.0, 1.0)
    frac = torch.where((spread < FLAT_RANGE)[en.group], torch.full_like(frac, 0.5), frac)
    # Step 6: affine map to [xi, 1]; the clamp only guards rounding.
    xi = params.min_weight
    w = (xi + (1.0 - xi) * frac).clamp(xi, 1.0)
    weights[en.tokens] = w
    return weights


def _alignment_from(en: _Energies, group_ids: Sequence[Hashable], device: torch.device) -> AlignmentStats:
    """Per-group means of the fitted residual and projection energies."""
    count = torch.zeros(en.num_groups, dtype=torch.float32, device=device).index_add_(
        0, en.group, torch.ones_like(en.residual)
    )
    res_sum = torch.zeros_like(count).index_add_(0, en.group, en.residual)
    proj_sum = torch.zeros_like(count).index_add_(0, en.group, en.projection)
    nan = torch.full_like(count, torch.nan)
    res_mean = torch.where(count > 0, res_sum / count.clamp_min(1), nan)
    proj_mean = torch.where(count > 0, proj_sum / count.clamp_min(1), nan)
    return AlignmentStats(list(dict.fromkeys(group_ids)), res_mean, proj_mean, count.to(torch.long))


@dataclass(frozen=True)
class ResRLFit:
    """What one subspace fit per group gives: the token weights and the alignment statistics of those subspaces."""

    weights: torch.Tensor  # [n] float32 on hidden's device: in [min_weight, 1] for fitted negatives, 1 elsewhere
    alignment: AlignmentStats


def fit_resrl(
    hidden: torch.Tensor,
    positive: torch.Tensor,
    group_ids: Sequence[Hashable],
    params: ResRLParams = ResRLParams(),
    *,
    negative: torch.Tensor | None = None,
    seed: int = DEFAULT_SEED,
) -> ResRLFit:
    """ResRL per group: fit the positive subspace once (steps 1-4), then the weights (5-6) and the alignment.

    Every input is flat, one entry per token (the loss tokens of a batch, in any order): no padding, no mask.

    Args:
        hidden: [n, d] penultimate-layer states of the tokens, any float dtype (Contract 8: the state that
            predicted the token). Detached here; computed in fp32.
        positive: [n] bool, the positive tokens (multi-turn: advantage > 0, Contract 7; single-turn: the tokens
            of samples with score > 0).
        group_ids: n hashables; the ResRL group of each token (its episode group).
        params: the hyper-parameters.
        negative: [n] bool; defaults to ~positive. Pass advantage < 0 to leave advantage-0 tokens out of both
            sets.
        seed: group g's subsample and randomized SVD draw from a torch.Generator on hidden's device seeded with
            ``derive_seed(seed, g's id)`` (ids that print alike seed alike), so a group's weights do not depend on
            which other groups share the call.

    Returns:
        The [n] weights and the `AlignmentStats` of the same fitted subspaces.
    """
    with torch.no_grad():
        hidden = hidden.detach()
        pos_tok, neg_tok = _token_sets(hidden, positive, group_ids, negative)
        en = _negative_energies(hidden, pos_tok, neg_tok, group_ids, params, seed)
        weights = _weights_from(en, hidden.shape[0], hidden.device, params)
        return ResRLFit(weights, _alignment_from(en, group_ids, hidden.device))


def reweight_advantages(
    token_adv: torch.Tensor, weights: torch.Tensor, positive: torch.Tensor, *, pos_scale: float = 0.1
) -> torch.Tensor:
    """ResRL's advantage transform, token by token: positives A * lambda (every group, skipped ones too), others A * w.

    Args:
        token_adv: per-token advantages, any shape ([n] for the loss tokens `fit_resrl` weighed).
        weights: the same shape, from `fit_resrl` (1 on positives and on skipped groups' tokens).
        positive: the same shape, bool: the positive mask given to `fit_resrl`.
        pos_scale: lambda (`ResRLParams.pos_scale`).

    Returns:
        The advantages in token_adv's shape and dtype.
    """
    if tuple(weights.shape) != tuple(token_adv.shape) or tuple(positive.shape) != tuple(token_adv.shape):
        raise ValueError(
            f"token_adv, weights and positive must have one shape; got {tuple(token_adv.shape)}, "
            f"{tuple(weights.shape)} and {tuple(positive.shape)}."
        )
    w = weights.to(token_adv.dtype)
    return torch.where(positive.to(torch.bool), token_adv * pos_scale, token_adv * w)


@dataclass(frozen=True)
class AlignmentStats:
    """Forward-only proxy of ResRL's bound |<h+, h->| <= ||h+|| ||P_S h-||, per group, for logging.

    Attributes:
        groups: the group ids, in first-appearance order (index g of every tensor below).
        residual_energy: [G] mean over negative tokens of ||z - P_S z||^2 / d (NaN where skipped).
        projection_energy: [G] mean over negative tokens of ||P_S z||^2 / d (NaN where skipped).
        num_negative_tokens: [G] negative tokens measured (0 where skipped).
    """

    groups: list[Hashable]
    residual_energy: torch.Tensor
    projection_energy: torch.Tensor
    num_negative_tokens: torch.Tensor

    def summary(self) -> dict[str, float]:
        """Means over the processed groups, under `resrl/` metric keys (NaN when no group was processed)."""
        done = self.num_negative_tokens > 0
        res = self.residual_energy[done]
        proj = self.projection_energy[done]
        nan = float("nan")
        return {
            "resrl/residual_energy_mean": float(res.mean()) if res.numel() else nan,
            "resrl/projection_energy_mean": float(proj.mean()) if proj.numel() else nan,
            "resrl/groups_processed": float(done.sum()),
        }
