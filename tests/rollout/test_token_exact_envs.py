"""Token-exactness on every registered env (each with its spec's ``example_kwargs``), both context modes.

For every turn of the saved (JSONL round-tripped) episodes: the training rows' response tokens are exactly the
sampled ids, and the logprobs the HF model recomputes at those positions match the rollout logprobs within
TOLERANCE (fp32 CPU; the padded batched generate vs one right-padded forward differ by ~1e-6).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import envs
from resrl_agent.inference.base import SamplingParams
from resrl_agent.inference.hf import HFEngine
from resrl_agent.rollout.chat import ChatFormatter
from resrl_agent.rollout.loop import RolloutSettings, TaskSpec, run_episodes
from resrl_agent.types import collate, read_episodes, write_episodes

TOLERANCE = 1e-4
ENV_KWARGS: dict[str, dict[str, Any]] = {env_id: dict(envs.spec(env_id).example_kwargs) for env_id in envs.env_ids()}


def _first_task(env_id: str) -> str | None:
    import gymnasium as gym

    env = gym.make(env_id, **ENV_KWARGS[env_id])
    try:
        lister = getattr(env.unwrapped, "task_ids", None)
        return str(lister()[0]) if lister is not None else None
    finally:
        env.close()


def _recomputed(model: Any, batch: Any) -> torch.Tensor:
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask.long()).logits.float()
    out = torch.zeros_like(batch.old_logprobs)
    out[:, 1:] = torch.log_softmax(logits[:, :-1], -1).gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
    return out


@pytest.mark.parametrize("mode", ["concat", "window"])
@pytest.mark.parametrize("env_id", sorted(ENV_KWARGS))
def test_saved_episodes_are_token_exact(
    env_id: str, mode: str, tiny_model: Any, tiny_tokenizer: Any, tmp_path: Path
) -> None:
    task_id = _first_task(env_id)
    tasks = [TaskSpec(task_id, f"it0/{task_id}", g, 11) for g in range(2)]
    settings = RolloutSettings(
        context_mode=mode,  # type: ignore[arg-type]
        window_turns=1,
        max_turns=2,
        max_context_tokens=4096,
        sampling=SamplingParams(max_new_tokens=16),
        concurrency=2,
    )
    episodes = run_episodes(
        env_id,
        tasks,
        HFEngine(tiny_model, tiny_tokenizer),
        ChatFormatter(tiny_tokenizer),
        settings,
        env_kwargs=ENV_KWARGS[env_id],
    )
    assert [e.stop_reason for e in episodes if e.stop_reason == "env_error"] == []
    write_episodes(tmp_path / "eps.jsonl", episodes)
    saved = read_episodes(tmp_path / "eps.jsonl")
    assert saved == episodes
    batch = collate(saved, mode)  # type: ignore[arg-type]
    sampled = [i for e in saved for t in e.turns for i in t.response_ids]
    assert batch.input_ids[batch.loss_mask].tolist() == sampled
    assert sampled, "no tokens were sampled"
    diff = (_recomputed(tiny_model, batch) - batch.old_logprobs)[batch.loss_mask].abs().max().item()
    assert diff < TOLERANCE, f"{env_id} {mode}: recomputed logprobs differ from the rollout's by {diff:.2e}"
    if mode == "concat":  # turn 0 holds the whole first prompt; later turns only the delta after the response
        assert saved[0].turns[0].prompt_ids[: len(saved[1].turns[0].prompt_ids)] == saved[1].turns[0].prompt_ids


def test_window_prompts_count_every_step_not_only_the_window(tiny_model: Any, tiny_tokenizer: Any) -> None:
    """A window of 1 turn at turn 2: the prompt numbers the shown step 2 and says 2 steps were taken."""
    env_id = "resrl/ALFWorld-v0"
    settings = RolloutSettings(
        context_mode="window",
        window_turns=1,
        max_turns=3,
        max_context_tokens=4096,
        sampling=SamplingParams(max_new_tokens=8),
    )
    tasks = [TaskSpec(_first_task(env_id), "steps", 0, 5)]
    formatter = ChatFormatter(tiny_tokenizer)
    (episode,) = run_episodes(env_id, tasks, HFEngine(tiny_model, tiny_tokenizer), formatter, settings)
    assert len(episode.turns) == 3
    third = tiny_tokenizer.decode(episode.turns[2].prompt_ids)
    assert "[Step 2] Observation:" in third and "[Step 1]" not in third and "You have taken 2 steps." in third
