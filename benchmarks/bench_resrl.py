"""Time and peak memory of ResRL's token weighting, randomized vs exact SVD, side by side.

Measures `fit_resrl` + `reweight_advantages` on a batch shaped like one learner step:
B rows of T tokens, hidden size d, groups of G rows (half of each group positive, the other half
negative), hidden states low-rank-plus-noise in bf16. Both take the tokens flat, as the learner hands them
over: [B * T, d] states (a view of the [B, T, d] buffer, every token valid) and one sign and group id per token.

Each SVD mode runs in a fresh subprocess so that peak-memory numbers do not leak between modes:
- CPU: peak resident set size (getrusage ru_maxrss) above the process's RSS right before the first
  call, i.e. the extra memory the weighting needs on top of its inputs (allocator caching included).
- CUDA: torch.cuda.max_memory_allocated above the allocated bytes right before the call, i.e. the
  extra tensor memory the weighting needs on top of its inputs.
Times are wall-clock per call (median of --repeats, after a warm-up call on the first group), synchronised
on CUDA.
On CPU the exact SVD of 4096 x 2048 positives per group is slow, so the full size runs once per mode.

    python benchmarks/bench_resrl.py                 # B=64, T=1024, d=2048, groups of 8, CPU
    python benchmarks/bench_resrl.py --quick         # B=16, T=256, d=512
    python benchmarks/bench_resrl.py --device cuda

For scale: a full learner step of a 0.6B model on 8x2560 tokens takes about 0.45 s on an H100; the
weighting should stay a few percent of that.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import torch

from resrl_agent.algorithms.resrl import ResRLParams, fit_resrl, reweight_advantages

LEARNER_STEP_S = 0.45  # 0.6B model, 8x2560 tokens, H100 (the Training issue measures the real ratio)


def _rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def _make_batch(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Low-rank-plus-noise hidden states [B, T, d] in bf16, built row by row so no large fp32 temporary
    inflates the CPU peak before the measurement starts."""
    gen = torch.Generator(device=device).manual_seed(0)
    b, t, d, g = args.batch, args.seq, args.dim, args.group
    num_groups = b // g
    signal = 32
    basis = torch.randn(num_groups, signal, d, generator=gen, device=device) / signal**0.5
    spectrum = 0.9 ** torch.arange(signal, device=device, dtype=torch.float32) * 4.0
    hidden = torch.empty(b, t, d, dtype=torch.bfloat16, device=device)
    for row in range(b):
        coef = torch.randn(t, signal, generator=gen, device=device) * spectrum
        noise = torch.randn(t, d, generator=gen, device=device) * 0.5
        hidden[row] = (coef @ basis[row // g] + noise).to(torch.bfloat16)
    row_positive = (torch.arange(b, device=device) % g) < g // 2
    positive = row_positive[:, None].expand(b, t).reshape(-1)  # [B * T], row-major like hidden's view
    token_adv = torch.where(positive, 1.0, -1.0)
    group_ids = [row // g for row in range(b) for _ in range(t)]
    return {"hidden": hidden.view(b * t, d), "positive": positive, "token_adv": token_adv, "group_ids": group_ids}


def _worker(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    batch = _make_batch(args, device)
    params = ResRLParams(svd=args.worker)

    def call(rows: int) -> torch.Tensor:
        n = rows * args.seq  # the tokens of the first `rows` rows
        w = fit_resrl(batch["hidden"][:n], batch["positive"][:n], batch["group_ids"][:n], params, seed=1).weights
        return reweight_advantages(batch["token_adv"][:n], w, batch["positive"][:n], pos_scale=params.pos_scale)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    # Baseline before the warm-up: the warm-up (one group, the same per-group shapes) peaks no higher than a
    # full call, so the peak below is the full call's.
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = _rss_bytes()
    call(args.group)  # warm-up: BLAS/LAPACK (cuBLAS/cuSOLVER) initialisation, allocator, first-touch pages
    sync()
    times = []
    out = None
    for _ in range(args.repeats):
        start = time.perf_counter()
        out = call(args.batch)
        sync()
        times.append(time.perf_counter() - start)
    if cuda:
        peak = torch.cuda.max_memory_allocated(device) - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    assert out is not None
    neg = ~batch["positive"]
    weights = (out / batch["token_adv"])[neg]  # negatives: A = -1, so the ratio is w
    result = {
        "mode": args.worker,
        "time_s": statistics.median(times),
        "times_s": times,
        "peak_bytes": max(peak, 0),
        "input_bytes": batch["hidden"].numel() * batch["hidden"].element_size(),
        "neg_weight_mean": float(weights.mean()),
        "device_name": torch.cuda.get_device_name(device) if cuda else f"cpu ({torch.get_num_threads()} threads)",
    }
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--quick", action="store_true", help="B=16, T=256, d=512, groups of 8")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed calls per mode (default: 10 on CUDA; on CPU 3 quick, 1 full)"
    )
    parser.add_argument("--modes", default="randomized,exact", help="comma-separated SVD modes")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.batch, args.seq, args.dim = 16, 256, 512
    if args.repeats is None:
        args.repeats = 10 if args.device.startswith("cuda") else (3 if args.quick else 1)
    if args.batch % args.group:
        parser.error(f"--batch {args.batch} must be a multiple of --group {args.group}")
    if args.worker:
        _worker(args)
        return

    print(
        f"ResRL fit_resrl + reweight_advantages: B={args.batch}, T={args.seq}, d={args.dim}, "
        f"groups of {args.group} (half positive), bf16 hidden, full masks, device={args.device}, "
        f"repeats={args.repeats}"
    )
    results = []
    for mode in args.modes.split(","):
        cmd = [sys.executable, __file__, "--worker", mode, "--device", args.device, "--repeats", str(args.repeats)]
        cmd += ["--batch", str(args.batch), "--seq", str(args.seq), "--dim", str(args.dim), "--group", str(args.group)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(f"{mode}: failed\n{proc.stderr[-2000:]}")
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    if not results:
        sys.exit(1)
    what = "extra CUDA tensor memory" if args.device.startswith("cuda") else "peak RSS above pre-call RSS"
    print(f"device: {results[0]['device_name']}; inputs: hidden {results[0]['input_bytes'] / 2**20:.0f} MiB")
    print(f"{'mode':<12}{'time (s)':>12}{what + ' (MiB)':>40}{'mean neg w':>12}")
    for r in results:
        print(f"{r['mode']:<12}{r['time_s']:>12.4f}{r['peak_bytes'] / 2**20:>40.1f}{r['neg_weight_mean']:>12.4f}")
    by_mode = {r["mode"]: r for r in results}
    if "randomized" in by_mode and "exact" in by_mode:
        fast, slow = by_mode["randomized"], by_mode["exact"]
        print(
            f"exact / randomized: time x{slow['time_s'] / fast['time_s']:.2f}, "
            f"memory x{slow['peak_bytes'] / max(fast['peak_bytes'], 1):.2f}"
        )
    if args.device.startswith("cuda"):
        for r in results:
            share = r["time_s"] / LEARNER_STEP_S
            print(f"{r['mode']}: {100 * share:.1f}% of a {LEARNER_STEP_S} s H100 learner step (0.6B, 8x2560 tokens)")


if __name__ == "__main__":
    main()
