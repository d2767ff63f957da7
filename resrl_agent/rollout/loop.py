"""The multi-turn agent loop: env + inference engine -> token-exact ``Episode`` records.

All live episodes' prompts go to the engine as one batch per turn. Model text is parsed by the env's pure
``parse_action`` (Contract 2); unparsable text is an invalid turn whose feedback is the next observation, and the
env is not stepped (Contract 3). Response ids and logprobs are stored exactly as sampled; env replies are appended
as delta tokens (concat mode) or each turn is rendered whole (window mode).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

import envs
from envs.base import EnvError, Parsed, PromptBuilder
from resrl_agent.inference.base import InferenceEngine, SamplingParams
from resrl_agent.rollout.chat import ChatFormatter, Message
from resrl_agent.types import ContextMode, Episode, StopReason, Turn

logger = logging.getLogger(__name__)

__all__ = ["RolloutSettings", "TaskSpec", "run_episodes"]


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One rollout to play: the task, its group, which sample of the group, and the reset seed."""

    task_id: str | None
    group_id: str
    sample_idx: int
    seed: int


@dataclass(frozen=True, slots=True)
class RolloutSettings:
    context_mode: ContextMode = "concat"
    window_turns: int = 2
    max_turns: int = 8
    max_context_tokens: int = 2048
    sampling: SamplingParams = field(default_factory=SamplingParams)


@dataclass
class _Live:
    spec: TaskSpec
    env: gym.Env[str, str]
    observation: str
    info: dict[str, Any]
    system: list[Message]
    tools: list[dict[str, Any]] | None
    context: list[int] = field(default_factory=list)  # concat: the whole sequence so far
    pending: list[int] = field(default_factory=list)  # the prompt tokens of the next turn
    history: list[tuple[str, str]] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    won: bool = False
    stop: StopReason | None = None


def _jsonable_info(info: dict[str, Any]) -> dict[str, Any]:
    """Keep the info values a JSONL record can hold; anything else is logged and left out."""
    kept = {}
    for key, value in info.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            logger.debug("info[%r] (%s) is not JSON-serialisable and is not stored", key, type(value).__name__)
            continue
        kept[key] = value
    return kept


def _generation_seed(spec: TaskSpec, turn: int) -> int:
    """Per-request sampling seed derived from the group's seed, the sample index and the turn."""
    return (spec.seed * 1_000_003 + spec.sample_idx * 7_919 + turn) % (2**31 - 1)


