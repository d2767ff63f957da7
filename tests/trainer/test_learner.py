"""The learner on the tiny model: hook-captured states, chunked logprobs, per-turn ResRL, NaN guard, accumulation."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch

from resrl_agent.algorithms.resrl import ResRLParams, fit_resrl
from resrl_agent.config import load_config
from resrl_agent.errors import TrainerError
from resrl_agent.trainer.learner import Learner, LearnerSettings, plan_micro_batches, token_logprobs
from resrl_agent.trainer.update import apply_resrl, compute_turn_advantages
from resrl_agent.types import collate


def _reference(model: Any, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Full-vocab log_softmax, entropy and output_hidden_states[-2], all materialised (the naive way)."""
    with torch.no_grad():
        out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask.long(), output_hidden_states=True)
    logp_all = torch.log_softmax(out.logits.float(), -1)  # [B, T, V]
    rows, cols = batch.loss_mask.nonzero(as_tuple=True)
    logp = logp_all[rows, cols - 1].gather(-1, batch.input_ids[rows, cols][:, None]).squeeze(-1)
    entropy = -(logp_all[rows, cols - 1].exp() * logp_all[rows, cols - 1]).sum(-1)
    hidden = out.hidden_states[-2][rows, cols - 1]  # the penultimate decoder layer's output at t - 1
    return logp, entropy, hidden


def test_one_forward_matches_naive_reference(fresh_model: Any, episode_factory: Any) -> None:
    fresh_model.eval()
    batch = collate(episode_factory(num_groups=2, group_size=2, num_turns=3), "concat")
    learner = Learner(fresh_model, LearnerSettings(logit_chunk_tokens=3, micro_batch_tokens=40))
    ref_logp, ref_ent, ref_hidden = _reference(fresh_model, batch)
    fwd = learner.forward_responses(batch.input_ids, batch.attention_mask, batch.loss_mask, with_hidden=True)
    assert fwd.hidden is not None and fwd.hidden.shape == ref_hidden.shape == (int(batch.loss_mask.sum()), 128)
    torch.testing.assert_close(fwd.hidden, ref_hidden, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fwd.logprobs, ref_logp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fwd.entropy, ref_ent, atol=1e-4, rtol=1e-4)
    # micro-batched (rows reordered by length, trimmed) gives the same values back in row-major order
    logp, ent, hidden = learner.compute_logprobs(batch.input_ids, batch.attention_mask, batch.loss_mask)
    assert len(plan_micro_batches(batch.attention_mask.sum(1).tolist(), 40)) > 1
    torch.testing.assert_close(logp[batch.loss_mask], ref_logp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent[batch.loss_mask], ref_ent, atol=1e-4, rtol=1e-4)
    assert hidden is not None
    torch.testing.assert_close(hidden, ref_hidden, atol=1e-5, rtol=1e-5)
    assert float(logp[~batch.loss_mask].abs().sum()) == 0.0


def test_chunked_logprobs_equal_full_log_softmax_with_grad() -> None:
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=False)
    hidden = torch.randn(11, 16, requires_grad=True)
    targets = torch.randint(0, 50, (11,))
    logp, ent = token_logprobs(hidden, head, targets, chunk_tokens=4, temperature=0.7)
    full = torch.log_softmax(head(hidden).float() / 0.7, -1)
    ref = full.gather(-1, targets[:, None]).squeeze(-1)
    torch.testing.assert_close(logp, ref)
    torch.testing.assert_close(ent, -(full.exp() * full).sum(-1))
    (g_chunked,) = torch.autograd.grad(logp.sum() + ent.sum(), hidden)
    (g_full,) = torch.autograd.grad(ref.sum() - (full.exp() * full).sum(), hidden)
    torch.testing.assert_close(g_chunked, g_full)


def test_micro_batch_plan_respects_budget() -> None:
    lengths = [10, 3, 7, 10, 2, 9]
    plans = plan_micro_batches(lengths, 20)
    assert sorted(i for p in plans for i in p) == list(range(6))
    assert plans == [[0, 3], [5, 2], [1, 4]]  # longest first, ties by index; 2 x 10, 2 x 9, 2 x 3
    assert all(max(lengths[i] for i in p) * len(p) <= 20 for p in plans)
    assert plan_micro_batches([30, 5], 20) == [[0], [1]]  # too long for the budget: alone


