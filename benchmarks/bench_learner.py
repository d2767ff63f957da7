"""Learner step: a naive HF step vs ours (ResRL on and off), side by side in one run; no Ray.

GPU (``--device cuda``, the issue's setting): a Qwen3-0.6B-shaped model built from config (hidden 1024, 28 layers,
vocab 151936, bf16, gradient checkpointing), 8 sequences of 512 prompt tokens + a response of U(1024, 2048) tokens
(seed 0), groups of 4.
CPU (``--device cpu``, a check that runs anywhere): the same shape family, scaled down (``--scale small``).

- naive: padded micro-batches of 4, full fp32 logits [B, T, V], ``output_hidden_states=True`` (every layer kept),
  hidden states of the penultimate layer taken from that tuple, ResRL weights, PPO loss.
- ours: ``Learner``: rows bucketed by length under a token budget, the LM head only at response positions in
  checkpointed chunks, the penultimate state from a hook on that one layer; ResRL on, then off.

Prints seconds per step, peak memory (CUDA: max allocated; CPU: peak RSS growth), valid-token throughput and
the ratios ours/naive, and ResRL's share of our step.
"""

from __future__ import annotations

import argparse
import gc
import resource
import time
from typing import Any

import torch

from resrl_agent.algorithms.losses import ppo_loss
from resrl_agent.algorithms.resrl import fit_resrl, reweight_advantages
from resrl_agent.trainer.learner import Learner, LearnerSettings

SHAPES = {
    "qwen3-0.6b": {"hidden": 1024, "inter": 3072, "layers": 28, "heads": 16, "kv": 8, "vocab": 151936},
    "small": {"hidden": 256, "inter": 768, "layers": 4, "heads": 4, "kv": 2, "vocab": 32000},
}


def build_model(shape: str, device: str, dtype: torch.dtype, grad_ckpt: bool) -> Any:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    s = SHAPES[shape]
    config = Qwen3Config(
        hidden_size=s["hidden"],
        intermediate_size=s["inter"],
        num_hidden_layers=s["layers"],
        num_attention_heads=s["heads"],
        num_key_value_heads=s["kv"],
        head_dim=s["hidden"] // s["heads"],
        vocab_size=s["vocab"],
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config).to(device=device, dtype=dtype)
    if grad_ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def make_batch(n: int, prompt: int, lo: int, hi: int, vocab: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(lo, hi + 1, (n,), generator=gen).tolist()
    width = prompt + max(lengths)
    ids = torch.randint(5, vocab, (n, width), generator=gen)
    attn = torch.zeros(n, width, dtype=torch.bool)
    mask = torch.zeros(n, width, dtype=torch.bool)
    for i, length in enumerate(lengths):
        attn[i, : prompt + length] = True
        mask[i, prompt : prompt + length] = True
    ids[~attn] = 0
    old = torch.full((n, width), -2.0) * mask
    adv = torch.where(torch.arange(n) % 2 == 0, 1.0, -1.0)[:, None] * mask  # half the samples right per group
    return ids, attn, mask, old, adv, torch.tensor(lengths)


def naive_step(model: Any, opt: Any, batch: tuple[torch.Tensor, ...], groups: list[int], resrl: bool) -> float:
    ids, attn, mask, old, adv, _ = batch
    dev = next(model.parameters()).device
    start = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    denom = float(mask.sum())
    # ResRL needs whole groups: one no-grad pass for the states (as a naive trainer would), then the loss passes.
    weights = torch.ones_like(adv)
    if resrl:
        states = []
        with torch.no_grad():
            for s in range(0, ids.shape[0], 4):
                out = model(
                    input_ids=ids[s : s + 4].to(dev), attention_mask=attn[s : s + 4].to(dev), output_hidden_states=True
                )
                h = torch.zeros_like(out.hidden_states[-2])
                h[:, 1:] = out.hidden_states[-2][:, :-1]
                states.append(h.float().cpu())
                del out
        hidden = torch.cat(states)
        positive = adv > 0
        rows, _ = mask.nonzero(as_tuple=True)
        tok_w = fit_resrl(
            hidden[mask], positive[mask], [groups[r] for r in rows.tolist()], negative=(adv < 0)[mask]
        ).weights
        weights[mask] = tok_w
        adv = reweight_advantages(adv, weights, positive)
    for s in range(0, ids.shape[0], 4):
        out = model(input_ids=ids[s : s + 4].to(dev), attention_mask=attn[s : s + 4].to(dev), output_hidden_states=True)
        logits = out.logits.float()  # [4, T, V] fp32: the naive way
        logp = torch.zeros(logits.shape[:2], device=dev)
        logp[:, 1:] = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[s : s + 4, 1:, None].to(dev)).squeeze(-1)
        loss, _ = ppo_loss(
            logp, old[s : s + 4].to(dev), adv[s : s + 4].to(dev), mask[s : s + 4].to(dev), denominator=denom
        )
        loss.backward()
        del out, logits, logp
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    _sync(dev)
    return time.perf_counter() - start


