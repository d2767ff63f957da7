"""SFT warm start: expert text forms parse back exactly; expert episodes are token-exact chat renders; NLL drops."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import envs
from envs.base import PromptBuilder
from resrl_agent.errors import TrainerError
from resrl_agent.inference.base import SamplingParams
from resrl_agent.rollout.chat import ChatFormatter
from resrl_agent.rollout.loop import RolloutSettings, TaskSpec
from resrl_agent.trainer.learner import Learner, LearnerSettings
from resrl_agent.trainer.sft import (
    dagger_relabel,
    expert_episodes,
    expert_response_text,
    length_grouped_order,
    replay_sample,
    sft_epochs,
    sft_step_count,
)
from resrl_agent.types import Episode, Turn, collate


def test_expert_text_forms_parse_back_to_the_expert_action() -> None:
    alf = envs.action_parser("resrl/ALFWorld-v0")
    assert expert_response_text("go to countertop 1", alf) == "<action>go to countertop 1</action>"
    fc = envs.action_parser("resrl/FunctionCalling-v0")
    call = json.dumps({"tool_calls": [{"name": "ls", "arguments": {"a": True}}]})
    text = expert_response_text(call, fc)
    assert text == '<tool_call>{"name": "ls", "arguments": {"a": true}}</tool_call>'
    assert json.loads(fc(text).action or "") == json.loads(call)
    assert expert_response_text(json.dumps({"content": "done"}), fc) == "done"


@pytest.mark.parametrize("mode", ["concat", "window"])
def test_expert_episodes_are_token_exact(tiny_tokenizer: Any, mode: str) -> None:
    formatter = ChatFormatter(tiny_tokenizer)
    settings = RolloutSettings(context_mode=mode, window_turns=1, max_turns=3, max_context_tokens=512)  # type: ignore[arg-type]
    tasks = [TaskSpec(f"echo-{k}", f"sft/echo-{k}", 0, k) for k in range(3)]
    episodes = expert_episodes("resrl/Echo-v0", tasks, formatter, settings, env_kwargs={"max_steps": 3})
    assert [e.task_id for e in episodes] == ["echo-0", "echo-1", "echo-2"]
    builder: PromptBuilder = envs.load_module("resrl/Echo-v0", "prompts").PROMPTS
    for episode in episodes:
        episode.validate()
        assert episode.won and len(episode.turns) == 1 and episode.total_return == 1.0
        turn = episode.turns[0]
        word = {"echo-0": "apple", "echo-1": "river", "echo-2": "lamp"}[episode.task_id]
        assert turn.response_text == f"<action>{word}</action>" and turn.action == word
        assert turn.response_ids[-1] == formatter.eos_token_id
        obs = f"Say the word: {word}"
        assert turn.observation == obs
        # the whole sequence equals the chat template's render of the conversation, tokenized once
        messages = [
            {"role": "system", "content": builder.system({})},
            *(builder.initial(obs, {}) if mode == "concat" else builder.window(obs, {}, [])),
            {"role": "assistant", "content": turn.response_text},
        ]
        full = formatter.encode(formatter.render(messages))
        assert turn.prompt_ids + turn.response_ids == full[: len(turn.prompt_ids) + len(turn.response_ids)]


def test_sft_lowers_the_expert_nll(fresh_model: Any, tiny_tokenizer: Any) -> None:
    formatter = ChatFormatter(tiny_tokenizer)
    settings = RolloutSettings(max_turns=2, max_context_tokens=512, sampling=SamplingParams())
    tasks = [TaskSpec(f"echo-{k}", f"sft/echo-{k}", 0, k) for k in range(8)]
    episodes = expert_episodes("resrl/Echo-v0", tasks, formatter, settings)
    learner = Learner(fresh_model, LearnerSettings(lr=3e-3, warmup_steps=0))
    history = sft_epochs(learner, episodes, "concat", epochs=6, batch_rows=4, seed=0)
    assert len(history) == 12
    first, last = history[0]["sft/nll"], history[-1]["sft/nll"]
    assert first > 7.0 and last < first - 3.0, (first, last)


def test_expert_episodes_explore_keeps_expert_labels_off_the_expert_path(tiny_tokenizer: Any) -> None:
    """explore=1: every step is a random admissible non-expert command, each turn's target is still the expert's."""
    import gymnasium as gym

    env_id = "resrl/ALFWorld-v0"
    formatter = ChatFormatter(tiny_tokenizer)
    settings = RolloutSettings(context_mode="window", window_turns=2, max_turns=3, max_context_tokens=2048)
    env = gym.make(env_id, max_steps=3)
    task_id = env.unwrapped.task_ids(split="train")[0]
    env.close()
    tasks = [TaskSpec(task_id, "sft/alf", 0, 7)]
    kwargs = {"max_steps": 3}
    runs = [
        expert_episodes(env_id, tasks, formatter, settings, env_kwargs=kwargs, only_won=False, explore=1.0, seed=s)[0]
        for s in (0, 0, 1)
    ]
    assert [t.response_ids for t in runs[0].turns] == [t.response_ids for t in runs[1].turns]  # seeded
    episode = runs[0]
    assert len(episode.turns) == 3 and not episode.won
    replay = gym.make(env_id, max_steps=3)
    _, info = replay.reset(seed=7, options={"task_id": task_id})
    for turn in episode.turns:
        assert turn.info == {"explored": True}
        assert turn.response_text == f"<action>{info['expert_action']}</action>"  # the expert's label at this state
        assert turn.action != info["expert_action"] and turn.action in info["available_actions"]
        _, _, _, _, info = replay.step(turn.action)
        assert turn.action_valid
    replay.close()
    plain = expert_episodes(env_id, tasks, formatter, settings, env_kwargs=kwargs, only_won=False)[0]
    assert all(t.info == {} for t in plain.turns)
    assert plain.turns[0].response_text == episode.turns[0].response_text  # same first state, same label


def test_sft_lr_factor_warms_up_then_decays_to_zero() -> None:
    from resrl_agent.trainer.sft import sft_lr_factor

    factors = [sft_lr_factor(s, warmup=2, total=6) for s in range(6)]
    # warm-up 1/2, 2/2; then cos over 4 steps: 1, (1+cos(pi/4))/2, 1/2, (1+cos(3pi/4))/2
    expected = [0.5, 1.0, 1.0, 0.8535534, 0.5, 0.1464466]
    assert all(abs(f - e) < 1e-6 for f, e in zip(factors, expected, strict=True))
    assert sft_lr_factor(10, warmup=0, total=6) == 0.0


def test_sft_epochs_cosine_schedule_spans_exactly_its_steps(fresh_model: Any, tiny_tokenizer: Any) -> None:
    """8 rows in batches of 4 over 2 epochs = 4 steps: the logged (post-step) lr is lr x (cos schedule of step+1)."""
    formatter = ChatFormatter(tiny_tokenizer)
    settings = RolloutSettings(context_mode="concat", max_turns=1, max_context_tokens=512)
    tasks = [TaskSpec(f"echo-{k}", f"sft/echo-{k}", 0, k) for k in range(8)]
    episodes = expert_episodes("resrl/Echo-v0", tasks, formatter, settings)
    learner = Learner(fresh_model, LearnerSettings(lr=1e-3, warmup_steps=0))
    history = sft_epochs(learner, episodes, "concat", epochs=2, batch_rows=4, seed=0, schedule="cosine", warmup_steps=1)
    # factors after steps 1..4 with warmup 1, total 4: full rate, then cos over 3 steps -> 0.75, 0.25, 0.0
    lrs = [h["optim/lr"] for h in history]
    assert len(lrs) == 4
    assert all(abs(a - b) < 1e-12 for a, b in zip(lrs, [1e-3, 7.5e-4, 2.5e-4, 0.0], strict=True)), lrs


def test_sft_epochs_prompt_fraction_draws_a_fresh_share_of_positions_each_step(
    fresh_model: Any, tiny_tokenizer: Any
) -> None:
    formatter = ChatFormatter(tiny_tokenizer)
    settings = RolloutSettings(context_mode="concat", max_turns=1, max_context_tokens=512)
    episodes = expert_episodes(
        "resrl/Echo-v0", [TaskSpec(f"echo-{k}", f"e{k}", 0, k) for k in range(8)], formatter, settings
    )
    learner = Learner(fresh_model, LearnerSettings(lr=1e-4, warmup_steps=0))
    seen: list[torch.Tensor | None] = []
    step = learner.sft_step

    def spy(*args: Any, prompt_mask: torch.Tensor | None = None, **kwargs: Any) -> dict[str, float]:
        seen.append(prompt_mask)
        return step(*args, prompt_mask=prompt_mask, **kwargs)

    learner.sft_step = spy  # type: ignore[method-assign]
    history = sft_epochs(
        learner, episodes, "concat", epochs=1, batch_rows=4, seed=0, prompt_weight=1.0, prompt_fraction=0.25
    )
    assert len(history) == 2 and all("sft/prompt_nll" in h for h in history)
    masks = [m for m in seen if m is not None]
    assert len(masks) == 2 and not torch.equal(masks[0][:, :8], masks[1][:, :8])
    share = float(torch.cat([m.flatten() for m in masks]).float().mean())
    assert 0.15 < share < 0.35, share
    sft_epochs(learner, episodes, "concat", epochs=1, batch_rows=4, seed=0, prompt_weight=1.0)
    assert seen[-2:] == [None, None]  # the whole prompt: no mask at all
    with pytest.raises(TrainerError, match="prompt_fraction"):
        sft_epochs(learner, episodes, "concat", epochs=1, batch_rows=4, seed=0, prompt_weight=1.0, prompt_fraction=0.0)


def _alfworld_expert_setup(
    tokenizer: Any, *, num_tasks: int, max_turns: int
) -> tuple[str, ChatFormatter, RolloutSettings, list[TaskSpec], dict[str, Any]]:
    """The first ``num_tasks`` ALFWorld train games as SFT tasks, window mode (2 turns), ``max_turns`` steps."""
    import gymnasium as gym

    env_id = "resrl/ALFWorld-v0"
    settings = RolloutSettings(context_mode="window", window_turns=2, max_turns=max_turns, max_context_tokens=4096)
    env = gym.make(env_id, max_steps=max_turns)
    task_ids = env.unwrapped.task_ids(split="train")[:num_tasks]
    env.close()
    tasks = [TaskSpec(task_id, f"sft/{k}", 0, 100 + k) for k, task_id in enumerate(task_ids)]
    kwargs: dict[str, Any] = {"env_kwargs": {"max_steps": max_turns}, "only_won": False, "seed": 3}
    return env_id, ChatFormatter(tokenizer), settings, tasks, kwargs


def test_expert_episodes_in_worker_processes_equal_the_sequential_ones(tiny_tokenizer: Any) -> None:
    """workers=2 plays the tasks in two spawned processes: same episodes, same order, token for token."""
    env_id, formatter, settings, tasks, kwargs = _alfworld_expert_setup(tiny_tokenizer, num_tasks=5, max_turns=4)
    task_ids = [t.task_id for t in tasks]
    kwargs["explore"] = 0.5
    sequential = expert_episodes(env_id, tasks, formatter, settings, **kwargs)
    parallel = expert_episodes(env_id, tasks, formatter, settings, workers=2, **kwargs)
    assert [e.task_id for e in parallel] == task_ids
    assert [e.to_dict() for e in parallel] == [e.to_dict() for e in sequential]
    assert sum(t.info.get("explored", False) for e in parallel for t in e.turns) > 0  # the seeded detours match too
    # a window of 2 at turn 3: the steps shown are numbered 2 and 3 of the episode, and 3 were taken
    longest = max(parallel, key=lambda e: len(e.turns))
    assert len(longest.turns) == 4
    fourth = tiny_tokenizer.decode(longest.turns[3].prompt_ids)
    assert "[Step 2] Observation:" in fourth and "[Step 3] Observation:" in fourth and "[Step 1]" not in fourth
    assert "You have taken 3 steps." in fourth
    # the step count announced before SFT is the one sft_epochs takes: a row per turn in window mode
    assert sft_step_count(parallel, "window", epochs=2, batch_rows=3) == 2 * -(
        -collate(parallel, "window").num_rows // 3
    )


def test_invalid_detours_send_stale_commands_and_keep_the_expert_label(tiny_tokenizer: Any) -> None:
    """explore_invalid: detours send a command admissible earlier but not now; the env rejects it, the label stays."""
    env_id, formatter, settings, tasks, kwargs = _alfworld_expert_setup(tiny_tokenizer, num_tasks=3, max_turns=6)
    episodes = expert_episodes(env_id, tasks, formatter, settings, explore=1.0, explore_invalid=1.0, **kwargs)
    invalid = [(e, k) for e in episodes for k, t in enumerate(e.turns) if t.info.get("invalid")]
    assert len(invalid) >= 6
    for episode, k in invalid:
        turn = episode.turns[k]
        assert k > 0 and turn.info["explored"] and not turn.action_valid  # turn 0 has no earlier command
        assert turn.response_text.startswith("<action>") and turn.response_text != f"<action>{turn.action}</action>"
        if k + 1 < len(episode.turns):
            assert episode.turns[k + 1].observation == "Nothing happens."
    # without explore_invalid every detour is admissible: no turn is rejected
    plain = expert_episodes(env_id, tasks, formatter, settings, explore=0.5, **kwargs)
    assert sum(t.info.get("explored", False) for e in plain for t in e.turns) >= 3
    assert all(t.action_valid and not t.info.get("invalid") for e in plain for t in e.turns)
    with pytest.raises(TrainerError, match="explore_invalid"):
        expert_episodes(env_id, tasks, formatter, settings, explore=0.5, explore_invalid=2.0, **kwargs)


def test_expert_collection_survives_workers_that_die(tiny_model_dir: Any, tmp_path: Any) -> None:
    """A script without a __main__ guard: spawned workers re-run it and die; the tasks are played in-process."""
    import subprocess
    import sys

    script = tmp_path / "unguarded.py"
    script.write_text(
        "from transformers import AutoTokenizer\n"
        "from resrl_agent.rollout.chat import ChatFormatter\n"
        "from resrl_agent.rollout.loop import RolloutSettings, TaskSpec\n"
        "from resrl_agent.trainer.sft import expert_episodes\n"
        f"tok = AutoTokenizer.from_pretrained({str(tiny_model_dir)!r})\n"
        "settings = RolloutSettings(context_mode='window', window_turns=2, max_turns=3, max_context_tokens=2048)\n"
        "tasks = [TaskSpec(f'echo-{k}', f'sft/echo-{k}', 0, k) for k in range(4)]\n"
        "eps = expert_episodes('resrl/Echo-v0', tasks, ChatFormatter(tok), settings, workers=2)\n"
        "print('EPISODES', [e.task_id for e in eps])\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "EPISODES ['echo-0', 'echo-1', 'echo-2', 'echo-3']" in done.stdout
    assert "expert-collection worker process died" in done.stderr


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 2000), min_size=1, max_size=300),
    batch_rows=st.integers(1, 9),
    seed=st.integers(0, 2**16),
)
def test_length_grouped_order_covers_every_row_once(lengths: list[int], batch_rows: int, seed: int) -> None:
    steps = length_grouped_order(lengths, batch_rows, torch.Generator().manual_seed(seed), pool_batches=4)
    assert sorted(r for step in steps for r in step) == list(range(len(lengths)))
    assert len(steps) == -(-len(lengths) // batch_rows)  # as many steps as a plain shuffle (the cosine schedule's)
    assert all(len(step) == batch_rows for step in steps[:-1]) and 1 <= len(steps[-1]) <= batch_rows


def test_length_grouped_order_pads_less_than_a_shuffle() -> None:
    lengths = torch.randint(200, 1400, (800,), generator=torch.Generator().manual_seed(0)).tolist()

    def padded(steps: list[list[int]]) -> int:
        return sum(len(step) * max(lengths[r] for r in step) for step in steps)

    g = torch.Generator().manual_seed(1)
    grouped = padded(length_grouped_order(lengths, 8, g))
    order = torch.randperm(800, generator=g).tolist()
    shuffled = padded([order[i : i + 8] for i in range(0, 800, 8)])
    real = sum(lengths)
    # a shuffle pads 8 rows to the longest of 8 uniform lengths (~ +45 % here); grouped pools of 256 rows pad ~1 %
    assert shuffled > 1.3 * real and grouped < 1.03 * real


def _turn(prompt: list[int], action: str | None, expert: str | None) -> Turn:
    valid = action is not None
    return Turn(
        prompt_ids=prompt,
        response_ids=[7, 8],
        response_logprobs=[-0.5, -0.25],
        response_text=f"<action>{action}</action>" if valid else "babble",
        action=action,
        format_valid=valid,
        action_valid=valid,
        reward=0.5 if valid else 0.0,
        anchor=f"state-{prompt[0]}",
        expert_action=expert,
        info={"won": False} if valid else {},
    )


def _alfworld_episode(group_id: str, turns: list[Turn], mode: str = "window") -> Episode:
    return Episode(
        task_id=group_id,
        group_id=group_id,
        sample_idx=0,
        env_id="resrl/ALFWorld-v0",
        context_mode=mode,  # type: ignore[arg-type]
        turns=turns,
    )


def test_dagger_relabel_answers_each_policy_turn_with_the_experts_action(tiny_tokenizer: Any) -> None:
    """Prompts stay as the policy saw them; responses become the expert's, token-exact; turns without an expert
    action are dropped, and episodes left with none; concat-mode episodes are refused."""
    formatter = ChatFormatter(tiny_tokenizer)
    parse = envs.action_parser("resrl/ALFWorld-v0")
    played = _alfworld_episode(
        "g",
        [
            _turn([1, 2, 3], "go to shelf 1", "go to desk 1"),  # a wrong move
            _turn([4, 5], None, "go to desk 1"),  # unparsable: the env was not stepped, the state is the same
            _turn([6], "look", None),  # no expert action here: dropped
        ],
    )
    empty = _alfworld_episode("h", [_turn([9], "look", None)])
    (out,) = dagger_relabel([played, empty], formatter, parse)
    expected = [*formatter.encode("<action>go to desk 1</action>"), formatter.eos_token_id]
    assert [t.prompt_ids for t in out.turns] == [[1, 2, 3], [4, 5]]
    for turn, policy_action in zip(out.turns, ["go to shelf 1", None], strict=True):
        turn.validate()
        assert turn.response_ids == expected and turn.response_logprobs == [0.0] * len(expected)
        assert turn.action == "go to desk 1" and turn.format_valid and turn.response_text.startswith("<action>")
        assert turn.info == {"dagger": True, "policy_action": policy_action}
        assert turn.expert_action == "go to desk 1" and turn.anchor.startswith("state-")
    assert out.total_return == 0.0 and out.group_id == "g"
    batch = collate([out], "window", pad_id=0)  # SFT trains on exactly the expert's response tokens
    assert batch.num_rows == 2 and int(batch.loss_mask.sum()) == 2 * len(expected)
    concat = _alfworld_episode("g", played.turns, mode="concat")
    with pytest.raises(TrainerError, match="window-mode turns"):
        dagger_relabel([concat], formatter, parse)


def test_replay_sample_draws_whole_episodes_until_enough_turns() -> None:
    episodes = [
        Episode(task_id=str(k), group_id=str(k), sample_idx=0, env_id="e", turns=[_turn([k], "a", "a")] * (k + 1))
        for k in range(6)
    ]  # 1 + 2 + ... + 6 = 21 turns
    drawn = replay_sample(episodes, 7, seed=3)
    ids = [e.task_id for e in drawn]
    assert len(set(ids)) == len(ids)  # without replacement
    held = [len(e.turns) for e in drawn]
    assert sum(held) >= 7 and sum(held[:-1]) < 7  # stops at the first episode that reaches the count
    assert [e.task_id for e in replay_sample(episodes, 7, seed=3)] == ids  # seeded
    assert len(replay_sample(episodes, 100, seed=3)) == 6 and replay_sample(episodes, 0, seed=3) == []