@pytest.mark.parametrize("mode", ["window", "concat"])
def test_resrl_per_turn(fresh_model: Any, episode_factory: Any, mode: str) -> None:
    """Each span keeps its own turn's advantage: positives x lambda, negatives x w in [xi, 1], per exact group."""
    episodes = episode_factory(num_groups=2, group_size=4, num_turns=3, mode=mode)
    batch = collate(episodes, mode)  # type: ignore[arg-type]
    cfg = load_config(None, ["algo.advantage=gigpo", "algo.resrl.svd=exact"])
    turn_adv, _ = compute_turn_advantages(batch, cfg)
    token_adv = batch.expand_turn_values(turn_adv.values)
    learner = Learner(fresh_model, LearnerSettings())
    _, _, hidden = learner.compute_logprobs(batch.input_ids, batch.attention_mask, batch.loss_mask)
    out, metrics = apply_resrl(
        token_adv, batch.loss_mask, hidden, batch.group_idx, batch.episode_return[batch.row_episode], cfg.algo
    )
    mask = batch.loss_mask
    pos = mask & (token_adv > 0)
    neg = mask & (token_adv < 0)
    assert int(pos.sum()) > 0 and int(neg.sum()) > 0
    assert mode != "window" or batch.num_rows == sum(len(e.turns) for e in episodes)
    torch.testing.assert_close(out[pos], token_adv[pos] * 0.1)
    ratio = out[neg] / token_adv[neg]
    assert float(ratio.min()) >= 0.1 - 1e-6 and float(ratio.max()) <= 1 + 1e-6
    assert 0.1 <= metrics["resrl/neg_weight_mean"] <= 1.0 and metrics["resrl/groups_processed"] == 2.0
    # every span carries one turn's advantage, reweighted token by token
    for entry in range(batch.num_turns):
        span = batch.span_idx == entry
        assert torch.all(torch.sign(out[span]) == torch.sign(token_adv[span]))
    # the weights are fit_resrl's on the loss tokens (row-major, each with its episode group's id), put back in place
    rows = mask.nonzero(as_tuple=True)[0]
    direct = fit_resrl(
        hidden,
        pos[mask],
        [batch.group_ids[i] for i in batch.group_idx[rows].tolist()],
        ResRLParams.from_config(cfg.algo.resrl),
        negative=neg[mask],
    ).weights
    torch.testing.assert_close(out[neg], token_adv[neg] * direct[neg[mask]])
    assert torch.equal(out[~mask], token_adv[~mask])


def _ppo_inputs(episode_factory: Any) -> tuple[Any, torch.Tensor]:
    episodes = episode_factory(num_groups=2, group_size=4, num_turns=2)
    batch = collate(episodes, "concat")
    cfg = load_config(None, ["algo.advantage=grpo"])
    turn_adv, _ = compute_turn_advantages(batch, cfg)
    return batch, batch.expand_turn_values(turn_adv.values)


def test_gradient_accumulation_equals_one_big_batch(fresh_model: Any, episode_factory: Any) -> None:
    batch, adv = _ppo_inputs(episode_factory)
    old = batch.old_logprobs - 0.05  # ratios != 1, some clipped
    grads = []
    for budget in (10_000, 24):  # one micro-batch vs one row at a time (every row is > 12 tokens)
        learner = Learner(copy.deepcopy(fresh_model), LearnerSettings(micro_batch_tokens=budget))
        metrics = learner.ppo_step(batch.input_ids, batch.attention_mask, batch.loss_mask, old, adv, apply=False)
        grads.append(torch.cat([p.grad.flatten() for p in learner.model.parameters() if p.grad is not None]))
        assert math.isfinite(metrics["loss/total"])
    assert len(plan_micro_batches(batch.attention_mask.sum(1).tolist(), 24)) == batch.num_rows
    assert float(grads[0].abs().max()) > 0
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-4)


def test_nan_loss_skips_the_step(fresh_model: Any, episode_factory: Any) -> None:
    batch, adv = _ppo_inputs(episode_factory)
    learner = Learner(fresh_model, LearnerSettings(lr=1e-2, warmup_steps=0))
    before = copy.deepcopy(fresh_model.state_dict())
    poisoned = adv.clone()
    poisoned[batch.loss_mask.nonzero()[0].tolist()] = float("nan")  # one token's advantage
    metrics = learner.ppo_step(batch.input_ids, batch.attention_mask, batch.loss_mask, batch.old_logprobs, poisoned)
    assert metrics["guard/skipped_step"] == 1.0 and learner.skipped_steps == 1 and learner.steps == 0
    for key, value in fresh_model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert learner.scheduler.last_epoch == 0 and not learner.optimizer.state
    metrics = learner.ppo_step(batch.input_ids, batch.attention_mask, batch.loss_mask, batch.old_logprobs, adv)
    assert metrics["guard/skipped_step"] == 0.0 and learner.steps == 1
    changed = any(not torch.equal(v, before[k]) for k, v in fresh_model.state_dict().items())
    assert changed


def test_sft_step_lowers_nll(fresh_model: Any, episode_factory: Any) -> None:
    batch = collate(episode_factory(num_groups=1, group_size=2, num_turns=2), "concat")
    learner = Learner(fresh_model, LearnerSettings(lr=3e-3, warmup_steps=0))
    first = learner.sft_step(batch.input_ids, batch.attention_mask, batch.loss_mask)["sft/nll"]
    for _ in range(5):
        last = learner.sft_step(batch.input_ids, batch.attention_mask, batch.loss_mask)["sft/nll"]
    assert last < first - 0.5


