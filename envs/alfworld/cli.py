"""``resrl-agent alfworld``: generate ALFWorld games (mounted by the lead under the main CLI)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer
from rich.console import Console

from envs.alfworld.engine import TASK_TYPES, default_translation_dir, warm_translation_cache
from envs.alfworld.generator import generate as generate_games
from envs.alfworld.generator import pack

app = typer.Typer(
    help="ALFWorld games: generate expert-verified PDDL games for the real alfworld engine.", no_args_is_help=True
)
console = Console()


@app.callback()
def main() -> None:
    """ALFWorld games: generate expert-verified PDDL games for the real alfworld engine."""


@app.command()
def generate(
    out: Path = typer.Option(..., "--out", help="Folder to write <split>/<task_id>/ game folders into."),
    n: int = typer.Option(60, "--n", min=0, help="Number of train games."),
    n_eval: int = typer.Option(20, "--n-eval", min=0, help="Number of games in each of valid_seen and valid_unseen."),
    task_types: list[int] = typer.Option(list(TASK_TYPES), "--task-types", help="Task type ids 1-6 (repeatable)."),
    seed: int = typer.Option(0, "--seed", help="Seed; the same seed gives the same games."),
    max_steps: int = typer.Option(50, "--max-steps", min=1, help="The expert must win within this many steps."),
    archive: Path | None = typer.Option(None, "--archive", help="Also pack the games into this .json.gz file."),
) -> None:
    """Generate games for all three splits, each checked by playing alfworld's handcoded expert to a win."""
    logging.basicConfig(level=logging.WARNING)
    counts = {"train": n, "valid_seen": n_eval, "valid_unseen": n_eval}
    with console.status(f"generating {sum(counts.values())} games into {out} (about 3 s each)"):
        report = generate_games(out, counts, task_types=task_types, seed=seed, max_steps=max_steps)
    console.print(json.dumps(report.as_dict(), indent=1, sort_keys=True))
    if archive is not None:
        console.print(f"packed {pack(out, archive)} games into {archive}")


@app.command("warm-cache")
def warm_cache(
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="A games tree (from `generate`); default: the shipped games."
    ),
    workers: int = typer.Option(2, "--workers", min=1, help="Processes that translate."),
) -> None:
    """Translate every game of a tree into the on-disk translation cache, so no later process translates one.

    Resets of a game never translated cost about 0.1 s more (fast-downward's PDDL-to-SAS). Run it once before many
    rollout workers share a cache folder (RESRL_CACHE), or before timing a run.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from envs.alfworld.games import index_games, shipped_games_dir
    from envs.base import EnvError

    root = data_dir.resolve() if data_dir is not None else shipped_games_dir()
    games = index_games(root)
    if not games:
        console.print(f"[red]error[/]: no ALFWorld games (traj_data.json + game.tw-pddl) under {root}")
        raise typer.Exit(code=2)
    try:
        with Progress(
            TextColumn("translating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        ) as progress:
            bar = progress.add_task("games", total=len(games))
            counts = warm_translation_cache(
                [g.game_file for g in games], workers=workers, on_game=lambda _: progress.advance(bar)
            )
    except (OSError, ValueError, KeyError, EnvError) as err:
        console.print(f"[red]error[/]: cannot warm the translation cache: {err!r}")
        raise typer.Exit(code=1) from None
    console.print(
        f"{counts['games']} games: {counts['computed']} translated, {counts['cached']} already cached, "
        f"in {default_translation_dir()}"
    )
