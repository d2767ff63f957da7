"""``resrl-agent alfworld``: generate ALFWorld games (mounted by the lead under the main CLI)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer
from rich.console import Console

from envs.alfworld.engine import TASK_TYPES
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
