"""The algorithm comparison on the main job (BabyAI GoToObj, tiny model): GRPO, GiGPO, NSR, W-REINFORCE, GiGPO +
ResRL (lambda 0.1, the paper's) and GiGPO + ResRL (lambda 1), over several seeds, from one shared SFT start.

1. One SFT warm start (the config's ``trainer.sft_*`` recipe, seed ``--sft-seed``) into RUN_ROOT/sft, exported as a
   Hugging Face dir (RUN_ROOT/sft/policy) that every RL run starts from (``model.path`` = it, no SFT of its own).
   Reused when it exists and was made with the same SFT settings (unless ``--fresh``).
2. Every variant x every seed: a fresh run dir RUN_ROOT/<variant>/seed<k> with the config's RL recipe
   (``trainer.iterations`` etc. unchanged unless ``--iterations``/``--set``). A run whose results.json exists and
   was made with the same config, SFT weights and eval settings is skipped, so the benchmark resumes where it stopped.
3. Every policy (the SFT start once, every run's final policy) plays the same held-out layouts with the same sampling
   seeds (``eval.seed`` = ``--eval-seed`` everywhere): ``eval.num_tasks`` layouts x 1 sample (success, Wilson 95 %
   interval, one-sided Fisher p over the SFT start), and the first ``--passk-tasks`` of those layouts x
   ``--samples`` samples (unbiased Pass@k; diversity = distinct action sequences among a layout's samples).
4. Training curves (rollout success and invalid-format rate per RL iteration) as PNGs next to ``--out``, the
   markdown report ``--out`` (tables, wall times, a verdict computed from the numbers) and RUN_ROOT/results.json.

    python benchmarks/bench_algorithms.py --config configs/babyai_tiny.yaml --seeds 0 1 2 --out docs/results.md
    # a smoke test of the whole pipeline in about 5 minutes on 2 cores (an SFT of 32 tasks, so RL has a signal):
    python benchmarks/bench_algorithms.py --seeds 0 --variants grpo gigpo gigpo+resrl --iterations 1 \\
        --passk-tasks 4 --set eval.num_tasks=10 --set trainer.sft_tasks=32 --set rollout.tasks_per_iteration=4 \\
        --run-root /tmp/bench_alg --out /tmp/results_test.md
"""

from __future__ import annotations

import argparse
import datetime
import gc
import hashlib
import json
import logging
import math
import os
import platform
import shlex
import shutil
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from resrl_agent.config import RunConfig, load_config
from resrl_agent.eval.metrics import fisher_greater, mean_pass_at_k, wilson_interval
from resrl_agent.eval.summary import summarize as summarize_episodes
from resrl_agent.inference.hf import load_model_and_tokenizer
from resrl_agent.rollout.chat import ChatFormatter
from resrl_agent.rollout.loop import TaskSpec, run_episodes
from resrl_agent.run.engines import close_engine, make_engine
from resrl_agent.run.settings import rollout_settings
from resrl_agent.run.tasks import eval_tasks
from resrl_agent.trainer.checkpoint import export_checkpoint
from resrl_agent.trainer.loop import Trainer
from resrl_agent.trainer.metrics import read_metrics
from resrl_agent.types import Episode

FOCUS = "gigpo+resrl"  # the paper's method; the verdict compares it with every other row
ALPHA = 0.05  # the verdict's significance level (one-sided Fisher, in the direction of the observed difference)
CURVES = {"rollout/success": "rollout success", "rollout/invalid_format_rate": "invalid-format rate"}


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: tuple[str, ...]

    @property
    def slug(self) -> str:
        """The run dir name: ``gigpo+resrl(l=1)`` -> ``gigpo+resrl_l1``."""
        return self.name.replace("(", "_").replace(")", "").replace("=", "")


_NO_RESRL = ("algo.resrl.reweight=none",)
_RESRL = ("algo.advantage=gigpo", "algo.resrl.reweight=resrl", "algo.resrl.rank=64")
VARIANTS = [
    Variant("grpo", ("algo.advantage=grpo", *_NO_RESRL)),
    Variant("gigpo", ("algo.advantage=gigpo", *_NO_RESRL)),
    Variant("nsr", ("algo.advantage=nsr", *_NO_RESRL)),
    Variant("w_reinforce", ("algo.advantage=w_reinforce", *_NO_RESRL)),
    Variant("gigpo+resrl", (*_RESRL, "algo.resrl.pos_scale=0.1")),
    Variant("gigpo+resrl(l=1)", (*_RESRL, "algo.resrl.pos_scale=1.0")),
    # multi-turn with a handful of action words: the positive tokens' rank-64 subspace holds nearly every negative
    # token (residual ~0, every weight 0.55), so a lower rank, and lambda 1 so the positive turns keep their push
    Variant(
        "gigpo+resrl(l=1,k=8)",
        ("algo.advantage=gigpo", "algo.resrl.reweight=resrl", "algo.resrl.rank=8", "algo.resrl.pos_scale=1.0"),
    ),
]


def log(message: str) -> None:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", flush=True)


