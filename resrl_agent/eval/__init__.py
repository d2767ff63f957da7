"""Evaluation metrics: Avg@k, Pass@k and per-group diversity of sampled responses."""

from __future__ import annotations

from resrl_agent.eval.metrics import (
    avg_at_k,
    distinct_n,
    distinct_n_per_group,
    edit_similarity,
    mean_pairwise_edit_similarity,
    mean_pass_at_k,
    pairwise_edit_similarity_per_group,
    pass_at_k,
)

__all__ = [
    "avg_at_k",
    "distinct_n",
    "distinct_n_per_group",
    "edit_similarity",
    "mean_pairwise_edit_similarity",
    "mean_pass_at_k",
    "pairwise_edit_similarity_per_group",
    "pass_at_k",
]
