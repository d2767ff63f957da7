"""The smoke rollout loop is token-exact: sampled ids kept verbatim, deltas equal full renders, logprobs recompute."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from envs.base import Parsed
from resrl_agent.errors import RolloutError
from resrl_agent.inference.base import Generation, SamplingParams
from resrl_agent.inference.hf import HFEngine
from resrl_agent.rollout.chat import ChatFormatter
from resrl_agent.rollout.loop import RolloutSettings, TaskSpec, run_episodes
from resrl_agent.types import Episode, collate


def _play(model: Any, tokenizer: Any, mode: str, parse: Any = None, max_new_tokens: int = 12) -> list[Episode]:
    tasks = [TaskSpec(f"echo-{k}", f"it0/echo-{k}", g, 100 + k) for k in range(2) for g in range(2)]
    settings = RolloutSettings(
        context_mode=mode,
        window_turns=1,
        max_turns=3,
        max_context_tokens=1024,  # type: ignore[arg-type]
        sampling=SamplingParams(max_new_tokens=max_new_tokens),
    )
    return run_episodes(
        "resrl/Echo-v0",
        tasks,
        HFEngine(model, tokenizer),
        ChatFormatter(tokenizer),
        settings,
        env_kwargs={"max_steps": 3},
        parse_action=parse,
    )


def _recomputed_logprobs(model: Any, batch: Any) -> torch.Tensor:
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask.long()).logits.float()
    out = torch.zeros_like(batch.old_logprobs)
    # position t's token is predicted by logits at t - 1
    out[:, 1:] = torch.log_softmax(logits[:, :-1], -1).gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
    return out


@pytest.mark.parametrize("mode", ["concat", "window"])
def test_rollout_is_token_exact(tiny_model: Any, tiny_tokenizer: Any, mode: str) -> None:
    episodes = _play(tiny_model, tiny_tokenizer, mode)
    assert len(episodes) == 4 and all(len(e.turns) == 3 for e in episodes)
    for episode in episodes:
        episode.validate()
        assert episode.stop_reason == "truncated" and not episode.won
    # the same task for both samples of a group, different samples
    assert episodes[0].turns[0].prompt_ids == episodes[1].turns[0].prompt_ids
    batch = collate(episodes, mode)  # type: ignore[arg-type]
    recomputed = _recomputed_logprobs(tiny_model, batch)
    mask = batch.loss_mask
    assert int(mask.sum()) == sum(len(t.response_ids) for e in episodes for t in e.turns)
    max_diff = (recomputed - batch.old_logprobs)[mask].abs().max().item()
    assert max_diff < 1e-4, f"rollout logprobs differ from the recomputed ones by {max_diff}"


class ScriptedEngine:
    """An engine that replies with fixed texts, encoded canonically (with or without the closing eos)."""

    def __init__(self, tokenizer: Any, replies: list[str], close: list[bool]) -> None:
        self.tokenizer, self.replies, self.close = tokenizer, replies, close
        self.eos_token_id = tokenizer.eos_token_id
        self.calls = 0

    def generate(self, prompts: Any, params: SamplingParams, seeds: Any = None) -> list[Generation]:
        text, close = self.replies[self.calls], self.close[self.calls]
        self.calls += 1
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] + ([self.eos_token_id] if close else [])
        return [Generation(ids, [-1.0] * len(ids), "stop" if close else "length", text) for _ in prompts]


def test_concat_context_equals_full_render(tiny_tokenizer: Any) -> None:
    """Prompt + response + delta tokens equal a fresh render of the whole conversation, turn after turn,
    also when a response was cut at max_new_tokens (its eos is appended as a prompt token)."""
    from envs.echo.prompts import PROMPTS

    replies = ["<action>pear</action>", " \n ", "<action>apple</action>"]
    engine = ScriptedEngine(tiny_tokenizer, replies, close=[True, False, True])
    settings = RolloutSettings(max_turns=3, max_context_tokens=1024, sampling=SamplingParams(max_new_tokens=64))
    formatter = ChatFormatter(tiny_tokenizer)
    (episode,) = run_episodes("resrl/Echo-v0", [TaskSpec("echo-0", "g", 0, 1)], engine, formatter, settings)
    assert [t.action for t in episode.turns] == ["pear", None, "apple"]
    assert episode.won and episode.stop_reason == "terminated" and episode.total_return == 1.0
    assert episode.turns[1].prompt_ids[-1] == formatter.encode("<|im_start|>assistant\n")[-1]
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": PROMPTS.system_prompt},
        *PROMPTS.initial("Say the word: apple", {}),
    ]
    context: list[int] = []
    for k, turn in enumerate(episode.turns):
        context += turn.prompt_ids
        assert context == formatter.prompt_ids(messages), f"turn {k}: context drifted from the full render"
        context += turn.response_ids
        messages.append({"role": "assistant", "content": replies[k]})
        observation = episode.turns[k + 1].observation if k + 1 < len(episode.turns) else ""
        messages += PROMPTS.reply(observation, {})
    # the unparsable turn 1 fed back the parse feedback as the next observation, and kept the anchor
    assert episode.turns[2].observation.startswith("Your reply was empty")
    assert episode.turns[2].anchor == episode.turns[1].anchor != episode.turns[0].anchor


def test_unparsable_output_is_an_invalid_turn_and_the_env_is_not_stepped(tiny_model: Any, tiny_tokenizer: Any) -> None:
    def refuse(text: str) -> Parsed:
        return Parsed(None, False, "Please answer inside <action>...</action>.")

    episodes = _play(tiny_model, tiny_tokenizer, "concat", parse=refuse)
    for episode in episodes:
        assert episode.stop_reason == "max_turns"  # the env never saw an action, so it never truncated
        assert all(
            not t.format_valid and not t.action_valid and t.reward == 0.0 and t.action is None for t in episode.turns
        )
        assert episode.turns[1].observation == "Please answer inside <action>...</action>."
        # the state acted on did not change, so neither did its anchor
        assert len({t.anchor for t in episode.turns}) == 1


def test_context_limit_stops_cleanly(tiny_model: Any, tiny_tokenizer: Any) -> None:
    tasks = [TaskSpec("echo-0", "g", 0, 1)]
    settings = RolloutSettings(max_turns=5, max_context_tokens=60, sampling=SamplingParams(max_new_tokens=8))
    (episode,) = run_episodes(
        "resrl/Echo-v0",
        tasks,
        HFEngine(tiny_model, tiny_tokenizer),
        ChatFormatter(tiny_tokenizer),
        settings,
        env_kwargs={"max_steps": 9},
    )
    assert episode.stop_reason == "context_limit"
    assert episode.num_tokens <= 60


def test_template_that_is_not_prefix_stable_is_reported(tiny_tokenizer: Any) -> None:
    unstable = copy.deepcopy(tiny_tokenizer)
    # a template that numbers messages by their count changes earlier text when a message is added
    unstable.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m.role }} of {{ messages|length }}\n{{ m.content }}"
        "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    with pytest.raises(RolloutError, match="not prefix-stable.*context_mode=window"):
        ChatFormatter(unstable).check_prefix_stable()
