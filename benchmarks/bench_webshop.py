"""WebShop speed and policy baselines, side by side in one run.

- Start-up: catalogue load + goal building, and the BM25 index build (bm25s), on the shipped 2,400 products.
- Search latency per query (goal instructions as queries): our bm25s engine vs a plain-Python Lucene-BM25
  reference over the same analyzed tokens, with the ratio; the reference also checks that both return the same
  top-50 lists (ties by catalogue order).
- Env throughput: resets/s and steps/s of expert episodes and of a uniformly random policy over the admissible
  actions (its searches use the instruction text), plus each policy's score (mean x100) and success %.

    python benchmarks/bench_webshop.py            # 500 queries, 500 goals of the test split
    python benchmarks/bench_webshop.py --quick    # 100 / 100
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from collections import Counter

from envs.webshop.catalogue import load_catalogue
from envs.webshop.env import SEARCH_PLACEHOLDER, WebShopEnv
from envs.webshop.search import K1, SEARCH_RETURN_N, B, SearchEngine, analyze, product_document


class ReferenceBM25:
    """Plain-Python Lucene BM25 (k1 0.9, b 0.4) over the same tokens, for the side-by-side comparison."""

    def __init__(self, documents: list[list[str]]) -> None:
        self.lengths = [len(d) for d in documents]
        self.avgdl = sum(self.lengths) / len(documents)
        self.postings: dict[str, list[tuple[int, int]]] = {}
        for index, tokens in enumerate(documents):
            for token, tf in Counter(tokens).items():
                self.postings.setdefault(token, []).append((index, tf))
        self.num_documents = len(documents)

    def search(self, query: str, k: int = SEARCH_RETURN_N) -> list[int]:
        scores: dict[int, float] = {}
        for token in analyze(query):
            postings = self.postings.get(token, [])
            idf = math.log(1 + (self.num_documents - len(postings) + 0.5) / (len(postings) + 0.5))
            for index, tf in postings:
                norm = K1 * (1 - B + B * self.lengths[index] / self.avgdl)
                scores[index] = scores.get(index, 0.0) + idf * tf / (tf + norm)
        ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
        return [index for index, score in ranked[:k] if score > 0]


def _time_per_call(function, queries: list[str]) -> tuple[list[list[int]], list[float]]:  # type: ignore[no-untyped-def]
    results, times = [], []
    for query in queries:
        start = time.perf_counter()
        results.append(function(query))
        times.append(time.perf_counter() - start)
    return results, times


def _run_policy(env: WebShopEnv, policy: str, task_ids: list[str], seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    steps, scores, wins = 0, [], 0
    start = time.perf_counter()
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
            steps += 1
            if terminated or truncated:
                break
        scores.append(info["score"])
        wins += info["won"]
    elapsed = time.perf_counter() - start
    return {
        "steps_per_s": steps / elapsed,
        "episodes_per_s": len(task_ids) / elapsed,
        "score": 100 * statistics.fmean(scores),
        "success": 100 * wins / len(task_ids),
        "steps_per_episode": steps / len(task_ids),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 queries and 100 goals")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--goals", type=int, default=500)
    args = parser.parse_args()
    num_queries, num_goals = (100, 100) if args.quick else (args.queries, args.goals)

    start = time.perf_counter()
    load_catalogue.cache_clear()
    catalogue = load_catalogue()
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    engine = SearchEngine(catalogue.products)
    index_s = time.perf_counter() - start
    reference = ReferenceBM25([analyze(product_document(p)) for p in catalogue.products])
    print(
        f"catalogue: {len(catalogue.products)} products, {len(catalogue.goals)} goals; "
        f"load + goals {load_s * 1000:.0f} ms, BM25 index {index_s * 1000:.0f} ms"
    )

    queries = [goal["instruction_text"] for goal in catalogue.goals[:num_queries]]
    ours, our_times = _time_per_call(engine.search, queries)
    theirs, ref_times = _time_per_call(reference.search, queries)
    same = sum(a == b for a, b in zip(ours, theirs, strict=True))
    p50, p95 = statistics.median(our_times), sorted(our_times)[int(0.95 * len(our_times))]
    ref_p50 = statistics.median(ref_times)
    print(
        f"search ({num_queries} instruction queries): bm25s p50 {p50 * 1e3:.2f} ms, p95 {p95 * 1e3:.2f} ms; "
        f"plain-Python reference p50 {ref_p50 * 1e3:.2f} ms; speed-up x{ref_p50 / p50:.1f}; "
        f"identical top-50 lists {same}/{num_queries}"
    )

    env = WebShopEnv()
    task_ids = env.task_ids("test")[:num_goals]
    start = time.perf_counter()
    for task_id in task_ids:
        env.reset(options={"task_id": task_id})
    resets_per_s = len(task_ids) / (time.perf_counter() - start)
    expert = _run_policy(env, "expert", task_ids, seed=0)
    rand = _run_policy(env, "random", task_ids, seed=0)
    print(f"env: {resets_per_s:.0f} resets/s")
    for name, stats in (("expert", expert), ("random", rand)):
        print(
            f"{name:>6}: {stats['steps_per_s']:.0f} steps/s, {stats['episodes_per_s']:.0f} episodes/s, "
            f"{stats['steps_per_episode']:.1f} steps/episode, score {stats['score']:.1f}, "
            f"success {stats['success']:.1f} %"
        )
    print(f"expert/random steps/s ratio: {expert['steps_per_s'] / rand['steps_per_s']:.2f}")


if __name__ == "__main__":
    main()
