"""Pass@k curves as PNG (matplotlib with the Agg backend: no display needed)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from resrl_agent.eval.report import EvalReport

__all__ = ["plot_pass_at_k", "plot_pass_at_k_curves"]


def plot_pass_at_k_curves(
    curves: Mapping[str, Mapping[int, float]], path: str | os.PathLike[str], *, title: str = "Pass@k"
) -> Path:
    """One line per named curve (k -> Pass@k), k on a log2 axis; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name, curve in curves.items():
        ks: Sequence[int] = sorted(curve)
        ax.plot(ks, [curve[k] for k in ks], marker="o" if len(ks) <= 16 else None, label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (samples per task)")
    ax.set_ylabel("Pass@k")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    ax.set_title(title)
    if len(curves) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target)
    plt.close(fig)
    return target


def plot_pass_at_k(report: EvalReport, path: str | os.PathLike[str]) -> Path:
    """The report's Pass@k curve for k = 1..n."""
    title = f"{report.env_id}: Pass@k ({report.num_tasks} tasks x {report.samples_per_task} samples)"
    return plot_pass_at_k_curves({report.env_id: report.pass_at_k}, path, title=title)
