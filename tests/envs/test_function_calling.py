"""resrl/FunctionCalling-v0: BFCL's episode protocol, the checker, the expert, random and skipping callers."""

from __future__ import annotations

import json
import random
import time

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401 - registers the env ids
from envs.base import check_info
from envs.function_calling import prompts
from envs.function_calling.actions import parse_action
from envs.function_calling.env import FunctionCallingEnv
from envs.function_calling.tasks import MISSED_FUNCTIONS_MESSAGE, load_task


def run_episode(env: FunctionCallingEnv, task_id: str, policy) -> tuple[float, bool, dict]:
    observation, info = env.reset(options={"task_id": task_id})
    total = 0.0
    for _ in range(500):
        observation, reward, terminated, truncated, info = env.step(policy(observation, info))
        check_info(info)
        total += reward
        if terminated or truncated:
            return total, info["won"], info
    raise AssertionError("episode did not end")


def expert(_observation: str, info: dict) -> str:
    return info["expert_action"]


@pytest.fixture(scope="module")
def env() -> FunctionCallingEnv:
    return gym.make("resrl/FunctionCalling-v0").unwrapped


def test_check_env_passes() -> None:
    check_env(FunctionCallingEnv(task_set="generated"), skip_render_check=True)


@pytest.mark.parametrize("task_set", ["bfcl_base", "bfcl_miss_func", "bfcl_miss_param"])
def test_ground_truth_scores_one_on_every_bfcl_task(env: FunctionCallingEnv, task_set: str) -> None:
    ids = env.task_ids(task_set)
    assert len(ids) == 200
    results = [run_episode(env, task_id, expert) for task_id in ids]
    assert sum(won for _, won, _ in results) == 200
    assert all(total == 1.0 for total, _, _ in results)


def test_ground_truth_scores_one_on_every_generated_task() -> None:
    env = FunctionCallingEnv(task_set="generated", num_generated=2000)
    ids = env.task_ids()
    assert len(ids) == 2000
    scores = [run_episode(env, task_id, expert)[0] for task_id in ids]
    assert scores == [1.0] * 2000
    # generated tasks are our own: none shares a user request with BFCL's base set
    bfcl_requests = {text for tid in env.task_ids("bfcl_base") for text in load_task(tid).user_turns}
    assert not bfcl_requests & {text for tid in ids[:300] for text in load_task(tid).user_turns}


def test_per_turn_partial_credit_sums_to_one(env: FunctionCallingEnv) -> None:
    per_turn = FunctionCallingEnv(reward_mode="per_turn")
    task = load_task("multi_turn_base_0")
    _, info = per_turn.reset(options={"task_id": task.task_id})
    rewards = []
    done = False
    while not done:
        _observation, reward, done, _, info = per_turn.step(info["expert_action"])
        rewards.append(reward)
    assert sum(rewards) == pytest.approx(1.0)
    assert sum(1 for r in rewards if r > 0) == task.num_turns


def _random_caller(rng: random.Random):
    def policy(_observation: str, info: dict) -> str:
        if rng.random() < 0.3:
            return json.dumps({"content": "done"})
        calls = []
        for tool in rng.sample(info["tools"], k=min(2, len(info["tools"]))):
            params = tool["function"]["parameters"]
            args = {}
            for name, spec in params.get("properties", {}).items():
                kind = spec.get("type")
                args[name] = {
                    "integer": rng.randint(0, 5),
                    "number": rng.random() * 10,
                    "boolean": rng.random() < 0.5,
                    "array": ["x"],
                    "object": {},
                }.get(kind, rng.choice(["a", "temp", "document"]))
            calls.append({"name": tool["function"]["name"], "arguments": args})
        return json.dumps({"tool_calls": calls})

    return policy


def test_random_caller_scores_near_zero(env: FunctionCallingEnv) -> None:
    rng = random.Random(0)
    ids = env.task_ids("bfcl_base")[:60]
    wins = sum(run_episode(env, task_id, _random_caller(rng))[1] for task_id in ids)
    assert wins == 0


def _skipping_expert(turn_to_skip: int, call_to_skip: int):
    def policy(_observation: str, info: dict) -> str:
        action = json.loads(info["expert_action"])
        if "tool_calls" in action and info["turn"] == turn_to_skip:
            del action["tool_calls"][call_to_skip]
            if not action["tool_calls"]:
                return json.dumps({"content": "done"})
        return json.dumps(action)

    return policy


