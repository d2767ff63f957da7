"""Trainer test fixtures: fresh tiny models, synthetic multi-turn episodes, and ONE session-scoped local Ray."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture()
def fresh_model(tiny_model_dir: Path) -> Any:
    """A private copy of the tiny model (training tests mutate it)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir)


def make_episodes(
    num_groups: int = 2,
    group_size: int = 3,
    num_turns: int = 2,
    *,
    vocab: int = 200,
    seed: int = 0,
    mode: str = "concat",
) -> list[Any]:
    """Synthetic token-exact-shaped episodes: random ids, winning samples where sample_idx is even."""
    from resrl_agent.types import Episode, Turn

    rng = random.Random(seed)
    episodes = []
    for g in range(num_groups):
        for s in range(group_size):
            turns = []
            won = s % 2 == 0
            for k in range(num_turns):
                prompt = [
                    rng.randrange(5, vocab) for _ in range(rng.randint(4, 9) if (k == 0 or mode == "window") else 3)
                ]
                response = [rng.randrange(5, vocab) for _ in range(rng.randint(2, 6))]
                last = k == num_turns - 1
                turns.append(
                    Turn(
                        prompt_ids=prompt,
                        response_ids=response,
                        response_logprobs=[-1.0] * len(response),
                        reward=1.0 if (won and last) else 0.0,
                        terminated=last,
                        anchor=f"state{k}-{rng.randint(0, 1)}",
                        format_valid=True,
                    )
                )
            episodes.append(
                Episode(
                    task_id=f"task{g}",
                    group_id=f"it0/task{g}",
                    sample_idx=s,
                    env_id="resrl/Echo-v0",
                    turns=turns,
                    context_mode=mode,  # type: ignore[arg-type]
                    won=won,
                )
            )
    return episodes


@pytest.fixture(scope="session")
def ray_session() -> Iterator[Any]:
    """One local Ray for the whole test session (2 CPUs, no dashboard, a small object store)."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def episode_factory() -> Any:
    return make_episodes
