"""The concurrent loop: same episodes as the sequential reference mode, per-request seeds, crash and hang isolation."""

from __future__ import annotations

import time
from typing import Any

import pytest
import torch

from envs.echo.actions import parse_action as echo_parse
from envs.echo.prompts import PROMPTS as ECHO_PROMPTS
from resrl_agent.inference.base import SamplingParams
from resrl_agent.inference.hf import HFEngine
from resrl_agent.rollout.chat import ChatFormatter
from resrl_agent.rollout.loop import RolloutSettings, TaskSpec, request_seed, run_episodes
from resrl_agent.types import Episode

FAULTY = "faulty_env:test/Faulty-v0"


def _tasks(num: int, group: int = 2) -> list[TaskSpec]:
    return [TaskSpec(f"echo-{k}", f"it0/echo-{k}", g, 100 + k) for k in range(num) for g in range(group)]


def _play(model: Any, tokenizer: Any, tasks: list[TaskSpec], env_id: str = "resrl/Echo-v0", **kw: Any) -> list[Episode]:
    settings = RolloutSettings(max_turns=2, max_context_tokens=512, sampling=SamplingParams(max_new_tokens=8), **kw)
    return run_episodes(
        env_id,
        tasks,
        HFEngine(model, tokenizer),
        ChatFormatter(tokenizer),
        settings,
        env_kwargs={"max_steps": 2},
        parse_action=echo_parse,
        prompts=ECHO_PROMPTS,
    )


def _tokens(episodes: list[Episode]) -> list[list[list[int]]]:
    return [[t.response_ids for t in e.turns] for e in episodes]


def test_concurrent_equals_sequential_and_is_reproducible(tiny_model: Any, tiny_tokenizer: Any) -> None:
    tasks = _tasks(3)
    sequential = _play(tiny_model, tiny_tokenizer, tasks, sequential=True)
    again = _play(tiny_model, tiny_tokenizer, tasks, sequential=True)
    concurrent = _play(tiny_model, tiny_tokenizer, tasks, concurrency=4)
    assert [e.sample_idx for e in concurrent] == [t.sample_idx for t in tasks]
    assert _tokens(sequential) == _tokens(again) == _tokens(concurrent)
    # the two samples of a group share a prompt but not their seeds, so they differ
    assert concurrent[0].turns[0].prompt_ids == concurrent[1].turns[0].prompt_ids
    assert concurrent[0].turns[0].response_ids != concurrent[1].turns[0].response_ids
    lp_seq = [lp for e in sequential for t in e.turns for lp in t.response_logprobs]
    lp_con = [lp for e in concurrent for t in e.turns for lp in t.response_logprobs]
    assert max(abs(a - b) for a, b in zip(lp_seq, lp_con, strict=True)) < 1e-4  # padding changes floats only


def test_request_seeds_differ_by_run_group_sample_and_turn() -> None:
    spec = TaskSpec("echo-0", "it0/echo-0", 0, 5)
    seeds = {
        request_seed(0, spec, 0),
        request_seed(1, spec, 0),
        request_seed(0, spec, 1),
        request_seed(0, TaskSpec("echo-0", "it0/echo-0", 1, 5), 0),
        request_seed(0, TaskSpec("echo-0", "it1/echo-0", 0, 5), 0),
    }
    assert (
        len(seeds) == 5 and request_seed(0, spec, 0) == request_seed(0, spec, 0) == 793002597
    )  # stable across processes (blake2b)


def test_hf_seeds_are_per_request_whatever_the_batch(tiny_model: Any, tiny_tokenizer: Any) -> None:
    engine = HFEngine(tiny_model, tiny_tokenizer)
    params = SamplingParams(max_new_tokens=10, temperature=0.8, top_p=0.9, top_k=50)
    a, b = [1, 500, 600, 700], [1, 800, 801, 802, 803, 804, 805, 806, 807]
    alone = engine.generate([a], params, seeds=[7])[0]
    batched = engine.generate([b, a, a], params, seeds=[3, 7, 8])
    assert batched[1].token_ids == alone.token_ids and batched[2].token_ids != alone.token_ids
    two = engine.generate([a], SamplingParams(max_new_tokens=10, n=2), seeds=[7])
    assert len(two) == 2 and two[0].token_ids != two[1].token_ids


