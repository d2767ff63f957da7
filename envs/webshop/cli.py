"""``resrl-agent webshop``: play WebShop in the terminal, inspect or regenerate the catalogue, score policies."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from envs.webshop.env import SEARCH_PLACEHOLDER, WebShopEnv

app = typer.Typer(help="WebShop: a faithful re-implementation on a generated catalogue.", no_args_is_help=True)
console = Console()


def _show(observation: str, info: dict[str, Any], *, rich_mode: bool) -> None:
    body = observation if rich_mode else observation.replace(" [SEP] ", "\n")
    title = f"{info['task_id']}  page: {info['page']}  step {info['step']}"
    console.print(Panel(Text(body), title=title, expand=False))
    for number, action in enumerate(info["available_actions"], start=1):
        console.print(f"  [bold]{number:>2}[/bold]  {escape(action)}")


@app.command()
def play(
    task_id: Annotated[str | None, typer.Option(help="Goal to play, e.g. webshop-12 (default: a random one).")] = None,
    split: Annotated[str, typer.Option(help="Split to draw from without --task-id: train, test or all.")] = "test",
    mode: Annotated[str, typer.Option(help="Observation mode: text or text_rich.")] = "text",
    seed: Annotated[int | None, typer.Option(help="Seed of the random goal draw.")] = None,
    max_steps: Annotated[int, typer.Option(help="Steps before the episode is truncated.")] = 15,
) -> None:
    """Play one episode: type a number from the list, an action (search[...], click[...]), 'hint' or 'quit'."""
    env = WebShopEnv(observation_mode=mode, max_steps=max_steps, reward_mode="score")
    options = {"task_id": task_id} if task_id is not None else {"split": split}
    observation, info = env.reset(seed=seed, options=options)
    while True:
        _show(observation, info, rich_mode=mode == "text_rich")
        reply = typer.prompt("action").strip()
        if reply.lower() in ("q", "quit", "exit"):
            console.print("Bye.")
            return
        if reply.lower() in ("h", "hint"):
            console.print(f"The expert would do: [cyan]{escape(str(info['expert_action']))}[/cyan]")
            continue
        action = reply
        if reply.isdigit() and 1 <= int(reply) <= len(info["available_actions"]):
            action = info["available_actions"][int(reply) - 1]
            if action == SEARCH_PLACEHOLDER:
                action = f"search[{typer.prompt('query')}]"
        observation, _, terminated, truncated, info = env.step(action)
        if not info["action_valid"]:
            console.print(f"[yellow]{escape(repr(action))} is not valid on this page: nothing happened.[/yellow]")
        if terminated or truncated:
            console.print(Text(observation.replace(" [SEP] ", "\n")))
            verdict = "[green]Success![/green]" if info["won"] else "[red]Not a full match.[/red]"
            console.print(f"Score {info['score']:.3f}. {verdict}" if terminated else "Out of steps: score 0.")
            if terminated:
                console.print(info["reward_info"])
            return


@app.command()
def catalogue(
    path: Annotated[Path | None, typer.Option(help="A catalogue file (default: the shipped one).")] = None,
) -> None:
    """Summarise the catalogue: products and goals per category."""
    env = WebShopEnv(catalogue_path=str(path) if path else None)
    table = Table("category", "products", "goals", "queries")
    for name in sorted({p["category"] for p in env.catalogue.products}):
        products = [p for p in env.catalogue.products if p["category"] == name]
        goals = [g for g in env.catalogue.goals if g["category"] == name]
        table.add_row(name, str(len(products)), str(len(goals)), str(len({p["query"] for p in products})))
    console.print(table)
    console.print(
        f"{len(env.catalogue.products)} products, {len(env.catalogue.goals)} goals (test: goals 0-499, train: the rest)"
    )


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Where to write the catalogue (.json or .json.gz).")],
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 0,
    products_per_type: Annotated[int, typer.Option(help="Products per product type (30 types).")] = 80,
) -> None:
    """Generate a catalogue (the shipped one is seed 0, 80 per type); use it with catalogue_path=OUT."""
    from envs.webshop.generator import generate_catalogue, write_catalogue

    products = generate_catalogue(seed=seed, products_per_type=products_per_type)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_catalogue(out, products, seed=seed)
    console.print(f"Wrote {len(products)} products to {out}")


@app.command()
def evaluate(
    policy: Annotated[str, typer.Option(help="expert or random.")] = "expert",
    num: Annotated[int, typer.Option(help="Goals to play (the first NUM of the split).")] = 200,
    split: Annotated[str, typer.Option(help="train, test or all.")] = "test",
    seed: Annotated[int, typer.Option(help="Seed of the random policy.")] = 0,
) -> None:
    """Score the expert or a uniformly random policy over the admissible actions: mean score x100 and success %."""
    if policy not in ("expert", "random"):
        raise typer.BadParameter(f"policy={policy!r}; use expert or random")
    env = WebShopEnv()
    rng = random.Random(seed)
    task_ids = env.task_ids(split)[:num]
    scores, wins = [], 0
    for task_id in task_ids:
        _, info = env.reset(options={"task_id": task_id})
        while True:
            if policy == "expert":
                action = info["expert_action"]
            else:
                action = rng.choice(info["available_actions"])
                if action == SEARCH_PLACEHOLDER:
                    action = f"search[{env.goal['instruction_text']}]"
            _, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        scores.append(info["score"])
        wins += info["won"]
    console.print(
        f"{policy}: {len(task_ids)} goals of {split}, score {100 * sum(scores) / len(scores):.1f}, "
        f"success {100 * wins / len(task_ids):.1f} %"
    )