def test_sft_nll_is_at_temperature_one_whatever_the_rollout_temperature(fresh_model: Any, episode_factory: Any) -> None:
    """SFT fits the model's own distribution: its NLL equals -log softmax(logits) at T = 1, not at the rollout's T."""
    batch = collate(episode_factory(num_groups=1, group_size=2, num_turns=2), "concat")
    hot = Learner(fresh_model, LearnerSettings(lr=0.0, warmup_steps=0, temperature=0.5))
    nll = hot.sft_step(batch.input_ids, batch.attention_mask, batch.loss_mask)["sft/nll"]
    with torch.no_grad():
        logits = fresh_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.float()
    rows, cols = batch.loss_mask.nonzero(as_tuple=True)
    targets = batch.input_ids[rows, cols]
    for temp, close in ((1.0, True), (0.5, False)):
        logp = torch.log_softmax(logits[rows, cols - 1] / temp, dim=-1).gather(1, targets[:, None])[:, 0]
        assert math.isclose(nll, float(-logp.mean()), rel_tol=1e-4) is close, temp
    # the PPO path keeps the rollout temperature (Contract 6)
    logp_hot, _, _ = hot.compute_logprobs(batch.input_ids, batch.attention_mask, batch.loss_mask, with_hidden=False)
    expect = torch.log_softmax(logits[rows, cols - 1] / 0.5, dim=-1).gather(1, targets[:, None])[:, 0]
    torch.testing.assert_close(logp_hot[batch.loss_mask], expect, atol=1e-5, rtol=1e-5)


def test_sft_prompt_weight_adds_the_prompt_tokens_mean_nll(fresh_model: Any, episode_factory: Any) -> None:
    """loss = mean NLL(responses) + w * mean NLL(prompt tokens), each a mean over the whole step (micro-batched)."""
    batch = collate(episode_factory(num_groups=2, group_size=2, num_turns=2), "window")
    w, lr = 0.3, 0.5
    reference = copy.deepcopy(fresh_model)
    learner = Learner(fresh_model, LearnerSettings(lr=lr, warmup_steps=0, grad_clip=1e9, micro_batch_tokens=60))
    learner.optimizer = torch.optim.SGD([p for p in fresh_model.parameters() if p.requires_grad], lr=lr)
    learner.scheduler = torch.optim.lr_scheduler.LambdaLR(learner.optimizer, lambda step: 1.0)
    assert len(plan_micro_batches(batch.attention_mask.sum(1).tolist(), 60)) > 1
    metrics = learner.sft_step(batch.input_ids, batch.attention_mask, batch.loss_mask, prompt_weight=w)

    logits = reference(input_ids=batch.input_ids, attention_mask=batch.attention_mask.long()).logits.float()
    logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, batch.input_ids[:, 1:, None])[..., 0]
    resp = batch.loss_mask[:, 1:]
    prompt = batch.attention_mask[:, 1:].bool() & ~resp
    assert 0 < int(resp.sum()) < int(prompt.sum())
    resp_nll, prompt_nll = -logp[resp].mean(), -logp[prompt].mean()
    (resp_nll + w * prompt_nll).backward()
    assert math.isclose(metrics["sft/nll"], float(resp_nll.detach()), rel_tol=1e-5)
    assert math.isclose(metrics["sft/prompt_nll"], float(prompt_nll.detach()), rel_tol=1e-5)
    after = dict(fresh_model.named_parameters())
    for name, p in reference.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(after[name].detach(), (p - lr * p.grad).detach(), atol=2e-6, rtol=1e-4)
    # w = 0 is the plain response-only step: the prompt metric is absent
    plain = Learner(copy.deepcopy(reference), LearnerSettings(lr=0.0, warmup_steps=0))
    assert "sft/prompt_nll" not in plain.sft_step(batch.input_ids, batch.attention_mask, batch.loss_mask)
    # a prompt_mask keeps only those prompt tokens in the prompt term (the response term is unchanged)
    keep = torch.rand(batch.input_ids.shape, generator=torch.Generator().manual_seed(1)) < 0.3
    sub = Learner(copy.deepcopy(reference), LearnerSettings(lr=0.0, warmup_steps=0, micro_batch_tokens=60))
    masked = sub.sft_step(batch.input_ids, batch.attention_mask, batch.loss_mask, prompt_weight=w, prompt_mask=keep)
    kept = prompt & keep[:, 1:]
    assert 0 < int(kept.sum()) < int(prompt.sum())
    assert math.isclose(masked["sft/prompt_nll"], float(-logp[kept].mean().detach()), rel_tol=1e-5)
    assert math.isclose(masked["sft/nll"], float(resp_nll.detach()), rel_tol=1e-5)
    with pytest.raises(TrainerError, match="prompt_mask has shape"):
        sub.sft_step(batch.input_ids, batch.attention_mask, batch.loss_mask, prompt_weight=w, prompt_mask=keep[:1])