def test_update_weights_changes_the_policy_in_place(tiny_model: Any, tiny_tokenizer: Any) -> None:
    import copy

    model = copy.deepcopy(tiny_model)
    engine = HFEngine(model, tiny_tokenizer)
    params = SamplingParams(max_new_tokens=6)
    before = engine.generate([[1, 500, 600]], params, seeds=[1])[0]
    original = {k: v.clone() for k, v in model.state_dict().items()}
    perturbed = {k: v + 0.05 * torch.randn_like(v) for k, v in original.items()}
    engine.update_weights(perturbed)
    after = engine.generate([[1, 500, 600]], params, seeds=[1])[0]
    assert engine.weights_version == 1
    assert max(abs(x - y) for x, y in zip(before.logprobs, after.logprobs, strict=False)) > 1e-3
    engine.update_weights(original)
    assert engine.generate([[1, 500, 600]], params, seeds=[1])[0] == before


def test_a_crashed_or_hung_env_process_ends_only_its_episode(tiny_model: Any, tiny_tokenizer: Any) -> None:
    tasks = [TaskSpec(f"echo-{k}", f"it0/echo-{k}", 0, k) for k in (0, 1, 2, 4)]
    start = time.perf_counter()
    episodes = _play(
        tiny_model, tiny_tokenizer, tasks, FAULTY, env_workers="process", step_timeout_s=6.0, concurrency=4
    )
    elapsed = time.perf_counter() - start
    stops = {e.task_id: e.stop_reason for e in episodes}
    assert stops["echo-1"] == "env_error" and stops["echo-2"] == "env_error"  # killed; hung past the timeout
    assert stops["echo-0"] in ("truncated", "terminated") and stops["echo-4"] in ("truncated", "terminated")
    assert len(episodes[0].turns) == 2 and episodes[1].turns == [] and episodes[1].metrics["env_error"] == 1.0
    assert elapsed < 50, f"a hung env held the run for {elapsed:.0f} s"


def test_an_env_bug_in_a_thread_ends_only_its_episode(tiny_model: Any, tiny_tokenizer: Any) -> None:
    tasks = [TaskSpec(f"echo-{k}", f"it0/echo-{k}", 0, k) for k in (0, 3, 4)]
    episodes = _play(tiny_model, tiny_tokenizer, tasks, FAULTY, env_workers="thread", concurrency=3)
    assert [e.stop_reason for e in episodes] == ["truncated", "env_error", "truncated"]


@pytest.mark.parametrize("concurrency", [1, 2])
def test_slots_are_refilled_and_order_is_kept(tiny_model: Any, tiny_tokenizer: Any, concurrency: int) -> None:
    finished: list[int] = []
    tasks = _tasks(3, group=1)
    settings = RolloutSettings(
        max_turns=2, max_context_tokens=512, sampling=SamplingParams(max_new_tokens=6), concurrency=concurrency
    )
    episodes = run_episodes(
        "resrl/Echo-v0",
        tasks,
        HFEngine(tiny_model, tiny_tokenizer),
        ChatFormatter(tiny_tokenizer),
        settings,
        env_kwargs={"max_steps": 2},
        progress=finished.append,
    )
    assert [e.task_id for e in episodes] == ["echo-0", "echo-1", "echo-2"] and finished == [1, 2, 3]


def test_shared_env_processes_host_several_envs(tiny_model: Any, tiny_tokenizer: Any) -> None:
    # 4 episodes in 2 processes: the crash of echo-1's process also ends the episode it shares the process with
    tasks = [TaskSpec(f"echo-{k}", f"it0/echo-{k}", 0, k) for k in (0, 4, 1, 5)]
    episodes = _play(
        tiny_model,
        tiny_tokenizer,
        tasks,
        FAULTY,
        env_workers="process",
        max_env_processes=2,
        concurrency=4,
        step_timeout_s=20.0,
    )
    stops = {e.task_id: e.stop_reason for e in episodes}
    assert stops["echo-1"] == "env_error"
    assert sum(s == "env_error" for s in stops.values()) == 2  # echo-1 and its process mate
    assert sum(s == "truncated" for s in stops.values()) == 2