def ours_step(learner: Learner, batch: tuple[torch.Tensor, ...], groups: list[int], resrl: bool) -> tuple[float, float]:
    ids, attn, mask, _old, adv, _ = batch
    start = time.perf_counter()
    old, _, hidden = learner.compute_logprobs(ids, attn, mask, with_hidden=resrl)
    resrl_s = 0.0
    if resrl:
        t0 = time.perf_counter()
        positive = (adv > 0)[mask]
        rows, _ = mask.nonzero(as_tuple=True)
        tok_group = [groups[r] for r in rows.tolist()]
        w = fit_resrl(
            hidden, positive.to(hidden.device), tok_group, negative=(adv < 0)[mask].to(hidden.device)
        ).weights.cpu()
        adv = adv.clone()
        adv[mask] = reweight_advantages(adv[mask], w, positive)
        resrl_s = time.perf_counter() - t0
    learner.ppo_step(ids, attn, mask, old, adv)
    _sync(learner.device)
    return time.perf_counter() - start, resrl_s


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_reset(device: str) -> float:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        return 0.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MB (peak so far; growth is reported)


def _peak(device: str, base: float) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base) / 1024  # GB of peak RSS growth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shape", default=None, help="qwen3-0.6b (GPU default) or small (CPU default)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant (after one warm-up)")
    parser.add_argument("--micro-batch-tokens", type=int, default=None)
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    shape = args.shape or ("qwen3-0.6b" if cuda else "small")
    dtype = torch.bfloat16 if cuda else torch.float32
    if cuda:
        n, prompt, lo, hi = 8, 512, 1024, 2048
    else:
        n, prompt, lo, hi = 8, 64, 128, 256
    vocab = SHAPES[shape]["vocab"]
    batch = make_batch(n, prompt, lo, hi, vocab)
    groups = [i // 4 for i in range(n)]
    valid = int(batch[2].sum())
    budget = args.micro_batch_tokens or (4 * (prompt + hi) * 2 if cuda else 4096)
    print(f"device {args.device}, shape {shape}, dtype {dtype}, {n} rows, {valid} response tokens, budget {budget}")

    results = {}
    model = build_model(shape, args.device, dtype, grad_ckpt=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    naive_step(model, opt, batch, groups, True)
    base = _peak_reset(args.device)
    times = [naive_step(model, opt, batch, groups, True) for _ in range(args.steps)]
    results["naive (resrl on)"] = (sum(times) / len(times), _peak(args.device, base), 0.0)
    del model, opt
    for label, resrl in (("ours (resrl on)", True), ("ours (resrl off)", False)):
        model = build_model(shape, args.device, dtype, grad_ckpt=True)
        learner = Learner(model, LearnerSettings(lr=1e-6, micro_batch_tokens=budget, logit_chunk_tokens=1024))
        ours_step(learner, batch, groups, resrl)
        base = _peak_reset(args.device)
        runs = [ours_step(learner, batch, groups, resrl) for _ in range(args.steps)]
        step_s = sum(r[0] for r in runs) / len(runs)
        results[label] = (step_s, _peak(args.device, base), sum(r[1] for r in runs) / len(runs))
        del model, learner
    naive_s, naive_mem, _ = results["naive (resrl on)"]
    unit = "GB peak allocated" if cuda else "GB peak RSS growth"
    for label, (step_s, mem, resrl_s) in results.items():
        print(
            f"{label:>18}: {step_s:7.3f} s/step  {valid / step_s:9.0f} valid tok/s  {mem:6.2f} {unit}  "
            f"time x{naive_s / step_s:4.2f} vs naive  memory {mem / naive_mem if naive_mem else float('nan'):4.2f}x"
            + (f"  resrl {resrl_s:.3f} s ({100 * resrl_s / step_s:.1f}% of step)" if resrl_s else "")
        )
    on, off = results["ours (resrl on)"][0], results["ours (resrl off)"][0]
    print(f"ResRL cost, on vs off: {100 * (on - off) / off:+.1f}% of the step")


if __name__ == "__main__":
    main()
