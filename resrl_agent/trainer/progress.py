"""A rich progress display for the driver: one bar per phase, the latest key metrics beside it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from resrl_agent.config import RunConfig

__all__ = ["progress_display", "run_with_progress", "sft_with_progress"]

_SHOWN = (
    ("rollout/success", "succ"),
    ("rollout/return_mean", "ret"),
    ("loss/total", "loss"),
    ("resrl/neg_weight_mean", "w-"),
    ("loss/entropy", "ent"),
    ("sft/nll", "nll"),
    ("eval/success", "eval"),
    ("dagger/success", "won"),
    ("dagger/invalid_action_rate", "inadmissible"),
)


def _line(metrics: dict[str, float]) -> str:
    parts = [f"{name} {metrics[key]:.3f}" for key, name in _SHOWN if key in metrics and metrics[key] == metrics[key]]
    return "  ".join(parts)


@contextlib.contextmanager
def progress_display(
    config: RunConfig, console: Console, *, rl: bool = True
) -> Iterator[Callable[[str, dict[str, float]], None]]:
    """A live display of a run's phases (``rl=False``: the SFT bar only); yields the ``progress`` callback a trainer
    takes."""
    t = config.trainer
    sft_steps = t.sft_epochs * -(-t.sft_tasks * config.rollout.max_turns // t.sft_batch_rows)
    with Progress(
        TextColumn("[bold]{task.description:<6}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=False,
    ) as progress:
        rl_bar = progress.add_task("rl", total=t.iterations, info="", visible=rl)
        sft = progress.add_task("sft", total=sft_steps or None, info="", visible=t.sft_epochs > 0)
        play = progress.add_task("play", total=None, info="", visible=False)  # the episodes of the current rollout

        def on_metrics(phase: str, metrics: dict[str, float]) -> None:
            if "sft/total_steps" in metrics:  # known once the expert episodes are collected; a DAgger round adds some
                progress.update(sft, total=int(metrics["sft/total_steps"]))
            if phase == "episodes":  # a rollout's progress (the local driver's; not a metrics record)
                what = "eval" if metrics["evaluation"] else "play"
                done, total = int(metrics["done"]), int(metrics["total"])
                if done <= 1:  # a new rollout: restart the bar's clock
                    progress.reset(play, total=total, visible=True, description=what, info="episodes")
                progress.update(play, completed=done)
            elif phase == "rl":
                progress.update(rl_bar, completed=int(metrics["step"]) + 1, info=_line(metrics))
            elif phase == "sft":
                progress.update(sft, completed=int(metrics["step"]), info=_line(metrics))
            else:
                progress.console.log(f"{phase}: {_line(metrics)}")

        yield on_metrics


def _trainer_class(config: RunConfig) -> type[Any]:
    if config.trainer.driver == "ray":
        from resrl_agent.trainer.ray_driver import RayTrainer

        return RayTrainer
    from resrl_agent.trainer.loop import Trainer

    return Trainer


def run_with_progress(
    config: RunConfig, console: Console, *, resume: bool = False, force: bool = False
) -> dict[str, Any]:
    """Build the configured trainer (local or Ray) and run it under a live progress bar."""
    with progress_display(config, console) as on_metrics:
        trainer = _trainer_class(config)(config, progress=on_metrics)
        try:
            return trainer.run(resume=resume, force=force)  # type: ignore[no-any-return]
        finally:
            trainer.close()


def sft_with_progress(config: RunConfig, console: Console, *, force: bool = False) -> list[dict[str, float]]:
    """The SFT warm start alone (``resrl-agent sft``) under the same display; saves RUN_DIR/checkpoints/sft.pt."""
    with progress_display(config, console, rl=False) as on_metrics:
        trainer = _trainer_class(config)(config, progress=on_metrics)
        try:
            trainer.claim_run_dir(force=force)
            history: list[dict[str, float]] = trainer.run_sft()
            trainer.save("sft")
            return history
        finally:
            trainer.close()
