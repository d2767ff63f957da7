"""The one metrics sink (JSONL, plus TensorBoard when it is installed) and the ``plot`` command's PNGs."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

__all__ = ["MetricsSink", "plot_run", "read_metrics"]

logger = logging.getLogger(__name__)


class MetricsSink:
    """Appends one JSON object per record to ``RUN_DIR/metrics.jsonl``; mirrors scalars to TensorBoard if present.

    Without the ``tensorboard`` package the JSONL file is the whole record (``resrl-agent plot`` reads it).
    """

    def __init__(self, run_dir: str | Path, *, tensorboard: bool = True) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional: JSONL only
                logger.debug("tensorboard is not installed; metrics go to %s only", self.path)
            else:
                self._writer = SummaryWriter(str(Path(run_dir) / "tb"))

    def log(self, step: int, metrics: dict[str, float], *, phase: str = "rl") -> None:
        record = {"phase": phase, "step": step}
        for key, value in metrics.items():
            v = float(value)
            record[key] = v if math.isfinite(v) else None  # type: ignore[assignment]
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for key, value in metrics.items():
                if math.isfinite(float(value)):
                    self._writer.add_scalar(f"{phase}/{key}", float(value), step)
            self._writer.flush()

    def truncate_after(self, phase: str, step: int) -> None:
        """Drop records of ``phase`` past ``step`` (a resumed run rewrites them)."""
        if not self.path.is_file():
            return
        kept = [r for r in read_metrics(self.path) if not (r.get("phase") == phase and int(r["step"]) > step)]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    file = Path(path)
    if file.is_dir():
        file = file / "metrics.jsonl"
    return [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]


PLOTS = {
    "rewards": ["rollout/return_mean", "rollout/success"],
    "loss": ["loss/total", "loss/pg_loss", "loss/clip_frac", "loss/ppo_kl"],
    "advantages": ["adv/turn_mean", "adv/turn_std", "adv/turn_min", "adv/turn_max"],
    "resrl": ["resrl/neg_weight_mean", "resrl/residual_energy_mean", "resrl/projection_energy_mean"],
    "optim": ["optim/grad_norm", "optim/lr", "loss/entropy"],
    "time": ["time/rollout_s", "time/update_s", "perf/train_tokens_per_s"],
    "sft": ["sft/nll"],
}


def plot_run(run_dir: str | Path) -> list[Path]:
    """One PNG per metric family under ``RUN_DIR/plots``; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(run_dir)
    out_dir = Path(run_dir) / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, keys in PLOTS.items():
        series = {}
        for key in keys:
            points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
            if points:
                series[key] = points
        if not series:
            continue
        fig, axes = plt.subplots(len(series), 1, figsize=(7, 2.2 * len(series)), squeeze=False)
        for ax, (key, points) in zip(axes[:, 0], series.items(), strict=True):
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", markersize=3)
            ax.set_ylabel(key.split("/")[-1])
            ax.set_title(key, fontsize=9)
            ax.grid(alpha=0.3)
        axes[-1, 0].set_xlabel("step (iteration; optimizer step for sft)")
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written
