"""Pass@k curves and the held-out comparison as PNG (matplotlib with the Agg backend: no display needed)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["plot_heldout_success", "plot_pass_at_k_curves"]


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
    return _save(fig, path)


def plot_heldout_success(
    rows: Sequence[tuple[str, int, int]], path: str | os.PathLike[str], *, title: str = "held-out success"
) -> Path:
    """Bars of held-out success, one per policy ``(label, won, total)``, with 95 % Wilson intervals; the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from resrl_agent.eval.metrics import wilson_interval

    labels = [label for label, _, _ in rows]
    rates = [won / total if total else 0.0 for _, won, total in rows]
    intervals = [wilson_interval(won, total) for _, won, total in rows]
    low = [r - lo for r, (lo, _) in zip(rates, intervals, strict=True)]
    high = [hi - r for r, (_, hi) in zip(rates, intervals, strict=True)]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(rows), 3.6), dpi=120)
    ax.bar(labels, rates, yerr=[low, high], capsize=6, color="#4c78a8")
    for k, ((_, hi), (_, won, total)) in enumerate(zip(intervals, rows, strict=True)):
        ax.text(k, hi + 0.015, f"{won}/{total}", ha="center", va="bottom", fontsize=8)  # above the interval
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("success (95% Wilson CI)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Lay out, write and close a figure; returns the PNG path (its folder is made)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target)
    plt.close(fig)
    return target
