"""An evaluation report from episodes: Avg@n, Pass@k for k = 1..n, diversity and per-env success breakdowns.

Correct means the episode was won (``Episode.won``: the env's own success: a math answer equal to the reference,
an ALFWorld goal reached, a WebShop score of 1, every BFCL turn passed). Score is the episode return. A task's
samples are the episodes of its group (``group_id``), so ``resrl-agent eval`` plays n samples of each task.

Per-env extras come from the env's own spec (:class:`envs.spec.EnvSpec`): a breakdown by its category
(``category_key`` in the infos, else ``category_of_task``: ALFWorld's task types, math's sources, BFCL's categories)
and its ``episode_metrics`` (ALFWorld's goal-condition success, WebShop's mean score, BFCL multi-turn accuracy, math
Avg@n per source).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import envs
from envs.spec import EnvSpec, EpisodeOutcome
from resrl_agent.eval.metrics import distinct_n, mean_pairwise_edit_similarity, pass_at_k, wilson_interval
from resrl_agent.eval.summary import summarize
from resrl_agent.types import Episode

__all__ = ["EvalReport", "build_report", "report_rows", "write_report"]

MAX_DIVERSITY_SAMPLES = 16  # pairwise edit similarity is quadratic in samples and in length: bound both
MAX_DIVERSITY_TOKENS = 512


@dataclass(frozen=True)
class EvalReport:
    env_id: str
    num_tasks: int
    samples_per_task: int
    num_episodes: int
    avg_at_n: float  # mean success over all samples of all tasks (Avg@n)
    mean_score: float  # mean episode return
    pass_at_k: dict[int, float]  # unbiased Pass@k, k = 1..n
    success_ci95: tuple[float, float]
    distinct_2: float  # mean over tasks of distinct-2 of its samples' response tokens
    edit_similarity: float  # mean over tasks of the mean pairwise edit similarity of its samples (NaN for n = 1)
    mean_turns: float
    invalid_format_rate: float
    stop_reasons: dict[str, int]
    breakdown: dict[str, dict[str, float]] = field(default_factory=dict)  # category -> metrics
    env_metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["pass_at_k"] = {str(k): v for k, v in self.pass_at_k.items()}
        data["success_ci95"] = list(self.success_ci95)
        return _finite(data)


def _finite(value: Any) -> Any:
    """JSON has no NaN: write None instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _outcome(episode: Episode) -> EpisodeOutcome:
    return EpisodeOutcome(episode.task_id, episode.won, [t.info for t in episode.turns])


def _category(episode: Episode, spec: EnvSpec | None, categories: Mapping[str, str] | None) -> str | None:
    """The info's ``spec.category_key``, else ``categories[task_id]``, else ``spec.category_of_task``."""
    key = spec.category_key if spec is not None else None
    value = _outcome(episode).last(key) if key else None
    if value is None and categories is not None:
        value = categories.get(episode.task_id)
    if value is None and spec is not None and spec.category_of_task is not None:
        value = spec.category_of_task(episode.task_id)
    return None if value is None else str(value)


def _groups(episodes: Sequence[Episode]) -> dict[str, list[Episode]]:
    groups: dict[str, list[Episode]] = {}
    for episode in episodes:
        groups.setdefault(episode.group_id, []).append(episode)
    return groups


def _pass_curve(groups: Sequence[Sequence[Episode]], n: int) -> dict[int, float]:
    return {
        k: math.fsum(pass_at_k(len(g), sum(e.won for e in g), k) for g in groups) / len(groups) for k in range(1, n + 1)
    }


