"""The OpenAI-compatible HTTP backend against a real local server (uvicorn + our completions app over HFEngine).

The same seeds give the same tokens over HTTP as in process (per-request seeds, whatever the server batches), the
logprobs agree within 1e-4, a whole rollout through HTTP equals the in-process one, and a weight reload over the
vLLM dev-mode routes changes the served policy without a restart.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from resrl_agent.errors import RolloutError
from resrl_agent.inference.base import SamplingParams
from resrl_agent.inference.hf import HFEngine
from resrl_agent.inference.openai_http import OpenAIEngine, completion_payload, parse_choice
from resrl_agent.inference.openai_server import create_app, serve_in_thread
from resrl_agent.rollout.chat import ChatFormatter
from resrl_agent.rollout.loop import RolloutSettings, TaskSpec, run_episodes

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def served(tiny_model: Any, tiny_tokenizer: Any) -> Iterator[tuple[HFEngine, OpenAIEngine]]:
    local = HFEngine(copy.deepcopy(tiny_model), tiny_tokenizer)
    server, thread, url = serve_in_thread(create_app(local, model_name="tiny"))
    client = OpenAIEngine(url, tokenizer=tiny_tokenizer, concurrency=8)
    yield local, client
    client.close()
    server.should_exit = True
    thread.join(timeout=10)


def test_http_samples_equal_in_process_samples(served: tuple[HFEngine, OpenAIEngine]) -> None:
    local, client = served
    assert client.model == "tiny"
    prompts = [[1, 500, 600, 700], [1, 800], [1, 900, 901, 902, 903]]
    params = SamplingParams(max_new_tokens=12, temperature=0.7, top_p=0.9)
    remote = client.generate(prompts, params, seeds=[4, 5, 6])
    direct = local.generate(prompts, params, seeds=[4, 5, 6])
    assert [g.token_ids for g in remote] == [g.token_ids for g in direct]
    diff = max(
        abs(a - b) for r, d in zip(remote, direct, strict=True) for a, b in zip(r.logprobs, d.logprobs, strict=True)
    )
    assert diff < 1e-4
    assert [g.finish_reason for g in remote] == [g.finish_reason for g in direct]
    assert len(client.generate(prompts[:1], SamplingParams(max_new_tokens=4, n=3), seeds=[1])) == 3


def test_rollout_over_http_equals_in_process(served: tuple[HFEngine, OpenAIEngine], tiny_tokenizer: Any) -> None:
    local, client = served
    tasks = [TaskSpec(f"echo-{k}", f"it0/echo-{k}", g, 30 + k) for k in range(2) for g in range(2)]
    settings = RolloutSettings(max_turns=2, max_context_tokens=512, sampling=SamplingParams(max_new_tokens=8))
    formatter = ChatFormatter(tiny_tokenizer)
    kwargs = {"env_kwargs": {"max_steps": 2}}
    over_http = run_episodes("resrl/Echo-v0", tasks, client, formatter, settings, **kwargs)  # type: ignore[arg-type]
    in_process = run_episodes("resrl/Echo-v0", tasks, local, formatter, settings, **kwargs)  # type: ignore[arg-type]
    assert [[t.response_ids for t in e.turns] for e in over_http] == [
        [t.response_ids for t in e.turns] for e in in_process
    ]
    assert [[t.prompt_ids for t in e.turns] for e in over_http] == [[t.prompt_ids for t in e.turns] for e in in_process]


def test_weight_reload_over_http(served: tuple[HFEngine, OpenAIEngine], tmp_path: Any) -> None:
    local, client = served
    prompt, params = [[1, 500, 600]], SamplingParams(max_new_tokens=6)
    before = client.generate(prompt, params, seeds=[2])[0]
    original = {k: v.clone() for k, v in local.model.state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    shm = Path("/dev/shm")
    before_dirs = set(shm.glob("resrl-weights-*")) if shm.is_dir() else set()
    client.update_weights({k: v + 0.05 * torch.randn(v.shape, generator=generator) for k, v in original.items()})
    if shm.is_dir():  # the temporary copy of the weights is removed once the server has loaded it
        assert set(shm.glob("resrl-weights-*")) == before_dirs
    after = client.generate(prompt, params, seeds=[2])[0]
    assert max(abs(a - b) for a, b in zip(before.logprobs, after.logprobs, strict=False)) > 1e-3
    client.update_weights(original, weights_dir=tmp_path / "w")
    assert client.generate(prompt, params, seeds=[2])[0].token_ids == before.token_ids
    assert local.weights_version == 2 and client.weights_version == 2


def test_payload_and_parsing_rules() -> None:
    body = completion_payload("m", [1, 2], SamplingParams(top_k=5, stop=("</a>",)), seed=3)
    assert body["prompt"] == [1, 2] and body["logprobs"] == 0 and body["return_token_ids"] and body["top_k"] == 5
    assert body["stop"] == ["</a>"] and body["include_stop_str_in_output"] and body["seed"] == 3
    assert "top_k" not in completion_payload("m", [1], SamplingParams(), seed=None)
    # vLLM without return_token_ids: ids from the "token_id:N" logprob tokens
    choice = {
        "text": "x",
        "finish_reason": "stop",
        "logprobs": {"tokens": ["token_id:7", "token_id:2"], "token_logprobs": [-0.1, -0.2]},
    }
    assert parse_choice(choice, 2).token_ids == [7, 2]
    with pytest.raises(RolloutError, match="no token ids"):
        parse_choice({"text": "x", "logprobs": {"token_logprobs": [-0.1]}}, 2)