def write_json(path: Path, payload: Any) -> None:
    """Atomically: a half-written results file must never look like a finished run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def weights_digest(model_dir: Path) -> str:
    """sha256 of the exported weights: identifies the SFT start every RL result depends on."""
    digest = hashlib.sha256()
    files = sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("*.bin"))
    for file in files:
        with file.open("rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def config_digest(config: RunConfig) -> str:
    data = config.model_dump(mode="json")
    data.pop("run_dir", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


SFT_ROLLOUT_FREE = ("tasks_per_iteration", "group_size", "concurrency", "env_workers")
SFT_TRAINER_KEYS = ("device", "grad_clip", "weight_decay", "micro_batch_tokens", "logit_chunk_tokens")


def sft_digest(config: RunConfig) -> str:
    """The settings the SFT start depends on (so an RL-only ``--set`` keeps it, an SFT one redoes it): seed, env,
    model, the rollout's context settings, the trainer's sft_*/dagger_* fields and the optimizer basics."""
    data = config.model_dump(mode="json")
    trainer = data["trainer"]
    picked = {
        "seed": data["seed"],
        "env": data["env"],
        "model": data["model"],
        "rollout": {k: v for k, v in data["rollout"].items() if k not in SFT_ROLLOUT_FREE},
        "trainer": {k: v for k, v in trainer.items() if k.startswith(("sft_", "dagger_")) or k in SFT_TRAINER_KEYS},
    }
    return hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------ evaluation
def eval_sets(config: RunConfig, passk_tasks: int, samples: int) -> tuple[list[TaskSpec], list[TaskSpec]]:
    """The held-out success set (``eval.num_tasks`` x 1) and the Pass@k set: the first ``passk_tasks`` layouts of the
    same draw x ``samples``. (Drawing ``eval_tasks(config, passk_tasks, ...)`` directly would not give the same
    layouts: ``random.sample`` of a shorter prefix can pick other ids.)"""
    heldout = eval_tasks(config, config.eval.num_tasks, 1)
    wide = eval_tasks(config, max(config.eval.num_tasks, passk_tasks), samples)
    return heldout, wide[: passk_tasks * samples]


def play(config: RunConfig, engine: Any, formatter: ChatFormatter, tasks: list[TaskSpec]) -> list[Episode]:
    """The held-out play of the trainer's ``evaluate``: eval temperature/top-p and sampling seed ``eval.seed``."""
    return run_episodes(
        config.env.id,
        tasks,
        engine,
        formatter,
        rollout_settings(config, evaluation=True),
        env_kwargs=dict(config.env.kwargs),
        policy_version=-1,
    )


def actions_of(episode: Episode) -> tuple[str | None, ...]:
    return tuple(turn.action for turn in episode.turns)


