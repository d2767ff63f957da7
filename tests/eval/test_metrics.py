"""Pass@k and Fisher's exact test against brute-force enumeration, Avg@k and diversity metrics against hand-computed
numbers."""

from __future__ import annotations

import math
from fractions import Fraction
from itertools import combinations, pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resrl_agent.eval.metrics import (
    avg_at_k,
    distinct_n,
    distinct_n_per_group,
    edit_distance,
    edit_similarity,
    fisher_greater,
    mean_pairwise_edit_similarity,
    mean_pass_at_k,
    pairwise_edit_similarity_per_group,
    pass_at_k,
    wilson_interval,
)

SETTINGS = settings(max_examples=50, deadline=None)


def brute_pass_at_k(n: int, c: int, k: int) -> float:
    """Fraction of the k-subsets of n samples (the first c correct) that hold a correct one."""
    subsets = list(combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


def test_pass_at_k_by_hand() -> None:
    # n = 5, c = 2, k = 2: 1 - C(3, 2) / C(5, 2) = 1 - 3 / 10 = 0.7.
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 3, 3) == 1.0  # n - c = 2 < k: every 3-subset holds a correct sample


@pytest.mark.parametrize("n", range(1, 8))
def test_pass_at_k_matches_enumeration(n: int) -> None:
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12)


@pytest.mark.parametrize(("c", "k"), [(1, 1), (1, 1000), (3, 7), (17, 256), (512, 512), (1000, 10), (0, 64)])
def test_pass_at_k_stable_at_n_1024(c: int, k: int) -> None:
    exact = 1 - Fraction(math.comb(1024 - c, k), math.comb(1024, k))
    assert pass_at_k(1024, c, k) == pytest.approx(float(exact), rel=1e-12, abs=1e-15)


@SETTINGS
@given(n=st.integers(1, 1024), data=st.data())
def test_pass_at_k_monotone_in_k_and_c_over_n_at_1(n: int, data: st.DataObject) -> None:
    c = data.draw(st.integers(0, n))
    assert pass_at_k(n, c, 1) == pytest.approx(c / n, abs=1e-12)
    ks = sorted(data.draw(st.lists(st.integers(1, n), min_size=2, max_size=6)))
    values = [pass_at_k(n, c, k) for k in ks]
    assert all(a <= b + 1e-12 for a, b in pairwise(values))
    assert all(0.0 <= v <= 1.0 for v in values)


def test_pass_at_k_validation() -> None:
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


def test_avg_and_mean_pass_at_k() -> None:
    # Task 1: [1, 0, 1, 1] -> 0.75; task 2: [0, 0] -> 0; Avg@k = (0.75 + 0) / 2 = 0.375.
    assert avg_at_k([[1, 0, 1, 1], [0, 0]]) == pytest.approx(0.375)
    # Pass@2: task 1 (n 4, c 3) = 1 - C(1, 2) / C(4, 2) = 1; task 2 = 0 -> 0.5.
    assert mean_pass_at_k([[True, False, True, True], [False, False]], 2) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        avg_at_k([])


def test_distinct_n_by_hand() -> None:
    # "a b a b" and "a b c": bigrams ab, ba, ab | ab, bc -> 5 in all, 3 unique -> 0.6; unigrams 3 / 7.
    samples = ["a b a b", "a b c"]
    assert distinct_n(samples, 2) == pytest.approx(3 / 5)
    assert distinct_n(samples, 1) == pytest.approx(3 / 7)
    assert distinct_n([[1, 2], [1, 2]], 2) == pytest.approx(1 / 2)  # token ids: (1, 2) twice
    assert distinct_n(["a"], 2) == 0.0  # no bigram at all
    per_group = distinct_n_per_group(["a b", "a b", "x y", "y x"], ["g", "g", "h", "h"], 2)
    assert per_group == {"g": 0.5, "h": 1.0}