def run_episodes(
    env_id: str,
    tasks: Sequence[TaskSpec],
    engine: InferenceEngine,
    formatter: ChatFormatter,
    settings: RolloutSettings,
    *,
    env_kwargs: dict[str, Any] | None = None,
    policy_version: int = 0,
    parse_action: Callable[[str], Parsed] | None = None,
    prompts: PromptBuilder | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Episode]:
    """Play every task to the end and return one Episode per TaskSpec, in order."""
    parse = parse_action or envs.action_parser(env_id)
    builder: PromptBuilder = prompts or envs.load_module(env_id, "prompts").PROMPTS
    live: list[_Live] = []
    finished: list[Episode | None] = [None] * len(tasks)
    for spec in tasks:
        env = gym.make(env_id, **(env_kwargs or {}))
        options = {"task_id": spec.task_id} if spec.task_id is not None else None
        try:
            observation, info = env.reset(seed=spec.seed, options=options)
        except EnvError as err:
            logger.warning("env reset failed for %s: %s", spec, err)
            env.close()
            live.append(_Live(spec, env, "", {}, [], None, stop="env_error"))
            continue
        system_text = builder.system(info)
        system = [{"role": "system", "content": system_text}] if system_text else []
        state = _Live(spec, env, observation, info, system, builder.tools(info))
        if settings.context_mode == "concat":
            state.context = formatter.prompt_ids([*system, *builder.initial(observation, info)], tools=state.tools)
            state.pending = list(state.context)
        live.append(state)
    if settings.context_mode == "concat" and any(s.stop is None for s in live):
        formatter.check_prefix_stable(tools=next(s.tools for s in live if s.stop is None))

    for _ in range(settings.max_turns):
        active = [s for s in live if s.stop is None]
        if not active:
            break
        prompts_ids: list[list[int]] = []
        runnable: list[_Live] = []
        for state in active:
            if settings.context_mode == "window":
                messages = builder.window(
                    state.observation,
                    state.info,
                    state.history[-settings.window_turns :] if settings.window_turns else [],
                )
                state.pending = formatter.prompt_ids([*state.system, *messages], tools=state.tools)
                prompt = state.pending
            else:
                prompt = state.context
            if len(prompt) + settings.sampling.max_new_tokens > settings.max_context_tokens:
                state.stop = "context_limit"
                continue
            prompts_ids.append(prompt)
            runnable.append(state)
        if not runnable:
            break
        generations = engine.generate(
            prompts_ids, settings.sampling, seeds=[_generation_seed(s.spec, len(s.turns)) for s in runnable]
        )
        for state, gen in zip(runnable, generations, strict=True):
            _advance(
                state,
                gen.token_ids,
                gen.logprobs,
                gen.text,
                gen.finish_reason == "stop" and bool(gen.token_ids) and gen.token_ids[-1] == formatter.eos_token_id,
                parse,
                builder,
                formatter,
                settings,
            )
        if progress is not None:
            progress(sum(1 for s in live if s.stop is not None))

    for index, state in enumerate(live):
        if state.stop is None:
            state.stop = "max_turns"
        state.env.close()
        finished[index] = Episode(
            task_id=str(state.info.get("task_id", state.spec.task_id or "")),
            group_id=state.spec.group_id,
            sample_idx=state.spec.sample_idx,
            env_id=env_id,
            turns=state.turns,
            seed=state.spec.seed,
            policy_version=policy_version,
            context_mode=settings.context_mode,
            won=state.won,
            stop_reason=state.stop,
            metrics={
                "num_turns": float(len(state.turns)),
                "invalid_format": float(sum(not t.format_valid for t in state.turns)),
            },
        )
    return [e for e in finished if e is not None]


def _advance(
    state: _Live,
    response_ids: list[int],
    logprobs: list[float],
    text: str,
    ended_with_eos: bool,
    parse: Callable[[str], Parsed],
    builder: PromptBuilder,
    formatter: ChatFormatter,
    settings: RolloutSettings,
) -> None:
    """Parse one response, step the env (or not), record the Turn, and prepare the next prompt."""
    anchor = str(state.info.get("anchor", ""))
    acted_on = state.observation
    parsed = parse(text)
    reward, terminated, truncated = 0.0, False, False
    info: dict[str, Any] = {}
    if parsed.format_valid and parsed.action is not None:
        try:
            observation, reward_value, terminated, truncated, info = state.env.step(parsed.action)
        except EnvError as err:
            logger.warning("env step failed in %s/%d: %s", state.spec.group_id, state.spec.sample_idx, err)
            state.stop = "env_error"
            return
        reward = float(reward_value)
        if not math.isfinite(reward):
            raise EnvError(f"env returned a non-finite reward {reward_value!r}")
        action_valid = bool(info.get("action_valid", True))
        state.won = bool(info.get("won", False))
        state.info = info
    else:
        observation, action_valid = parsed.feedback, False
        info = state.info  # the env state is unchanged (Contract 3): its info still describes it
    state.turns.append(
        Turn(
            prompt_ids=state.pending,
            response_ids=list(response_ids),
            response_logprobs=list(logprobs),
            observation=acted_on,
            response_text=text,
            action=parsed.action if parsed.format_valid else None,
            format_valid=parsed.format_valid,
            action_valid=action_valid,
            reward=reward,
            terminated=bool(terminated),
            truncated=bool(truncated),
            anchor=anchor,
            info=_jsonable_info(info) if parsed.format_valid else {},
        )
    )
    state.history.append((acted_on, parsed.action if parsed.action is not None else text))
    state.observation = observation
    if terminated or truncated:
        state.stop = "terminated" if terminated else "truncated"
        return
    if settings.context_mode == "concat":
        delta = formatter.delta_ids(
            builder.reply(observation, info), tools=state.tools, response_ended_with_eos=ended_with_eos
        )
        state.context = [*state.context, *response_ids, *delta]
        state.pending = delta
