"""The one metrics reducer, the one metrics sink (JSONL, plus TensorBoard when it is installed) and the ``plot``
command's PNGs."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal, NamedTuple

from resrl_agent.files import append_line, atomic_write_text, read_jsonl

__all__ = ["METRIC_RULES", "MetricRule", "MetricsSink", "metric_rule", "plot_run", "read_metrics", "reduce_metrics"]

logger = logging.getLogger(__name__)

Fold = Literal["sum", "mean", "max", "min", "std"]


class MetricRule(NamedTuple):
    """How the values of one metric from several records combine into one.

    ``fold``: ``sum`` (counts), ``mean`` (weighted), ``max``, ``min``, or ``std`` (the pooled unbiased standard
    deviation of the union, from each record's std, its matching ``*_mean`` and its weight). ``weight``: the metric
    of the same record that weighs a mean or std (what it averages over); None takes the record's own weight.
    """

    fold: Fold
    weight: str | None = None


# Key pattern (fnmatch) -> rule; the first pattern that matches wins. The one table for every place that combines
# metrics: the micro-batches of an optimizer step (records weighted by their tokens), data-parallel ranks into the
# whole batch's metrics (weighted by their tokens), and the optimizer steps of an update (weight 1 each).
METRIC_RULES: tuple[tuple[str, MetricRule], ...] = (
    ("guard/skipped_step", MetricRule("sum")),  # a step's 0 or 1: an update logs how many of its steps were skipped
    ("resrl/pos_tokens", MetricRule("sum")),
    ("resrl/neg_tokens", MetricRule("sum")),
    ("resrl/groups_processed", MetricRule("sum")),
    ("time/*", MetricRule("max")),  # ranks run side by side: the slowest one's time
    ("*_max", MetricRule("max")),
    ("*_min", MetricRule("min")),
    ("resrl/neg_weight_std", MetricRule("std", weight="resrl/neg_tokens")),  # statistics of the negative tokens
    ("resrl/neg_weight_mean", MetricRule("mean", weight="resrl/neg_tokens")),
    ("resrl/neg_reweighted_frac", MetricRule("mean", weight="resrl/neg_tokens")),
    ("resrl/*_energy_mean", MetricRule("mean", weight="resrl/groups_processed")),  # means over the fitted groups
    ("*_std", MetricRule("std")),
    ("*", MetricRule("mean")),
)


def metric_rule(key: str) -> MetricRule:
    """The rule of ``key``: the first pattern of :data:`METRIC_RULES` that matches it."""
    return next(rule for pattern, rule in METRIC_RULES if fnmatchcase(key, pattern))


def reduce_metrics(records: Iterable[tuple[Mapping[str, float], float]]) -> dict[str, float]:
    """Combine ``(metrics, weight)`` records into one metrics dict, key by key, by :func:`metric_rule`.

    A record's weight is what its means average over (its tokens; 1 for an optimizer step of an update). A key
    missing from a record is left out of that record's share. A mean or std leaves out the records whose weight is
    0, and a std those without the matching ``*_mean``; when no record weighs anything, a mean is the plain mean of
    the values and a std is 0. NaN propagates (a skipped step's NaN ``loss/total`` makes the update's NaN).
    """
    parts = [(metrics, float(weight)) for metrics, weight in records]
    out: dict[str, float] = {}
    for key in dict.fromkeys(k for metrics, _ in parts for k in metrics):
        rule = metric_rule(key)
        have = [
            (float(m[key]), w if rule.weight is None else float(m.get(rule.weight, 0.0)), m)
            for m, w in parts
            if key in m
        ]
        if rule.fold == "sum":
            out[key] = sum(v for v, _, _ in have)
        elif rule.fold == "max":
            out[key] = max(v for v, _, _ in have)
        elif rule.fold == "min":
            out[key] = min(v for v, _, _ in have)
        elif rule.fold == "std":
            mean_key = key[: -len("_std")] + "_mean"
            out[key] = _pooled_std([(v, w, float(m[mean_key])) for v, w, m in have if w > 0 and mean_key in m])
        else:
            weighted = [(v, w) for v, w, _ in have if w > 0]
            total = sum(w for _, w in weighted)
            out[key] = sum(v * w for v, w in weighted) / total if total > 0 else sum(v for v, _, _ in have) / len(have)
    return out


def _pooled_std(rows: list[tuple[float, float, float]]) -> float:
    """The unbiased std of the union of samples given as (std, count, mean) each: within plus between spread."""
    total = sum(w for _, w, _ in rows)
    if total <= 1:
        return 0.0
    mean = sum(w * mu for _, w, mu in rows) / total
    spread = sum((w - 1) * std * std + w * (mu - mean) ** 2 for std, w, mu in rows)
    return float((spread / (total - 1)) ** 0.5)


class MetricsSink:
    """Appends one JSON object per record to ``RUN_DIR/metrics.jsonl``; mirrors scalars to TensorBoard if present.

    Without the ``tensorboard`` package the JSONL file is the whole record (``resrl-agent plot`` reads it).
    """

    def __init__(self, run_dir: str | Path, *, tensorboard: bool = True) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self._tensorboard = tensorboard
        self._writer: Any = None
        self._opened = False  # nothing is created in the run dir before the first record

    def _open(self) -> None:
        self._opened = True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional: JSONL only
                logger.debug("tensorboard is not installed; metrics go to %s only", self.path)
            else:
                self._writer = SummaryWriter(str(self.path.parent / "tb"))

    def log(self, step: int, metrics: dict[str, float], *, phase: str = "rl") -> None:
        if not self._opened:
            self._open()
        record = {"phase": phase, "step": step}
        for key, value in metrics.items():
            v = float(value)
            record[key] = v if math.isfinite(v) else None  # type: ignore[assignment]
        append_line(self.path, json.dumps(record))
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
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of ``RUN_DIR/metrics.jsonl`` (or of that file): a torn last line is skipped with a warning, any
    other bad line is a RecordError naming file and line."""
    file = Path(path)
    if file.is_dir():
        file = file / "metrics.jsonl"
    return read_jsonl(file)


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
