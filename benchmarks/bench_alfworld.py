"""ALFWorld stepping throughput: ours (1 process, N worker processes) vs alfworld's own batch mode, side by side.

Every setup plays random admissible commands (seeded) on the shipped train games for ``--steps`` steps per env and
reports env-steps/s (resets are outside the timed window). alfworld's batch mode is ``AlfredTWEnv(...).init_env(N)``
with the "dagger" config, so both sides compute the same infos (admissible commands, facts, handcoded expert).
``--soak`` adds a long run of the vector env (many short episodes) that samples the workers' RSS and checks that no
process or temp dir outlives ``close``. ``--resets N`` times resets of N games not loaded before, each setup in a
fresh process: without the translation cache on disk, with it empty (cold), and with it filled by the cold run.

    python benchmarks/bench_alfworld.py --n 2 --steps 60
    python benchmarks/bench_alfworld.py --n 2 --steps 0 --soak 1000 [--soak-games 30]
    python benchmarks/bench_alfworld.py --steps 0 --resets 20 --rounds 2
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from envs.alfworld.engine import DISK_CACHE_ENV, DISK_STATS
from envs.alfworld.env import AlfworldEnv
from envs.alfworld.games import GameRecord, index_games, shipped_games_dir
from envs.alfworld.vector import AlfworldVectorEnv


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def children(pid: int) -> list[str]:
    """Child processes of ``pid`` as "pid: command" (multiprocessing's resource tracker lives until exit)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                    found.append(f"{entry.name}: ...{command[-50:]}")
    return found


def bench_ours_single(games: list[GameRecord], steps: int, seed: int) -> float:
    """One process plays each game in turn for ``steps`` steps: the per-step cost of the same games."""
    env = AlfworldEnv(data_dir=str(games[0].game_file.parents[2]), max_steps=10_000)
    elapsed = 0.0
    for i, game in enumerate(games):
        rng = random.Random(seed + i)
        _, info = env.reset(options={"task_id": game.task_id})
        start = time.perf_counter()
        for _ in range(steps):
            _, _, terminated, _, info = env.step(rng.choice(info["available_actions"]))
            if terminated:  # random play rarely wins; restart the game outside the timed window
                elapsed += time.perf_counter() - start
                _, info = env.reset(options={"task_id": game.task_id})
                start = time.perf_counter()
        elapsed += time.perf_counter() - start
    env.close()
    return len(games) * steps / elapsed


def bench_ours_vector(games: list[GameRecord], steps: int, seed: int) -> float:
    n = len(games)
    rngs = [random.Random(seed + i) for i in range(n)]
    with AlfworldVectorEnv(
        n, env_kwargs={"data_dir": str(games[0].game_file.parents[2]), "max_steps": 10_000}
    ) as vector:
        options = [{"task_id": game.task_id} for game in games]
        results = vector.reset(options)
        elapsed = 0.0
        for _ in range(steps):
            actions = [rng.choice(r.info["available_actions"]) for rng, r in zip(rngs, results, strict=True)]
            start = time.perf_counter()
            results = vector.step(actions)
            elapsed += time.perf_counter() - start
            done = [i for i, r in enumerate(results) if r.done]
            if done:
                for i, r in zip(done, vector.reset([options[i] for i in done], indices=done), strict=True):
                    results[i] = r
    return n * steps / elapsed


def bench_alfworld_batch(games: list[GameRecord], batch_size: int, steps: int, seed: int, tmp: Path) -> float:
    """alfworld's ``AlfredTWEnv.init_env(batch_size)`` on a tree holding just these games (batch_size=1: one by one)."""
    from alfworld.agents.environment.alfred_tw_env import AlfredTWEnv

    groups = [games] if batch_size == len(games) else [[game] for game in games]
    total_steps, elapsed = 0, 0.0
    for g, group in enumerate(groups):
        root = tmp / f"alfworld-{batch_size}-{g}"
        for game in group:
            shutil.copytree(game.game_file.parent, root / game.task_id)
        seeds = {game.task_id: seed + games.index(game) for game in group}
        config: dict[str, Any] = {
            "env": {
                "task_types": [1, 2, 3, 4, 5, 6],
                "goal_desc_human_anns_prob": 0.0,
                "domain_randomization": False,
                "expert_type": "handcoded",
            },
            "general": {"training_method": "dagger"},
            "dagger": {"training": {"max_nb_steps_per_episode": 10_000}},
            "dataset": {"data_path": str(root), "num_train_games": -1, "num_eval_games": -1},
        }
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            alfred = AlfredTWEnv(config, train_eval="train")
            batch = alfred.init_env(batch_size=len(group))
            _, infos = batch.reset()
            # Seed each slot's commands by its game, as ours does.
            rngs = [random.Random(seeds[Path(f).parent.name]) for f in infos["extra.gamefile"]]
            start = time.perf_counter()
            for _ in range(steps):
                actions = [rng.choice(adm) for rng, adm in zip(rngs, infos["admissible_commands"], strict=True)]
                _, _, _, infos = batch.step(actions)
            elapsed += time.perf_counter() - start
            total_steps += len(group) * steps
            batch.close()
    return total_steps / elapsed


def reset_times(
    data_dir: str, warmup: str, task_ids: list[str], cache_root: str, disk: bool, optimized_replan: bool = False
) -> tuple[list[float], dict]:
    """In a fresh process: one untimed reset (imports, grammar parse), then the time of each reset of ``task_ids``."""
    os.environ["RESRL_CACHE"] = cache_root
    os.environ[DISK_CACHE_ENV] = "1" if disk else "0"
    env = AlfworldEnv(data_dir=data_dir, optimized_replan=optimized_replan)
    env.reset(options={"task_id": warmup})
    times = []
    for task_id in task_ids:
        start = time.perf_counter()
        env.reset(options={"task_id": task_id})
        times.append(time.perf_counter() - start)
    env.close()
    return times, dict(DISK_STATS)


def bench_resets(train: list[GameRecord], n: int, rounds: int) -> None:
    """Resets of games a process has not loaded: textworld's two translations and our one (no disk cache), disk cache
    cold (empty), disk cache warm."""
    data_dir = str(train[0].game_file.parents[2])
    spawn = multiprocessing.get_context("spawn")
    setups = (  # name, disk cache, both translations (textworld's own: the optimized replanning task too)
        ("no disk cache, 2 translations", False, True),
        ("no disk cache", False, False),
        ("disk cache cold", True, False),
        ("disk cache warm", True, False),
    )
    times: dict[str, list[float]] = {name: [] for name, _, _ in setups}
    sizes = []
    for round_ in range(rounds):
        # Each round takes n games of its own from a stride over the train set (all task types), in a new cache root.
        games = train[1 + round_ :: max(1, (len(train) - 1) // (n * rounds))][:n]
        ids = [g.task_id for g in games]
        with tempfile.TemporaryDirectory(prefix="bench-alfworld-resets-") as tmp:
            for name, disk, both in setups:
                with spawn.Pool(1) as pool:
                    taken, stats = pool.apply(reset_times, (data_dir, train[0].task_id, ids, tmp, disk, both))
                times[name].extend(taken)
                print(f"  round {round_}, {name}: {statistics.median(taken) * 1000:.0f} ms median; disk {stats}")
            files = list(Path(tmp).rglob("*.sas.z"))
            sizes.append(sum(f.stat().st_size for f in files) / (n + 1))  # n games and the warm-up game
    for name, values in times.items():
        print(
            f"{name:30s} reset: median {statistics.median(values) * 1000:6.1f} ms, mean "
            f"{statistics.mean(values) * 1000:6.1f} ms over {len(values)} resets of distinct games"
        )
    print(
        f"disk cache: {statistics.mean(sizes) / 1000:.1f} KB per game (one translation); load {os.getloadavg()[0]:.2f}"
    )


def soak(task_ids: list[str], n: int, episodes: int, max_steps: int, seed: int) -> None:
    # The workers inherit a private TMPDIR, so whatever temp entry they leave behind shows up there.
    worker_tmp = Path(tempfile.mkdtemp(prefix="soak-tmp-"))
    os.environ["TMPDIR"] = str(worker_tmp)
    rng = random.Random(seed)
    played = errors = 0
    start = time.perf_counter()
    vector = AlfworldVectorEnv(n, env_kwargs={"max_steps": max_steps})
    results = vector.reset([{"task_id": rng.choice(task_ids)} for _ in range(n)])
    print(f"soak: {episodes} episodes of <= {max_steps} random admissible steps, {n} workers", flush=True)
    while played < episodes:
        results = vector.step([rng.choice(r.info.get("available_actions") or ["look"]) for r in results])
        done = [i for i, r in enumerate(results) if r.done]
        errors += sum(r.error is not None for r in results)
        options = [{"task_id": rng.choice(task_ids)} for _ in done]
        for i, r in zip(done, vector.reset(options, indices=done), strict=True):
            results[i] = r
        before = played
        played += len(done)
        if played // 100 != before // 100:
            workers = ", ".join(f"{rss_mb(p):6.1f}" for p in vector.worker_pids() if p)
            print(
                f"  {played:5d} episodes, {time.perf_counter() - start:5.0f} s: parent {rss_mb(os.getpid()):6.1f} MB, "
                f"workers {workers} MB",
                flush=True,
            )
    pids = [p for p in vector.worker_pids() if p]
    vector.close()
    alive = [p for p in pids if Path(f"/proc/{p}").exists()]
    leaked_tmp = sorted(os.listdir(worker_tmp))
    shutil.rmtree(worker_tmp, ignore_errors=True)
    print(
        f"  done: {played} episodes in {time.perf_counter() - start:.0f} s, {errors} errors; after close: worker "
        f"processes alive {alive}, children {children(os.getpid())}, new temp entries {leaked_tmp}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2, help="worker processes / batch size")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per env (0 skips the throughput part)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the four setups")
    parser.add_argument("--soak", type=int, default=0, help="episodes for the soak run (0 skips it)")
    parser.add_argument("--soak-max-steps", type=int, default=5)
    parser.add_argument(
        "--soak-games", type=int, default=0, help="soak over the first N train games only (0: all of them)"
    )
    parser.add_argument("--resets", type=int, default=0, help="games per round for the reset timing (0 skips it)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("ALFWORLD_DATA", tempfile.mkdtemp(prefix="alfworld-data-"))

    root = shipped_games_dir()
    train = [g for g in index_games(root.resolve()) if g.split == "train"]
    games = train[: args.n]
    print(f"games: {[g.task_id for g in games]}; cpu count {os.cpu_count()}; load average {os.getloadavg()[0]:.2f}")
    if args.steps:
        one, many = "ours, 1 process", f"ours, {args.n} worker processes"
        alf_one, alf_many = "alfworld batch, batch_size=1", f"alfworld batch, batch_size={args.n}"
        rates: dict[str, list[float]] = {one: [], many: [], alf_one: [], alf_many: []}
        # Rounds interleave the four setups so that load from other processes hits them alike; medians are reported.
        for round_ in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="bench-alfworld-") as tmp:
                rates[one].append(bench_ours_single(games, args.steps, args.seed + round_))
                rates[many].append(bench_ours_vector(games, args.steps, args.seed + round_))
                rates[alf_one].append(bench_alfworld_batch(games, 1, args.steps, args.seed + round_, Path(tmp)))
                rates[alf_many].append(bench_alfworld_batch(games, args.n, args.steps, args.seed + round_, Path(tmp)))
        median = {name: statistics.median(values) for name, values in rates.items()}
        for name, values in rates.items():
            rounds = ", ".join(f"{v:.1f}" for v in values)
            print(f"{name:34s} {median[name]:7.1f} env-steps/s (median; rounds {rounds})")
        print(
            f"speed-up at N={args.n}: ours {median[many] / median[one]:.2f}x, "
            f"alfworld batch {median[alf_many] / median[alf_one]:.2f}x; "
            f"ours N={args.n} / alfworld N={args.n}: {median[many] / median[alf_many]:.2f}x; "
            f"load average now {os.getloadavg()[0]:.2f}"
        )
    if args.resets:
        bench_resets(train, args.resets, args.rounds)
    if args.soak:
        pool = [g.task_id for g in train][: args.soak_games or None]
        soak(pool, args.n, args.soak, args.soak_max_steps, args.seed)


if __name__ == "__main__":
    main()