def score_policy(
    config: RunConfig, engine: Any, formatter: ChatFormatter, passk_tasks: int, samples: int, ks: Sequence[int]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Both evaluations of one policy: the numbers, and one compact record per episode (for re-analysis)."""
    heldout_specs, passk_specs = eval_sets(config, passk_tasks, samples)
    start = time.perf_counter()
    heldout = play(config, engine, formatter, heldout_specs)
    heldout_s = time.perf_counter() - start
    start = time.perf_counter()
    passk = play(config, engine, formatter, passk_specs)
    passk_s = time.perf_counter() - start
    summary = summarize_episodes(heldout)
    won = summary.won
    lo, hi = wilson_interval(won, len(heldout))
    groups: dict[str, list[Episode]] = {}
    for episode in passk:
        groups.setdefault(episode.group_id, []).append(episode)
    correct = [[e.won for e in group] for group in groups.values()]
    numbers = {
        "heldout": {
            "won": won,
            "total": len(heldout),
            "success": summary.success_rate,
            "ci_low": lo,
            "ci_high": hi,
            "mean_return": summary.mean_return,
            "mean_turns": summary.mean_turns,
            "invalid_format_rate": summary.invalid_format_rate,
            "seconds": heldout_s,
        },
        "passk": {
            "tasks": len(groups),
            "samples": samples,
            "pass_at_k": {str(k): mean_pass_at_k(correct, k) for k in ks if k <= samples},
            "diversity": sum(len({actions_of(e) for e in group}) for group in groups.values()) / len(groups),
            "won": sum(e.won for e in passk),
            "total": len(passk),
            "seconds": passk_s,
        },
    }
    records = [
        {
            "set": name,
            "task_id": e.task_id,
            "sample_idx": e.sample_idx,
            "seed": e.seed,
            "won": e.won,
            "return": e.total_return,
            "stop_reason": e.stop_reason,
            "actions": list(actions_of(e)),
        }
        for name, episodes in (("heldout", heldout), ("passk", passk))
        for e in episodes
    ]
    return numbers, records


def write_records(path: Path, records: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------------ runs
def printer(tag: str, iterations: int) -> Any:
    """A Trainer progress callback: one line per RL iteration, and every 20th SFT step."""
    last = [time.perf_counter()]
    sft_total = [0]

    def report(phase: str, metrics: dict[str, float]) -> None:
        now = time.perf_counter()
        if phase == "rl":
            log(
                f"  [{tag}] iter {int(metrics['step']) + 1}/{iterations}: rollout success "
                f"{metrics['rollout/success']:.3f}, invalid format {metrics['rollout/invalid_format_rate']:.3f}, "
                f"{now - last[0]:.1f} s"
            )
            last[0] = now
        elif phase == "sft":
            if "sft/total_steps" in metrics and "sft/nll" not in metrics:
                sft_total[0] = int(metrics["sft/total_steps"])
                log(f"  [{tag}] {int(metrics.get('sft/expert_episodes', 0))} expert episodes, {sft_total[0]} steps")
            step = int(metrics["step"])
            if "sft/nll" in metrics and (step % 20 == 0 or step == sft_total[0]):
                log(f"  [{tag}] sft step {step}/{sft_total[0]}: nll {metrics['sft/nll']:.3f}")

    return report


def run_sft(args: argparse.Namespace, root: Path, common: list[str]) -> tuple[dict[str, Any], RunConfig]:
    """The shared SFT start (trained and exported once; reused) and its evaluation (cached per eval settings)."""
    sft_dir = root / "sft"
    policy = sft_dir / "policy"
    if args.fresh and sft_dir.exists():
        shutil.rmtree(sft_dir)
    overrides = [
        *common,
        "trainer.iterations=0",
        "trainer.compare_eval=false",
        f"seed={args.sft_seed}",
        f"run_dir={sft_dir}",
    ]
    config = load_config(args.config, overrides)
    if config.trainer.sft_epochs < 1:
        raise SystemExit(f"{args.config} has trainer.sft_epochs=0: the comparison needs the config's SFT warm start")
    results_file, made_file = sft_dir / "results.json", sft_dir / "sft_made.json"
    cached = read_json(results_file) or {}
    made = read_json(made_file) or {}
    wanted = sft_digest(config)
    if (policy / "config.json").is_file() and made.get("sft_config") == wanted:
        log(f"sft: reusing {policy}")
    else:
        if sft_dir.exists():
            why = "was made with other SFT settings" if (policy / "config.json").is_file() else "is incomplete"
            log(f"sft: {sft_dir} {why}; training it again")
            shutil.rmtree(sft_dir)
        log(f"sft: training the shared SFT start into {sft_dir} (seed {args.sft_seed})")
        start = time.perf_counter()
        trainer = Trainer(config, progress=printer("sft", 0))
        try:
            trainer.run()
        finally:
            trainer.close()
            del trainer
            gc.collect()
        staging = sft_dir / "policy.tmp"
        export_checkpoint(sft_dir / "checkpoints" / "sft.pt", staging, model_path=config.model.path)
        os.replace(staging, policy)
        made = {"sft_config": wanted, "train_s": time.perf_counter() - start}
        write_json(made_file, made)
        log(f"sft: done in {made['train_s']:.1f} s, exported to {policy}")
        cached = {}
    train_s = made.get("train_s")
    digest = weights_digest(policy)
    spec = {"eval": eval_spec(args, config), "sft_sha256": digest, "config": config_digest(config)}
    if cached.get("spec") == spec and "heldout" in cached:
        log(f"sft: reusing its evaluation ({cached['heldout']['won']}/{cached['heldout']['total']})")
        return cached, config
    eval_config = load_config(args.config, [*overrides, f"model.path={policy}", "trainer.sft_epochs=0"])
    log("sft: evaluating the SFT start")
    model, tokenizer = load_model_and_tokenizer(
        policy,
        dtype=eval_config.model.dtype,
        device=eval_config.trainer.device,
        attn_implementation=eval_config.model.attn_implementation,
    )
    engine = make_engine(eval_config, model, tokenizer)
    try:
        numbers, records = score_policy(
            eval_config, engine, ChatFormatter(tokenizer), args.passk_tasks, args.samples, args.ks
        )
    finally:
        close_engine(engine)
    write_records(sft_dir / "eval_episodes.jsonl", records)
    result = {
        "spec": spec,
        "policy": str(policy),
        "train_s": train_s,
        **numbers,
        "sft_metrics": sft_numbers(sft_dir),
    }
    write_json(results_file, result)
    log(f"sft: held-out {eval_line(result)}")
    return result, config


def sft_numbers(sft_dir: Path) -> dict[str, Any]:
    """What the SFT run logged: expert episodes, steps, the first and last NLL, the collection time."""
    file = sft_dir / "metrics.jsonl"
    if not file.is_file():
        return {}
    records = [r for r in read_metrics(file) if r.get("phase") == "sft"]
    steps = [r for r in records if r.get("sft/nll") is not None]
    head = next((r for r in records if "sft/expert_episodes" in r), {})
    return {
        "expert_episodes": head.get("sft/expert_episodes"),
        "total_steps": head.get("sft/total_steps"),
        "collect_s": head.get("time/sft_collect_s"),
        "nll_first": steps[0]["sft/nll"] if steps else None,
        "nll_last": steps[-1]["sft/nll"] if steps else None,
    }


def eval_spec(args: argparse.Namespace, config: RunConfig) -> dict[str, Any]:
    return {
        "eval_seed": args.eval_seed,
        "num_tasks": config.eval.num_tasks,
        "temperature": config.eval.temperature,
        "top_p": config.eval.top_p,
        "passk_tasks": args.passk_tasks,
        "samples": args.samples,
        "ks": list(args.ks),
    }


def eval_line(result: dict[str, Any]) -> str:
    h, p = result["heldout"], result["passk"]
    passes = ", ".join(f"pass@{k} {v:.3f}" for k, v in p["pass_at_k"].items())
    return (
        f"success {h['won']}/{h['total']} = {h['success']:.3f} (95% CI {h['ci_low']:.3f}-{h['ci_high']:.3f}); "
        f"{passes}; diversity {p['diversity']:.2f} ({h['seconds']:.0f} s + {p['seconds']:.0f} s)"
    )


def run_one(
    args: argparse.Namespace, root: Path, common: list[str], variant: Variant, seed: int, sft: dict[str, Any]
) -> dict[str, Any]:
    run_dir = root / variant.slug / f"seed{seed}"
    overrides = [
        *common,
        *variant.overrides,
        f"model.path={sft['policy']}",
        "trainer.sft_epochs=0",
        "trainer.compare_eval=false",
        f"seed={seed}",
        f"run_dir={run_dir}",
    ]
    config = load_config(args.config, overrides)
    spec = {
        "variant": variant.name,
        "seed": seed,
        "config": config_digest(config),
        "sft_sha256": sft["spec"]["sft_sha256"],
        "eval": eval_spec(args, config),
    }
    results_file = run_dir / "results.json"
    cached = read_json(results_file)
    tag = f"{variant.name} seed{seed}"
    if cached is not None and cached.get("spec") == spec:
        log(f"{tag}: done before, skipped ({eval_line(cached)})")
        return {**cached, "reused": True}
    if cached is not None:
        log(f"{tag}: results.json was made with other settings; running it again")
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a fresh dir: a stopped run's metrics.jsonl would otherwise be appended to
    iterations = config.trainer.iterations
    log(f"{tag}: start ({iterations} iterations, {' '.join(variant.overrides)}) -> {run_dir}")
    start = time.perf_counter()
    trainer = Trainer(config, progress=printer(tag, iterations))
    try:
        trainer.run()
        train_s = time.perf_counter() - start
        numbers, records = score_policy(
            config, trainer.engine, trainer.formatter, args.passk_tasks, args.samples, args.ks
        )
    finally:
        trainer.close()
        del trainer
        gc.collect()
    write_records(run_dir / "eval_episodes.jsonl", records)
    rl = [r for r in read_metrics(run_dir) if r.get("phase") == "rl"]
    result = {
        "spec": spec,
        "overrides": overrides,
        "train_s": train_s,
        "rl_iteration_s": train_s / max(iterations, 1),
        **numbers,
        "curves": {key: [r.get(key) for r in sorted(rl, key=lambda r: r["step"])] for key in CURVES},
    }
    write_json(results_file, result)
    log(f"{tag}: end, RL {train_s:.1f} s; held-out {eval_line(result)}")
    return result


# ------------------------------------------------------------------------------------------------ statistics
def summarize(
    variants: list[Variant], seeds: list[int], runs: dict[tuple[str, int], dict[str, Any]], sft: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Per variant: per-seed numbers, means over seeds, pooled counts and their tests against the SFT start."""
    s_won, s_total = sft["heldout"]["won"], sft["heldout"]["total"]
    table: dict[str, dict[str, Any]] = {}
    for variant in variants:
        done = {seed: runs[(variant.name, seed)] for seed in seeds if (variant.name, seed) in runs}
        if not done:
            continue
        won = sum(r["heldout"]["won"] for r in done.values())
        total = sum(r["heldout"]["total"] for r in done.values())
        per_seed_p = {
            seed: fisher_greater(s_won, s_total, r["heldout"]["won"], r["heldout"]["total"]) for seed, r in done.items()
        }
        ks = list(next(iter(done.values()))["passk"]["pass_at_k"])
        lo, hi = wilson_interval(won, total)
        table[variant.name] = {
            "seeds": sorted(done),
            "per_seed": {str(s): {"won": r["heldout"]["won"], "total": r["heldout"]["total"]} for s, r in done.items()},
            "per_seed_p_over_sft": {str(s): p for s, p in per_seed_p.items()},
            "mean_success": mean([r["heldout"]["success"] for r in done.values()]),
            "sd_success": sd([r["heldout"]["success"] for r in done.values()]),
            "pooled_won": won,
            "pooled_total": total,
            "pooled_ci": [lo, hi],
            "pooled_p_over_sft": fisher_greater(s_won, s_total, won, total),
            "seeds_beating_sft_p01": sum(p < 0.01 for p in per_seed_p.values()),
            "pass_at_k": {k: mean([r["passk"]["pass_at_k"][k] for r in done.values()]) for k in ks},
            "diversity": mean([r["passk"]["diversity"] for r in done.values()]),
            "train_s": mean([r["train_s"] for r in done.values()]),
            "rl_iteration_s": mean([r["rl_iteration_s"] for r in done.values()]),
            "eval_s": mean([r["heldout"]["seconds"] + r["passk"]["seconds"] for r in done.values()]),
        }
    return table


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def sd(values: Sequence[float]) -> float:
    if len(values) < 2:
        return float("nan")
    m = mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """A (the focus) against B: difference of mean success in points, and the one-sided Fisher p of the pooled
    counts in the direction of the observed (pooled) difference."""
    rate_a, rate_b = a["pooled_won"] / a["pooled_total"], b["pooled_won"] / b["pooled_total"]
    if rate_a >= rate_b:
        p = fisher_greater(b["pooled_won"], b["pooled_total"], a["pooled_won"], a["pooled_total"])
        direction = "above" if rate_a > rate_b else "level with"
    else:
        p = fisher_greater(a["pooled_won"], a["pooled_total"], b["pooled_won"], b["pooled_total"])
        direction = "below"
    paired = [
        (a["per_seed"][s]["won"] / a["per_seed"][s]["total"], b["per_seed"][s]["won"] / b["per_seed"][s]["total"])
        for s in a["per_seed"]
        if s in b["per_seed"]
    ]
    top = max(a["pass_at_k"], key=int) if a["pass_at_k"] else None
    return {
        "points": 100 * (a["mean_success"] - b["mean_success"]),
        "direction": direction,
        "p_one_sided": p,
        "seeds_ahead": sum(x > y for x, y in paired),
        "seeds_behind": sum(x < y for x, y in paired),
        "seeds_paired": len(paired),
        "top_k": top,
        "pass_top_points": 100 * (a["pass_at_k"][top] - b["pass_at_k"].get(top, float("nan"))) if top else None,
        "diversity_diff": a["diversity"] - b["diversity"],
    }


def verdict(table: dict[str, dict[str, Any]], sft: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The verdict paragraph, built only from the numbers in ``table`` (and the comparisons it rests on)."""
    sentences = []
    comparisons: dict[str, Any] = {}
    ranked = sorted(table, key=lambda name: table[name]["mean_success"], reverse=True)
    if ranked:
        order = ", ".join(f"{name} {100 * table[name]['mean_success']:.1f}%" for name in ranked)
        sentences.append(
            f"By mean held-out success over seeds the order is {order} (SFT start: "
            f"{100 * sft['heldout']['success']:.1f}%)."
        )
        above = [n for n in ranked if table[n]["pooled_p_over_sft"] < 0.01]
        sentences.append(
            "Pooled over seeds, "
            + (
                f"{', '.join(above)} beat{'s' if len(above) == 1 else ''} the SFT start at p < 0.01"
                if above
                else "no variant beats the SFT start at p < 0.01"
            )
            + "."
        )
    if FOCUS not in table:
        sentences.append(f"{FOCUS} was not run, so there is no verdict on it.")
        return " ".join(sentences), comparisons
    focus = table[FOCUS]
    sft_row = {
        "pooled_won": sft["heldout"]["won"],
        "pooled_total": sft["heldout"]["total"],
        "mean_success": sft["heldout"]["success"],
        "per_seed": {},
        "pass_at_k": sft["passk"]["pass_at_k"],
        "diversity": sft["passk"]["diversity"],
    }
    for other in [*(n for n in table if n != FOCUS), "sft"]:
        row = sft_row if other == "sft" else table[other]
        c = compare(focus, row)
        comparisons[other] = c
        pts, p = c["points"], c["p_one_sided"]
        won_or_lost = "wins against" if c["direction"] == "above" else "loses to"
        outcome = won_or_lost if p < ALPHA else "is level with"
        seeds = (
            f", ahead on {c['seeds_ahead']} and behind on {c['seeds_behind']} of {c['seeds_paired']} seeds"
            if c["seeds_paired"]
            else ""
        )
        extra = ""
        if c["top_k"] is not None and c["pass_top_points"] is not None and math.isfinite(c["pass_top_points"]):
            extra = (
                f"; pass@{c['top_k']} {c['pass_top_points']:+.1f} points, diversity {c['diversity_diff']:+.2f} "
                "distinct action sequences"
            )
        name = "the SFT start" if other == "sft" else other
        strength = "significant" if p < ALPHA else "not significant"
        sentences.append(
            f"{FOCUS} {outcome} {name}: {pts:+.1f} points of mean success (pooled one-sided Fisher p = {p:.3g}, "
            f"{FOCUS} {c['direction']} {name}, {strength} at {ALPHA}){seeds}{extra}."
        )
    return " ".join(sentences), comparisons


# --------------------------------------------------------------------------------------------------- output
def plot_curves(
    variants: list[Variant], runs: dict[tuple[str, int], dict[str, Any]], seeds: list[int], folder: Path
) -> list[Path]:
    """One PNG per training metric: per variant a bold mean over seeds and a light line per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for key, label in CURVES.items():
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
        for index, variant in enumerate(variants):
            colour = colours[index % len(colours)]
            lines = [runs[(variant.name, s)]["curves"][key] for s in seeds if (variant.name, s) in runs]
            lines = [[math.nan if v is None else v for v in line] for line in lines if line]
            if not lines:
                continue
            few = max(len(line) for line in lines) <= 3
            for line in lines:
                ax.plot(range(len(line)), line, color=colour, alpha=0.25, lw=1, marker="." if few else None)
            n = min(len(line) for line in lines)
            avg = [mean([line[i] for line in lines]) for i in range(n)]
            ax.plot(
                range(n), avg, color=colour, lw=2, marker="o" if few else None, label=f"{variant.name} (n={len(lines)})"
            )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("RL iteration (updates before its rollouts)")
        ax.set_ylabel(label)
        ax.set_title(f"{label} per RL iteration: mean over seeds (bold), each seed (light)", fontsize=9)
        ax.grid(True, alpha=0.3)
        if key == "rollout/success":
            ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = folder / f"curve_{key.split('/')[-1]}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_summary(table: dict[str, dict[str, Any]], sft: dict[str, Any], folder: Path) -> list[Path]:
    from resrl_agent.eval.plot import plot_heldout_success, plot_pass_at_k_curves

    h = sft["heldout"]
    rows = [("sft", h["won"], h["total"])] + [(n, r["pooled_won"], r["pooled_total"]) for n, r in table.items()]
    bars = plot_heldout_success(
        rows,
        folder / "heldout_success.png",
        title=f"held-out success (SFT: {h['total']} episodes; variants: pooled over seeds)",
    )
    curves = {"sft": {int(k): v for k, v in sft["passk"]["pass_at_k"].items()}}
    curves.update({n: {int(k): v for k, v in r["pass_at_k"].items()} for n, r in table.items()})
    passk = plot_pass_at_k_curves(
        curves,
        folder / "pass_at_k.png",
        title=f"Pass@k ({sft['passk']['tasks']} held-out layouts x {sft['passk']['samples']}; mean over seeds)",
    )
    return [bars, passk]


def fmt_p(p: float) -> str:
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def machine_notes() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "cpu": cpu,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "loadavg_start": os.getloadavg(),
    }


def markdown(report: dict[str, Any], out: Path) -> str:
    cfg: dict[str, Any] = report["config"]
    sft = report["sft"]
    table = report["table"]
    seeds = report["seeds"]
    images = out.with_suffix("").name
    m = report["machine"]
    r, t, a, e = cfg["rollout"], cfg["trainer"], cfg["algo"], cfg["eval"]
    ks = list(sft["passk"]["pass_at_k"])
    sm = sft.get("sft_metrics") or {}
    sh = sft["heldout"]
    lines = [
        f"# Algorithm comparison: {cfg['env']['id']} {cfg['env']['kwargs'].get('level', '')}, "
        f"model {report['base_model']}",
        "",
        f"Generated {report['finished']} by `benchmarks/bench_algorithms.py` (runs already done by an earlier "
        "invocation with the same settings are reused). Reproduce with:",
        "",
        "```",
        report["command"],
        "```",
        "",
        "## Machine",
        "",
        f"- {m['nproc']} usable cores (os.cpu_count {m['cpu_count']}), {m['cpu'] or 'CPU model unknown'}; "
        f"torch {m['torch']} with {m['torch_threads']} threads; Python {m['python']}; {m['platform']}"
        + (f"; GPU {m['cuda']}" if m["cuda"] else ""),
        f"- load average at start {', '.join(f'{x:.1f}' for x in m['loadavg_start'])}, at the end "
        f"{', '.join(f'{x:.1f}' for x in report['loadavg_end'])} (a shared machine: wall times vary with its load)",
        f"- wall time of this invocation: {report['wall_s']:.0f} s ({report['reused']} of {len(report['runs'])} runs "
        f"reused from an earlier invocation); the recorded SFT, RL and eval times of everything in the tables add up "
        f"to {report['compute_s']:.0f} s",
        "",
        "## Recipe",
        "",
        f"- config `{report['config_path']}`" + (f" with `--set {' '.join(report['sets'])}`" if report["sets"] else ""),
        f"- env `{cfg['env']['id']}` {json.dumps(cfg['env']['kwargs'])}, train split `{cfg['env']['train_split']}`, "
        f"held-out split `{cfg['env']['eval_split']}`",
        f"- RL: {t['iterations']} iteration(s) x {r['tasks_per_iteration']} tasks x G={r['group_size']}, "
        f"{r['context_mode']} context ({r['window_turns']} turns), max {r['max_turns']} turns, "
        f"rollout T={r['temperature']}; lr {t['lr']}, {t['ppo_epochs']} PPO epochs x {t['mini_batches']} "
        f"mini-batches, clip {a['loss']['clip_low']}/{a['loss']['clip_high']}, dual clip {a['loss']['dual_clip']}, "
        f"KL {a['loss']['kl_coef']}, invalid penalty {a['invalid_penalty']}; GiGPO {json.dumps(a['gigpo'])}",
        f"- shared SFT start (seed {report['sft_seed']}, `{sft['policy']}`): {t['sft_epochs']} epochs on "
        f"{int(sm.get('expert_episodes') or 0)} expert episodes (won only: {t['sft_only_won']}) of "
        f"{t['sft_tasks']} train tasks, {int(sm.get('total_steps') or 0)} steps at lr {t['sft_lr']} "
        f"({t['sft_schedule']}), "
        f"NLL {sm.get('nll_first', float('nan')):.3f} -> {sm.get('nll_last', float('nan')):.3f}"
        + (f", {sft['train_s']:.0f} s" if sft.get("train_s") else "")
        + f"; held-out success {sh['won']}/{sh['total']} = {sh['success']:.3f} (95% CI {sh['ci_low']:.3f}-"
        f"{sh['ci_high']:.3f})",
        f"- evaluation (every policy, the same episodes): eval.seed {report['eval_seed']}, T={e['temperature']}, "
        f"top-p {e['top_p']}; success on {e['num_tasks']} held-out layouts x 1 sample; Pass@k and diversity on the "
        f"first {sft['passk']['tasks']} of those layouts x {sft['passk']['samples']} samples",
        f"- seeds {' '.join(map(str, seeds))}; every RL run starts from the SFT start (model.path = it, "
        "trainer.sft_epochs=0)",
        "",
        "| variant | overrides |",
        "|---|---|",
        *(f"| {v['name']} | `{' '.join(v['overrides'])}` |" for v in report["variants"]),
        "",
        f"## Table 1: held-out success ({e['num_tasks']} layouts x 1 sample per policy)",
        "",
        "| variant | "
        + " | ".join(f"seed {s}" for s in seeds)
        + " | mean (sd) | pooled | 95% CI | p > SFT | seeds p<0.01 |",
        "|---|" + "---|" * len(seeds) + "---|---|---|---|---|",
        f"| SFT start | {sh['won']}/{sh['total']} (one eval) |"
        + " |" * (len(seeds) - 1)
        + f" {sh['success']:.3f} | {sh['won']}/{sh['total']} | {sh['ci_low']:.3f}-{sh['ci_high']:.3f} | - | - |",
    ]
    for name, row in table.items():
        cells = [
            f"{row['per_seed'][str(s)]['won']}/{row['per_seed'][str(s)]['total']}" if str(s) in row["per_seed"] else "-"
            for s in seeds
        ]
        spread = f" ({row['sd_success']:.3f})" if math.isfinite(row["sd_success"]) else ""
        lines.append(
            f"| {name} | {' | '.join(cells)} | {row['mean_success']:.3f}{spread} | {row['pooled_won']}/"
            f"{row['pooled_total']} | {row['pooled_ci'][0]:.3f}-{row['pooled_ci'][1]:.3f} | "
            f"{fmt_p(row['pooled_p_over_sft'])} | {row['seeds_beating_sft_p01']}/{len(row['seeds'])} |"
        )
    lines += [
        "",
        f"*p > SFT*: one-sided Fisher exact p that the variant's pooled success (its won/total summed over its seeds, "
        f"{e['num_tasks']} episodes per seed) is above the SFT start's single evaluation ({sh['won']}/{sh['total']}) "
        "on the same layouts and sampling seeds. The pooled episodes of different seeds replay the same layouts, so "
        "they are not independent draws; read p as a guide. *seeds p<0.01*: how many seeds' own "
        f"{e['num_tasks']}-episode result beats the SFT start at p < 0.01 (the same test per seed).",
        "",
        f"## Table 2: Pass@k and diversity ({sft['passk']['tasks']} layouts x {sft['passk']['samples']} samples, "
        "mean over seeds)",
        "",
        "| variant | " + " | ".join(f"pass@{k}" for k in ks) + " | diversity |",
        "|---|" + "---|" * len(ks) + "---|",
        "| SFT start | "
        + " | ".join(f"{sft['passk']['pass_at_k'][k]:.3f}" for k in ks)
        + f" | {sft['passk']['diversity']:.2f} |",
        *(
            f"| {name} | " + " | ".join(f"{row['pass_at_k'][k]:.3f}" for k in ks) + f" | {row['diversity']:.2f} |"
            for name, row in table.items()
        ),
        "",
        "Pass@k: the unbiased estimator 1 - C(n-c, k)/C(n, k) per layout, averaged over layouts. Diversity: the number "
        "of distinct action sequences (each episode's parsed `Turn.action` list) among a layout's "
        f"{sft['passk']['samples']} samples, averaged over layouts (1 = all samples played the same moves).",
        "",
        "## Training curves",
        "",
        *(f"![{p.stem}]({images}/{p.name})" for p in map(Path, report["plots"])),
        "",
        "## Cost",
        "",
        "| variant | RL s per run | s per iteration | eval s per policy |",
        "|---|---|---|---|",
        f"| SFT start | {sft['train_s']:.0f} (SFT) | - | {sh['seconds'] + sft['passk']['seconds']:.0f} |"
        if sft.get("train_s")
        else f"| SFT start | - | - | {sh['seconds'] + sft['passk']['seconds']:.0f} |",
        *(
            f"| {name} | {row['train_s']:.0f} | {row['rl_iteration_s']:.1f} | {row['eval_s']:.0f} |"
            for name, row in table.items()
        ),
        "",
        "## Verdict",
        "",
        report["verdict"],
        "",
        f'(Generated from the tables above. "wins"/"loses": the one-sided Fisher exact test of the pooled counts, '
        f'in the direction of the observed difference, is below {ALPHA}; otherwise "level". Seeds are compared '
        "pairwise because every policy plays the same episodes.)",
        "",
    ]
    if report["failed"]:
        lines += ["## Failed runs", "", *(f"- {f}" for f in report["failed"]), ""]
    lines += [f"Everything above, and per-run numbers and curves: `{report['results_json']}`.", ""]
    return "\n".join(lines)


def main() -> None:
    names = [v.name for v in VARIANTS]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/babyai_tiny.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=names, choices=names, metavar="NAME", help=", ".join(names))
    parser.add_argument(
        "--out", type=Path, default=Path("docs/results.md"), help="markdown; PNGs go to OUT without .md/"
    )
    parser.add_argument("--run-root", type=Path, default=Path("runs/bench_algorithms"))
    parser.add_argument("--sft-seed", type=int, default=0)
    parser.add_argument("--eval-seed", type=int, default=0, help="eval.seed of every evaluation")
    parser.add_argument("--passk-tasks", type=int, default=50, help="held-out layouts of the Pass@k set")
    parser.add_argument("--samples", type=int, default=8, help="samples per layout of the Pass@k set")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--iterations", type=int, default=None, help="override trainer.iterations (quick tests)")
    parser.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="a dotted override for every run"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--fresh", action="store_true", help="redo the SFT start and every selected run")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing new: report the selected runs that are already done (a variant may then have fewer seeds)",
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    if any(k < 1 or k > args.samples for k in args.ks):
        parser.error(f"--ks must lie in 1..--samples ({args.samples})")
    wall = time.perf_counter()
    started = datetime.datetime.now()
    machine = machine_notes()
    root = args.run_root
    root.mkdir(parents=True, exist_ok=True)
    common = [*args.sets, f"eval.seed={args.eval_seed}"]
    if args.iterations is not None:
        common.append(f"trainer.iterations={args.iterations}")
    variants = [v for v in VARIANTS if v.name in args.variants]
    log(
        f"bench_algorithms: {args.config}, variants {', '.join(v.name for v in variants)}, seeds {args.seeds}, "
        f"run root {root}; {machine['nproc']} cores, torch threads {machine['torch_threads']}"
    )
    for v in variants:
        log(f"  variant {v.name}: {' '.join(v.overrides)}")
    if args.fresh:
        for v in variants:
            for seed in args.seeds:
                if (root / v.slug / f"seed{seed}").exists():
                    shutil.rmtree(root / v.slug / f"seed{seed}")
    sft, base = run_sft(args, root, common)
    runs: dict[tuple[str, int], dict[str, Any]] = {}
    failed: list[str] = []
    total = len(variants) * len(args.seeds)
    for index, (variant, seed) in enumerate(((v, s) for v in variants for s in args.seeds), start=1):
        if args.report_only and not (root / variant.slug / f"seed{seed}" / "results.json").is_file():
            log(f"run {index}/{total}: {variant.name} seed {seed}: not run yet, left out (--report-only)")
            continue
        log(f"run {index}/{total}: {variant.name} seed {seed}")
        try:
            runs[(variant.name, seed)] = run_one(args, root, common, variant, seed, sft)
        except KeyboardInterrupt:
            log("interrupted: finished runs are kept; run the same command again to resume")
            raise
        except Exception as err:
            traceback.print_exc()
            failed.append(f"{variant.name} seed {seed}: {type(err).__name__}: {err}")
            log(f"{variant.name} seed {seed}: FAILED ({type(err).__name__}: {err})")

    table = summarize(variants, args.seeds, runs, sft)
    text, comparisons = verdict(table, sft)
    folder = args.out.with_suffix("")
    plots = [*plot_curves(variants, runs, args.seeds, folder), *(plot_summary(table, sft, folder) if table else [])]
    results_json = root / "results.json"
    argv = [os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else "python", *sys.argv]
    report = {
        "command": shlex.join(argv),
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.datetime.now().isoformat(timespec="seconds"),
        "wall_s": time.perf_counter() - wall,
        "reused": sum(bool(r.get("reused")) for r in runs.values()),
        "compute_s": (sft.get("train_s") or 0.0)
        + sft["heldout"]["seconds"]
        + sft["passk"]["seconds"]
        + sum(r["train_s"] + r["heldout"]["seconds"] + r["passk"]["seconds"] for r in runs.values()),
        "machine": machine,
        "loadavg_end": os.getloadavg(),
        "config_path": str(args.config),
        "sets": args.sets,
        "base_model": base.model.path,
        "config": load_config(args.config, common).model_dump(mode="json"),
        "sft_seed": args.sft_seed,
        "eval_seed": args.eval_seed,
        "seeds": args.seeds,
        "variants": [{"name": v.name, "dir": v.slug, "overrides": list(v.overrides)} for v in variants],
        "sft": sft,
        "runs": {f"{name}/seed{seed}": result for (name, seed), result in runs.items()},
        "table": table,
        "comparisons": comparisons,
        "verdict": text,
        "plots": [str(p) for p in plots],
        "failed": failed,
        "results_json": str(results_json),
    }
    write_json(results_json, report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(markdown(report, args.out), encoding="utf-8")
    os.replace(tmp, args.out)
    log(f"wrote {args.out}, {results_json} and {len(plots)} PNGs in {folder} ({report['wall_s']:.0f} s)")
    log(f"verdict: {text}")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