def test_edit_similarity_by_hand() -> None:
    # kitten -> sitting: k->s, e->i, insert g = 3 edits; similarity 1 - 3 / 7.
    assert edit_distance(list("kitten"), list("sitting")) == 3
    assert edit_similarity(list("kitten"), list("sitting")) == pytest.approx(1 - 3 / 7)
    assert edit_similarity("go to desk 1", "go to desk 2") == pytest.approx(0.75)  # 1 of 4 words
    assert edit_similarity([], []) == 1.0
    # Pairs of ["a b", "a c", "a b"]: 0.5, 1.0, 0.5 -> mean 2 / 3.
    assert mean_pairwise_edit_similarity(["a b", "a c", "a b"]) == pytest.approx(2 / 3)
    assert math.isnan(mean_pairwise_edit_similarity(["alone"]))
    per_group = pairwise_edit_similarity_per_group(["a b", "a c", "x"], [1, 1, 2])
    assert per_group[1] == pytest.approx(0.5) and math.isnan(per_group[2])


def naive_edit_distance(a: list[int], b: list[int]) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        cur = [i]
        for j, y in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


@SETTINGS
@given(a=st.lists(st.integers(0, 3), max_size=12), b=st.lists(st.integers(0, 3), max_size=12))
def test_edit_distance_matches_naive_dp(a: list[int], b: list[int]) -> None:
    assert edit_distance(a, b) == naive_edit_distance(a, b)
    assert edit_distance(a, b) == edit_distance(b, a)


def test_fisher_greater_by_hand() -> None:
    # 1/3 vs 3/3: 4 wins among 6; B holds all 3 of its draws as wins in C(4, 3) of C(6, 3) splits: 4 / 20.
    assert fisher_greater(1, 3, 3, 3) == pytest.approx(0.2)
    # 0/30 vs 2/30: both wins fall in B with chance C(30, 2) / C(60, 2) = 435 / 1770.
    assert fisher_greater(0, 30, 2, 30) == pytest.approx(435 / 1770)
    # 0/160 vs 8/160 (the main job's SFT over untrained): C(160, 8) / C(320, 8).
    assert fisher_greater(0, 160, 8, 160) == pytest.approx(math.comb(160, 8) / math.comb(320, 8))
    assert fisher_greater(0, 160, 8, 160) == pytest.approx(0.00357, abs=1e-5)
    assert fisher_greater(5, 30, 0, 30) == 1.0  # B won nothing: "at least 0" always holds
    assert fisher_greater(0, 30, 0, 30) == 1.0


@SETTINGS
@given(data=st.data())
def test_fisher_greater_matches_enumeration(data: st.DataObject) -> None:
    total_a = data.draw(st.integers(1, 6))
    total_b = data.draw(st.integers(1, 6))
    won_a = data.draw(st.integers(0, total_a))
    won_b = data.draw(st.integers(0, total_b))
    outcomes = [True] * (won_a + won_b) + [False] * (total_a + total_b - won_a - won_b)
    splits = list(combinations(range(len(outcomes)), total_b))  # which pooled episodes are B's
    extreme = sum(sum(outcomes[i] for i in split) >= won_b for split in splits)
    assert fisher_greater(won_a, total_a, won_b, total_b) == pytest.approx(extreme / len(splits))
    if won_b < total_b and won_a > 0:  # one more B win (one fewer A win, same margin) is stronger evidence
        assert fisher_greater(won_a - 1, total_a, won_b + 1, total_b) < fisher_greater(won_a, total_a, won_b, total_b)


def test_fisher_greater_validation() -> None:
    with pytest.raises(ValueError, match="0 <= won <= total"):
        fisher_greater(3, 2, 0, 2)
    with pytest.raises(ValueError, match="total >= 1"):
        fisher_greater(0, 0, 0, 2)


def test_wilson_interval_by_hand() -> None:
    z = 1.96
    # 0 of n: the interval is [0, z^2 / (n + z^2)]
    assert wilson_interval(0, 30) == (0.0, pytest.approx(z * z / (30 + z * z)))
    assert wilson_interval(0, 160)[1] == pytest.approx(0.02345, abs=1e-5)
    low, high = wilson_interval(8, 160)  # centre (p + z^2/2n) / (1 + z^2/n), half-width as in Wilson (1927)
    p, n = 8 / 160, 160
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (low, high) == (pytest.approx(centre - half), pytest.approx(centre + half))
    assert (round(low, 3), round(high, 3)) == (0.026, 0.096)
    assert wilson_interval(30, 30) == (pytest.approx(1 - z * z / (30 + z * z)), 1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)
