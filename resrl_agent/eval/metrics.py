"""Avg@k, unbiased Pass@k, per-group diversity (distinct-n, mean pairwise edit similarity), the Wilson interval of a
success rate and Fisher's exact test of one success rate over another.

Plain Python and numpy: evaluation runs on the driver and in notebooks, without torch.
A "sample" for the diversity metrics is a sequence of tokens (token ids or any hashables); a `str`
is split on whitespace, so words are the tokens.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from itertools import combinations

import numpy as np

Sample = Sequence[Hashable] | str

__all__ = [
    "avg_at_k",
    "distinct_n",
    "distinct_n_per_group",
    "edit_distance",
    "edit_similarity",
    "fisher_greater",
    "mean_pairwise_edit_similarity",
    "mean_pass_at_k",
    "pairwise_edit_similarity_per_group",
    "pass_at_k",
    "wilson_interval",
]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased Pass@k from n samples of which c are correct: 1 - C(n - c, k) / C(n, k).

    The ratio is the product over i = n - c + 1 .. n of (1 - k / i); we sum its logs with log1p and
    return -expm1(sum), which stays exact for n = 1024 and for values near 0 or 1, where the binomial
    coefficients themselves would overflow a float.
    """
    if n < 1 or not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs n >= 1, 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}.")
    if n - c < k:
        return 1.0  # every k-subset holds a correct sample
    log_fail = math.fsum(math.log1p(-k / i) for i in range(n - c + 1, n + 1))
    return -math.expm1(log_fail)


def mean_pass_at_k(correct: Sequence[Sequence[bool]], k: int) -> float:
    """Pass@k averaged over tasks; correct[i] holds the n_i correctness flags of task i's samples."""
    if not correct:
        raise ValueError("mean_pass_at_k needs at least one task.")
    return math.fsum(pass_at_k(len(flags), sum(bool(f) for f in flags), k) for flags in correct) / len(correct)


def avg_at_k(scores: Sequence[Sequence[float]]) -> float:
    """Avg@k: the mean score of the k samples of each task, averaged over tasks (scores[i][j])."""
    if not scores or any(len(s) == 0 for s in scores):
        raise ValueError("avg_at_k needs at least one task and at least one sample per task.")
    return math.fsum(math.fsum(s) / len(s) for s in scores) / len(scores)


def fisher_greater(won_a: int, total_a: int, won_b: int, total_b: int) -> float:
    """One-sided Fisher exact p-value that policy B's success rate is above policy A's.

    With both margins fixed (``won_a + won_b`` successes among ``total_a + total_b`` episodes), the number of B's
    successes is hypergeometric; the p-value is the chance it is at least ``won_b``. Exact integer arithmetic, so it
    holds for thousands of episodes. Episodes are treated as independent, which samples of the same task are not
    quite: read it as a guide next to the confidence intervals, not as a verdict.
    """
    if min(total_a, total_b) < 1 or not 0 <= won_a <= total_a or not 0 <= won_b <= total_b:
        raise ValueError(
            f"fisher_greater needs 0 <= won <= total and total >= 1 for both; got {won_a}/{total_a}, {won_b}/{total_b}."
        )
    wins, n = won_a + won_b, total_a + total_b
    tail = sum(math.comb(wins, x) * math.comb(n - wins, total_b - x) for x in range(won_b, min(wins, total_b) + 1))
    return tail / math.comb(n, total_b)


def wilson_interval(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95 % (z = 1.96) Wilson score interval of a success rate; (0, 1) when there is nothing to count."""
    if total == 0:
        return (0.0, 1.0)
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _tokens(sample: Sample) -> list[Hashable]:
    if isinstance(sample, str):
        return list[Hashable](sample.split())
    return list(sample)


def distinct_n(samples: Sequence[Sample], n: int = 2) -> float:
    """Distinct-n over a set of samples: unique n-grams / all n-grams (0 when there is no n-gram)."""
    if n < 1:
        raise ValueError(f"distinct_n needs n >= 1; got n={n}.")
    seen: set[tuple[Hashable, ...]] = set()
    total = 0
    for sample in samples:
        toks = _tokens(sample)
        grams = [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def edit_distance(a: Sample, b: Sample) -> int:
    """Levenshtein distance between two token sequences (unit insert, delete, substitute).

    Row by row with numpy: substitutions and deletions come from the previous row; insertions chain
    along the row, which is a running minimum of (row[j] - j) plus j.
    """
    ta, tb = _tokens(a), _tokens(b)
    if len(ta) < len(tb):
        ta, tb = tb, ta  # loop over the longer one, vectorise over the shorter
    vocab: dict[Hashable, int] = {}
    xa = np.array([vocab.setdefault(t, len(vocab)) for t in ta], dtype=np.int64)
    xb = np.array([vocab.setdefault(t, len(vocab)) for t in tb], dtype=np.int64)
    m = len(xb)
    offsets = np.arange(m + 1, dtype=np.int64)
    prev = offsets.copy()
    for i, token in enumerate(xa, start=1):
        cur = np.empty(m + 1, dtype=np.int64)
        cur[0] = i
        cur[1:] = np.minimum(prev[1:] + 1, prev[:-1] + (xb != token))
        prev = np.minimum.accumulate(cur - offsets) + offsets
    return int(prev[m])


def edit_similarity(a: Sample, b: Sample) -> float:
    """1 - edit_distance / max(len(a), len(b)); 1.0 for two empty samples."""
    longest = max(len(_tokens(a)), len(_tokens(b)))
    return 1.0 - edit_distance(a, b) / longest if longest else 1.0


def mean_pairwise_edit_similarity(samples: Sequence[Sample]) -> float:
    """Mean edit similarity over all unordered pairs of samples; NaN with fewer than two samples."""
    pairs = [edit_similarity(a, b) for a, b in combinations(samples, 2)]
    return math.fsum(pairs) / len(pairs) if pairs else float("nan")


def _by_group(samples: Sequence[Sample], group_ids: Sequence[Hashable]) -> dict[Hashable, list[Sample]]:
    if len(samples) != len(group_ids):
        raise ValueError(f"{len(samples)} samples but {len(group_ids)} group ids; pass one group id per sample.")
    groups: dict[Hashable, list[Sample]] = {}
    for sample, gid in zip(samples, group_ids, strict=True):
        groups.setdefault(gid, []).append(sample)
    return groups


def distinct_n_per_group(samples: Sequence[Sample], group_ids: Sequence[Hashable], n: int = 2) -> dict[Hashable, float]:
    """Distinct-n of each group's samples, keyed by group id (first-appearance order)."""
    return {gid: distinct_n(group, n) for gid, group in _by_group(samples, group_ids).items()}


def pairwise_edit_similarity_per_group(
    samples: Sequence[Sample], group_ids: Sequence[Hashable]
) -> dict[Hashable, float]:
    """Mean pairwise edit similarity of each group's samples (NaN for a group of one)."""
    return {gid: mean_pairwise_edit_similarity(group) for gid, group in _by_group(samples, group_ids).items()}
