"""From collated episodes to the PPO step's inputs: advantages over exact groups, then ResRL per turn.

After :func:`~resrl_agent.types.collate` the update reads the ``Batch`` alone: the estimator that ``algo.advantage``
names (:mod:`resrl_agent.algorithms.estimators`) turns it into one advantage per turn.

Groups are exact: advantages are computed over every episode of the batch before any micro-batching, and the
ResRL subspace of a group is fitted on all of its positive tokens, gathered from the whole batch's forward
(verl's release fits it per micro-batch, which cuts groups; docs/design.md asks us to do it right).

Per turn (Contract 7): every assistant span carries its own turn's advantage, so in ``window`` mode each turn is a
row (a sample) and in ``concat`` mode the token weights apply span by span inside one row. Positive tokens are
the valid tokens with advantage > 0, negative ones advantage < 0 (``algo.resrl.positive=advantage``), or all tokens
of an episode whose return is > 0 (``score``, the paper's single-turn rule).

Data parallel (``learner.parallel``, :mod:`resrl_agent.trainer.distributed`): every rank gets the whole episode list,
collates it and computes the advantages over it; then it keeps the rows of its episode groups (whole groups,
balanced by tokens), recomputes their logprobs and states, fits ResRL on them, and takes part in every PPO
mini-batch with its rows of it. The update equals the single learner's on the whole batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from resrl_agent.algorithms.estimators import TurnAdvantages, get_estimator
from resrl_agent.algorithms.resrl import DEFAULT_SEED, ResRLParams, fit_resrl, reweight_advantages
from resrl_agent.config import AlgoConfig, RunConfig
from resrl_agent.errors import TrainerError
from resrl_agent.trainer.distributed import assign_groups
from resrl_agent.trainer.learner import Learner
from resrl_agent.trainer.metrics import reduce_metrics
from resrl_agent.types import Batch, Episode, collate

__all__ = ["apply_resrl", "compute_turn_advantages", "tensor_stats", "train_on_episodes"]


def tensor_stats(prefix: str, values: torch.Tensor) -> dict[str, float]:
    """mean/std/min/max of a 1-D tensor under ``prefix/``; empty tensors give nothing."""
    if values.numel() == 0:
        return {}
    v = values.double()
    return {
        f"{prefix}_mean": float(v.mean()),
        f"{prefix}_std": float(v.std()) if v.numel() > 1 else 0.0,
        f"{prefix}_min": float(v.min()),
        f"{prefix}_max": float(v.max()),
    }


def compute_turn_advantages(batch: Batch, config: RunConfig) -> tuple[TurnAdvantages, dict[str, float]]:
    """Advantages of every turn with the estimator ``algo.advantage`` names, over the batch's exact groups.

    The estimator (:mod:`resrl_agent.algorithms.estimators`) reads the batch alone; this checks that it gave one
    advantage and one keep flag per turn and adds ``adv/invalid_turn_frac``, the turns whose output did not parse.
    """
    turn_adv, metrics = get_estimator(config.algo.advantage)(batch, config)
    n = batch.num_turns
    if tuple(turn_adv.values.shape) != (n,) or tuple(turn_adv.keep.shape) != (n,) or turn_adv.keep.dtype != torch.bool:
        raise TrainerError(
            f"estimator {config.algo.advantage!r} returned values of shape {tuple(turn_adv.values.shape)} and keep of "
            f"shape {tuple(turn_adv.keep.shape)} ({turn_adv.keep.dtype}); a batch of {n} turns needs [{n}] and "
            f"[{n}] bool"
        )
    invalid = float((~batch.turn_format_valid).float().mean()) if n else 0.0
    return turn_adv, {"adv/invalid_turn_frac": invalid, **metrics}


def apply_resrl(
    token_adv: torch.Tensor,
    loss_mask: torch.Tensor,
    hidden: torch.Tensor | None,
    row_group: torch.Tensor,
    row_score: torch.Tensor,
    algo: AlgoConfig,
    *,
    seed: int = DEFAULT_SEED,
    group_names: Sequence[str] | None = None,
    alignment: bool = True,
) -> tuple[torch.Tensor, dict[str, float]]:
    """ResRL's token weights per group, then the advantage transform; returns reweighted [B, T] advantages.

    One subspace fit per group (:func:`~resrl_agent.algorithms.resrl.fit_resrl`, with the
    :class:`~resrl_agent.algorithms.resrl.ResRLParams` of ``algo.resrl``) gives both the weights and the ``resrl/``
    alignment metrics.

    Args:
        token_adv: [B, T] per-token advantages (each span its own turn's advantage).
        loss_mask: [B, T] bool, the tokens that enter the loss.
        hidden: [n, d] penultimate states of ``loss_mask``'s tokens in row-major order (Contract 8 alignment),
            from the learner's forward.
        row_group: [B] long, the ResRL group of each row (its episode group).
        row_score: [B] float, the row's episode return (``algo.resrl.positive=score``: positive when > 0).
        seed, group_names: the randomness (subsampling, randomized PCA) of group g comes from a generator seeded
            with ``derive_seed(seed, group_names[g])`` (``g`` itself without names), so a group's weights do not
            depend on which other groups share the call (data-parallel ranks fit different groups).
        alignment: add the alignment metrics (``resrl/residual_energy_mean`` etc.) of the fitted subspaces.
    """
    if algo.resrl.reweight == "none":
        return token_adv, {}
    params = ResRLParams.from_config(algo.resrl)
    if hidden is None:
        raise ValueError("algo.resrl.reweight=resrl needs the penultimate hidden states of the loss tokens")
    n = int(loss_mask.sum())
    if hidden.shape[0] != n:
        raise ValueError(f"hidden has {hidden.shape[0]} rows for {n} loss tokens")
    if algo.resrl.positive == "advantage":
        positive = loss_mask & (token_adv > 0)
        negative = loss_mask & (token_adv < 0)
    else:
        row_pos = row_score > 0  # [B]
        positive = loss_mask & row_pos[:, None]
        negative = loss_mask & ~row_pos[:, None]
    # ResRL works on the loss tokens alone, flat and in row-major order: the order of ``hidden``'s rows.
    rows, _ = loss_mask.nonzero(as_tuple=True)
    token_group = row_group[rows].tolist()  # the ResRL group of a token: its episode group
    tok_adv = token_adv[loss_mask]
    tok_pos = positive[loss_mask]
    tok_neg = negative[loss_mask]
    dev = hidden.device
    fit = fit_resrl(
        hidden,
        tok_pos.to(dev),
        token_group if group_names is None else [group_names[g] for g in token_group],
        params,
        negative=tok_neg.to(dev),
        seed=seed,
    )
    w_tok = fit.weights.cpu()
    out = token_adv.clone()
    out[loss_mask] = reweight_advantages(tok_adv, w_tok, tok_pos, pos_scale=params.pos_scale)
    metrics: dict[str, float] = {
        "resrl/pos_tokens": float(tok_pos.sum()),
        "resrl/neg_tokens": float(tok_neg.sum()),
    }
    neg_w = w_tok[tok_neg]
    metrics.update(tensor_stats("resrl/neg_weight", neg_w))
    metrics["resrl/neg_reweighted_frac"] = float((neg_w < 1).float().mean()) if neg_w.numel() else 0.0
    if alignment:
        metrics.update(fit.alignment.summary())
    return out, metrics


def train_on_episodes(
    learner: Learner, episodes: Sequence[Episode], config: RunConfig, *, pad_id: int = 0
) -> dict[str, float]:
    """One RL update: collate, advantages over exact groups, recomputed old logprobs + hidden states, ResRL, PPO.

    The old logprobs and the hidden states come from one forward of the current policy over the whole batch
    (Contract 6: the learner recomputes them); the PPO mini-batches then reuse them, so ResRL's groups are never
    cut by a micro-batch.

    With ``learner.parallel`` every rank passes the same ``episodes`` and runs this together with the others:
    each rank keeps the rows of its episode groups (:func:`~resrl_agent.trainer.distributed.assign_groups`);
    the returned metrics are the whole batch's on every rank.
    """
    par = learner.parallel
    mode = config.rollout.context_mode
    # An episode that ended with env_error says nothing about the policy (its env crashed, hung or lost its
    # server): it enters neither the group statistics nor the loss; the rest of its group is trained on as usual.
    errored = sum(e.stop_reason == "env_error" for e in episodes)
    episodes = [e for e in episodes if e.stop_reason != "env_error"]
    if not episodes:
        return {"update/env_error_episodes": float(errored), "update/rows": 0.0, "update/skipped": 1.0}
    batch = collate(episodes, mode, pad_id=pad_id)
    turn_adv, metrics = compute_turn_advantages(batch, config)
    metrics["update/env_error_episodes"] = float(errored)
    metrics.update(tensor_stats("adv/turn", turn_adv.values[turn_adv.keep]))
    token_adv = batch.expand_turn_values(turn_adv.values)
    keep_tok = batch.loss_mask & turn_adv.keep[batch.span_idx.clamp(min=0)]
    rows = keep_tok.any(dim=1).nonzero(as_tuple=True)[0]
    metrics["update/rows"] = float(rows.numel())
    metrics["update/tokens"] = float(keep_tok.sum())
    if rows.numel() == 0:
        metrics["update/skipped"] = 1.0
        return metrics
    # This rank's rows (positions into ``rows``): whole episode groups, balanced by loss tokens.
    if par is None:
        mine = torch.arange(rows.numel())
    else:
        owner = assign_groups(batch.group_idx[rows].tolist(), keep_tok[rows].sum(dim=1).tolist(), par.world_size)
        mine = torch.tensor([i for i, r in enumerate(owner) if r == par.rank], dtype=torch.long)
    local_rows = rows[mine]
    width = int(batch.attention_mask[local_rows].sum(dim=1).max()) if local_rows.numel() else 1
    ids = batch.input_ids[local_rows, :width]
    attn = batch.attention_mask[local_rows, :width]
    mask = keep_tok[local_rows, :width]
    adv = token_adv[local_rows, :width]
    rollout_logp = batch.old_logprobs[local_rows, :width]
    resrl_on = config.algo.resrl.reweight == "resrl"
    local: dict[str, float] = {}
    start = time.perf_counter()
    old_logp, entropy, hidden = learner.compute_logprobs(ids, attn, mask, with_hidden=resrl_on)
    local["time/old_logprob_s"] = time.perf_counter() - start
    has_tokens = bool(mask.any())
    if has_tokens:
        # Contract 6: the rollout's logprobs and the learner's recomputation agree up to numerics (same weights).
        local["rollout/logprob_abs_diff"] = float((old_logp - rollout_logp)[mask].abs().mean())
        local["rollout/entropy"] = float(entropy[mask].mean())
    start = time.perf_counter()
    if resrl_on:
        # one draw per update on every rank (generators stay in step); each group's randomness derives from it
        resrl_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=learner.generator))
        if has_tokens:
            adv, resrl_metrics = apply_resrl(
                adv,
                mask,
                hidden,
                batch.group_idx[local_rows],
                batch.episode_return[batch.row_episode[local_rows]],
                config.algo,
                seed=resrl_seed,
                group_names=batch.group_ids,
            )
            local.update(resrl_metrics)
    local["time/resrl_s"] = time.perf_counter() - start
    local.update(tensor_stats("adv/token", adv[mask]))
    tokens = float(mask.sum())
    metrics.update(local if par is None else reduce_metrics(par.gather((local, tokens))))
    ref = None
    if config.algo.loss.kl_coef > 0:
        ref = learner.reference_logprobs(ids, attn, mask)
    # position in ``rows`` -> index into this rank's tensors (-1: another rank's row)
    to_local = torch.full((rows.numel(),), -1, dtype=torch.long)
    to_local[mine] = torch.arange(mine.numel())
    steps: list[dict[str, float]] = []
    num_mini = min(config.trainer.mini_batches, int(rows.numel()))
    for _ in range(config.trainer.ppo_epochs):
        order = torch.randperm(int(rows.numel()), generator=learner.generator)  # the same on every rank
        for chunk in torch.tensor_split(order, num_mini):
            sel = to_local[chunk.sort().values]
            sel = sel[sel >= 0]
            steps.append(
                learner.ppo_step(
                    ids[sel],
                    attn[sel],
                    mask[sel],
                    old_logp[sel],
                    adv[sel],
                    ref_logprobs=None if ref is None else ref[sel],
                )
            )
    metrics.update(reduce_metrics((step, 1.0) for step in steps))  # guard/skipped_step: how many were skipped
    return metrics