def test_skipping_one_ground_truth_call_fails_the_task(env: FunctionCallingEnv) -> None:
    """Skip each call of each turn, one at a time, on every base task (1142 episodes): the checker catches them."""
    caught = escaped = 0
    escaped_examples = []
    for task_id in env.task_ids("bfcl_base"):
        task = load_task(task_id)
        for turn_idx, calls in enumerate(task.ground_truth):
            for call_idx in range(len(calls)):
                _, won, _ = run_episode(env, task_id, _skipping_expert(turn_idx, call_idx))
                if won:
                    escaped += 1
                    escaped_examples.append((task_id, calls[call_idx]))
                else:
                    caught += 1
    assert caught + escaped == 1142
    # The one skip BFCL's checker cannot see: in multi_turn_base_113 the skipped get_watchlist() returns
    # exactly the string the add_to_watchlist() before it returned, so the response check still passes.
    assert escaped_examples == [("multi_turn_base_113", "get_watchlist()")]
    assert caught == 1141


def test_miss_func_withholds_tools_until_their_turn(env: FunctionCallingEnv) -> None:
    task = load_task("multi_turn_miss_func_0")
    assert task.missed_functions == {3: ["sort"]}
    observation, info = env.reset(options={"task_id": task.task_id})
    names = [tool["function"]["name"] for tool in info["tools"]]
    assert "sort" not in names and "grep" in names and "- sort(" not in observation
    while info["turn"] < 3:  # turns 0, 1, 2 by the ground truth
        observation, _, terminated, _, info = env.step(info["expert_action"])
        assert not terminated
    assert MISSED_FUNCTIONS_MESSAGE in observation and "- sort(file_name: string)" in observation
    assert "sort" in [tool["function"]["name"] for tool in info["tools"]]


def test_invalid_action_changes_nothing(env: FunctionCallingEnv) -> None:
    _observation, info = env.reset(options={"task_id": "multi_turn_base_0"})
    before = env._model.state()
    _, reward, terminated, truncated, bad = env.step("cd document")
    assert (reward, terminated, truncated, bad["action_valid"]) == (0.0, False, False, False)
    assert env._model.state() == before
    assert bad["expert_action"] == info["expert_action"]


def test_more_than_twenty_steps_in_a_turn_fails(env: FunctionCallingEnv) -> None:
    env.reset(options={"task_id": "multi_turn_base_0"})
    pwd = json.dumps({"tool_calls": [{"name": "pwd", "arguments": {}}]})
    for _ in range(20):
        _, _, terminated, _, info = env.step(pwd)
        assert not terminated
    observation, reward, terminated, _, info = env.step(pwd)
    assert terminated and not info["won"] and reward == 0.0 and "More than 20 steps" in observation


def test_tool_results_are_exact_bfcl_strings(env: FunctionCallingEnv) -> None:
    observation, info = env.reset(options={"task_id": "multi_turn_base_0"})
    assert observation.startswith("Available functions:\n- cd(folder: string)") or "- cd(folder: string)" in observation
    assert observation.endswith(
        "User: Move 'final_report.pdf' within document directory to 'temp' directory in "
        "document. Make sure to create the directory"
    )
    observation, *_ = env.step(info["expert_action"])
    assert observation.splitlines()[0] == prompts.tool_result("cd", '{"current_working_directory": "document"}')


@pytest.mark.parametrize(
    ("text", "action", "valid"),
    [
        (
            '<tool_call>{"name": "cd", "arguments": {"folder": "a"}}</tool_call>',
            '{"tool_calls": [{"name": "cd", "arguments": {"folder": "a"}}]}',
            True,
        ),
        (
            "[cd(folder='a'), ls()]",
            '{"tool_calls": [{"name": "cd", "arguments": {"folder": "a"}}, {"name": "ls", "arguments": {}}]}',
            True,
        ),
        ('{"name": "pwd", "parameters": {}}', '{"tool_calls": [{"name": "pwd", "arguments": {}}]}', True),
        ("All done, the file is in temp.", '{"content": "All done, the file is in temp."}', True),
        ("<tool_call>{oops</tool_call>", None, False),
        ("   ", None, False),
    ],
)
def test_projection_table(text: str, action: str | None, valid: bool) -> None:
    parsed = parse_action(text)
    assert parsed.action == action and parsed.format_valid is valid
    if not valid:
        assert parsed.feedback


def test_anchors_are_stable_and_state_dependent(env: FunctionCallingEnv) -> None:
    _, first = env.reset(options={"task_id": "multi_turn_base_1"})
    _, again = env.reset(options={"task_id": "multi_turn_base_1"})
    assert first["anchor"] == again["anchor"]
    _, _, _, _, after = env.step(first["expert_action"])
    assert after["anchor"] != first["anchor"]


def test_corpus_texts_is_fast() -> None:
    start = time.perf_counter()
    texts = prompts.corpus_texts()
    assert time.perf_counter() - start < 1.0
    assert len(texts) > 300 and all(isinstance(t, str) and t for t in texts)