def build_report(
    episodes: Sequence[Episode], *, categories: Mapping[str, str] | None = None, max_k: int | None = None
) -> EvalReport:
    """Aggregate evaluation episodes (n per task, grouped by ``group_id``) into an :class:`EvalReport`.

    ``categories`` maps task ids to a category where the episodes' infos do not name one.
    """
    if not episodes:
        raise ValueError("build_report needs at least one episode; the eval produced none")
    groups = list(_groups(episodes).values())
    n = min(len(g) for g in groups)
    if max_k is not None:
        n = min(n, max_k)
    summary = summarize(episodes)
    wins = summary.won

    distinct, similarity = [], []
    for group in groups:
        samples = [[i for t in e.turns for i in t.response_ids][:MAX_DIVERSITY_TOKENS] for e in group]
        distinct.append(distinct_n(samples, 2))
        if len(samples) > 1:
            similarity.append(mean_pairwise_edit_similarity(samples[:MAX_DIVERSITY_SAMPLES]))

    env_id = episodes[0].env_id
    spec = envs.SPECS.get(env_id)  # episodes of an env not installed here: no env extras
    by_category: dict[str, list[list[Episode]]] = {}
    for group in groups:
        label = _category(group[0], spec, categories)
        if label is not None:
            by_category.setdefault(label, []).append(group)
    breakdown = {}
    for label, members in sorted(by_category.items()):
        flat = [e for g in members for e in g]
        breakdown[label] = {
            "tasks": float(len(members)),
            "episodes": float(len(flat)),
            "success": sum(e.won for e in flat) / len(flat),
            "mean_score": math.fsum(e.total_return for e in flat) / len(flat),
            f"pass@{n}": _pass_curve(members, n)[n],
        }

    env_metrics: dict[str, float] = {}
    if spec is not None and spec.episode_metrics is not None:
        env_metrics = spec.episode_metrics([_outcome(e) for e in episodes], breakdown, n)

    return EvalReport(
        env_id=env_id,
        num_tasks=len(groups),
        samples_per_task=n,
        num_episodes=len(episodes),
        avg_at_n=wins / len(episodes),
        mean_score=summary.mean_return,
        pass_at_k=_pass_curve(groups, n),
        success_ci95=wilson_interval(wins, len(episodes)),
        distinct_2=math.fsum(distinct) / len(distinct),
        edit_similarity=math.fsum(similarity) / len(similarity) if similarity else float("nan"),
        mean_turns=summary.mean_turns,
        invalid_format_rate=summary.invalid_format_rate,
        stop_reasons=summary.stop_reasons,
        breakdown=breakdown,
        env_metrics=env_metrics,
    )


def report_rows(report: EvalReport) -> list[tuple[str, str]]:
    """(name, value) rows for a table."""
    n = report.samples_per_task
    low, high = report.success_ci95
    ks = sorted({1, 2, 4, 8, 16, 32, 64, 128, n} & set(report.pass_at_k))
    rows = [
        ("env", report.env_id),
        ("tasks x samples", f"{report.num_tasks} x {n}"),
        (f"Avg@{n}", f"{report.avg_at_n:.4f} (95% CI {low:.3f}-{high:.3f})"),
        *[(f"Pass@{k}", f"{report.pass_at_k[k]:.4f}") for k in ks],
        ("mean score", f"{report.mean_score:.4f}"),
        ("distinct-2", f"{report.distinct_2:.4f}"),
        ("edit similarity", "n/a" if math.isnan(report.edit_similarity) else f"{report.edit_similarity:.4f}"),
        ("mean turns", f"{report.mean_turns:.2f}"),
        ("invalid format rate", f"{report.invalid_format_rate:.4f}"),
        ("stop reasons", ", ".join(f"{k}={v}" for k, v in sorted(report.stop_reasons.items()))),
    ]
    rows += [(key, f"{value:.4f}") for key, value in report.env_metrics.items()]
    for label, metrics in report.breakdown.items():
        rows.append(
            (
                f"  {label}",
                f"success {metrics['success']:.3f}, score {metrics['mean_score']:.3f}, {int(metrics['tasks'])} tasks",
            )
        )
    return rows


def write_report(report: EvalReport, out_dir: str | os.PathLike[str], *, plot: bool = True) -> dict[str, Path]:
    """Write ``eval_report.json`` and (with matplotlib) ``pass_at_k.png`` into ``out_dir``; returns the paths."""
    target = Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    paths = {"json": target / "eval_report.json"}
    paths["json"].write_text(json.dumps(report.to_dict(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    if plot:
        from resrl_agent.eval.plot import plot_pass_at_k_curves

        title = f"{report.env_id}: Pass@k ({report.num_tasks} tasks x {report.samples_per_task} samples)"
        paths["png"] = plot_pass_at_k_curves({report.env_id: report.pass_at_k}, target / "pass_at_k.png", title=title)
    return paths
