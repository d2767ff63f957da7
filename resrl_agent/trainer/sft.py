"""SFT warm start on expert trajectories (``info["expert_action"]``), token-exact like a rollout.

An expert episode is played exactly as the rollout loop plays a model's: the same ``PromptBuilder`` messages,
rendered by the same :class:`~resrl_agent.rollout.chat.ChatFormatter` (whole prompt at turn 0, then delta tokens
after each response in concat mode; a whole prompt per turn in window mode). The "response" is the text a model
would have to write to produce the expert's action: the first of a few candidate forms that the env's own
``parse_action`` turns back into exactly that action, tokenized once and closed with eos. So SFT trains on the
same token sequences the policy later samples and RL trains on.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import math
import multiprocessing
import random
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import torch

import envs
from envs.base import INFO_AVAILABLE_ACTIONS, INFO_EXPERT_ACTION, EnvError, Parsed, PromptBuilder
from resrl_agent.config import RunConfig
from resrl_agent.errors import TrainerError
from resrl_agent.rollout.chat import ChatFormatter
from resrl_agent.rollout.loop import RolloutSettings, TaskSpec
from resrl_agent.seeding import derive_seed
from resrl_agent.trainer.learner import Learner
from resrl_agent.types import Batch, Episode, Turn, collate

logger = logging.getLogger(__name__)

__all__ = [
    "dagger_relabel",
    "expert_episodes",
    "expert_response_text",
    "replay_sample",
    "sft_epochs",
    "sft_lr_factor",
    "sft_phase",
    "sft_step_count",
]


def _same_action(parsed: str | None, action: str) -> bool:
    if parsed is None:
        return False
    if parsed == action or " ".join(parsed.split()).lower() == " ".join(action.split()).lower():
        return True
    try:
        return bool(json.loads(parsed) == json.loads(action))
    except (json.JSONDecodeError, TypeError):
        return False


def _candidates(action: str) -> list[str]:
    forms = [f"<action>{action}</action>", action, f"\\boxed{{{action}}}"]
    try:
        data = json.loads(action)
    except json.JSONDecodeError:
        return forms
    if isinstance(data, dict) and isinstance(data.get("tool_calls"), list):
        calls = [{"name": c.get("name"), "arguments": c.get("arguments", {})} for c in data["tool_calls"]]
        forms.insert(0, "\n".join(f"<tool_call>{json.dumps(c, ensure_ascii=False)}</tool_call>" for c in calls))
    elif isinstance(data, dict) and isinstance(data.get("content"), str):
        forms.insert(0, data["content"])
    return forms


def expert_response_text(action: str, parse: Callable[[str], Parsed]) -> str:
    """The model text that ``parse`` maps back to exactly ``action`` (the first candidate form that does)."""
    for text in _candidates(action):
        parsed = parse(text)
        if parsed.format_valid and _same_action(parsed.action, action):
            return text
    raise TrainerError(f"no model text form parses back to the expert action {action!r}; tried {_candidates(action)!r}")


def _expert_response(action: str, formatter: ChatFormatter, parse: Callable[[str], Parsed]) -> tuple[str, list[int]]:
    """The expert's response text for ``action`` (:func:`expert_response_text`) and its token ids, closed with eos."""
    text = expert_response_text(action, parse)
    return text, [*formatter.encode(text), formatter.eos_token_id]


def expert_episodes(
    env_id: str,
    tasks: Sequence[TaskSpec],
    formatter: ChatFormatter,
    settings: RolloutSettings,
    *,
    env_kwargs: dict[str, Any] | None = None,
    only_won: bool = True,
    explore: float = 0.0,
    explore_invalid: float = 0.0,
    seed: int = 0,
    workers: int = 1,
) -> list[Episode]:
    """Play each task with the env's expert (``info["expert_action"]``), recording token-exact turns.

    ``workers`` > 1 plays the tasks in that many spawned processes (an ALFWorld reset of a game not seen before
    costs about 0.6 s of CPU); the episodes are the same, in the same order, whatever the number of workers.

    Logprobs are stored as 0.0 (no policy sampled them; SFT does not read them). Episodes the expert does not win
    are dropped when ``only_won``. With ``explore`` > 0 (DAgger-style state coverage), each turn's env step is, with
    that probability, a random admissible command (``info["available_actions"]``) instead of the expert's, while
    the turn's response (the SFT target) stays the expert's action at that state: the policy then also learns what
    the expert does after a detour, the states it will reach on its own. Such turns are flagged in
    ``Turn.info["explored"]``; the draws come from a generator seeded by ``seed`` and the task's reset seed.

    ``explore_invalid`` is the share of those detours that send an inadmissible command instead: one that was
    admissible at an earlier turn of the episode but is not now (going where you already are, taking what you
    already took), the kind of mistake a policy makes. The env answers it ("Nothing happens." in ALFWorld) and the
    next turns show the expert recovering, states a policy trained only on admissible steps never sees. Such turns
    are also flagged ``Turn.info["invalid"]``; without an earlier command that is inadmissible now, the detour is an
    admissible one.
    """
    if not 0.0 <= explore_invalid <= 1.0:
        raise TrainerError(f"explore_invalid={explore_invalid}: it must be in [0, 1]")
    args = (env_id, formatter, settings, env_kwargs or {}, explore, seed, explore_invalid)
    if workers > 1 and len(tasks) > 1:
        # Each task's episode depends only on the task and its own seeded stream, so any split of the tasks over
        # processes gives the same episodes; they are put back in task order. spawn: no fork of a torch process.
        workers = min(workers, len(tasks))
        shares = [list(range(w, len(tasks), workers)) for w in range(workers)]
        played: list[Episode | None] = [None] * len(tasks)
        context = multiprocessing.get_context("spawn")
        try:
            with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                futures = [pool.submit(_play_expert, [tasks[i] for i in share], *args) for share in shares]
                for share, future in zip(shares, futures, strict=True):
                    for i, episode in zip(share, future.result(), strict=True):
                        played[i] = episode
        except concurrent.futures.process.BrokenProcessPool:
            # A worker died before answering: killed, out of memory, or (the usual cause) a script without an
            # `if __name__ == "__main__":` guard, which spawned processes re-run. Nothing is lost: play here.
            logger.warning(
                "sft: an expert-collection worker process died (killed, out of memory, or a script that starts "
                "training without an `if __name__ == '__main__':` guard); playing the %d tasks in this process",
                len(tasks),
            )
            played = _play_expert(list(tasks), *args)
    else:
        played = _play_expert(list(tasks), *args)
    out = [e for e in played if e is not None and (e.won or not only_won)]
    if not out:
        raise TrainerError(f"the expert of {env_id} produced no usable episode over {len(tasks)} tasks")
    return out


def _play_expert(
    tasks: list[TaskSpec],
    env_id: str,
    formatter: ChatFormatter,
    settings: RolloutSettings,
    env_kwargs: dict[str, Any],
    explore: float,
    seed: int,
    explore_invalid: float = 0.0,
) -> list[Episode | None]:
    """The expert episode of each task, in order (None where the reset failed); one env for all of them."""
    parse = envs.action_parser(env_id)
    builder: PromptBuilder = envs.load_module(env_id, "prompts").PROMPTS
    env = gym.make(env_id, **env_kwargs)
    out: list[Episode | None] = []
    try:
        for spec in tasks:
            rng = random.Random(derive_seed(seed, "explore", spec.seed, spec.sample_idx)) if explore > 0 else None
            out.append(
                _expert_episode(env, env_id, spec, formatter, settings, parse, builder, explore, rng, explore_invalid)
            )
    finally:
        env.close()
    return out


def _expert_episode(
    env: Any,
    env_id: str,
    spec: TaskSpec,
    formatter: ChatFormatter,
    settings: RolloutSettings,
    parse: Callable[[str], Parsed],
    builder: PromptBuilder,
    explore: float = 0.0,
    rng: random.Random | None = None,
    explore_invalid: float = 0.0,
) -> Episode | None:
    options = {"task_id": spec.task_id} if spec.task_id is not None else None
    try:
        observation, info = env.reset(seed=spec.seed, options=options)
    except EnvError as err:
        logger.warning("expert: reset failed for %s: %s", spec, err)
        return None
    system_text = builder.system(info)
    system = [{"role": "system", "content": system_text}] if system_text else []
    tools = builder.tools(info)
    context: list[int] = []
    pending: list[int] = []
    if settings.context_mode == "concat":
        context = formatter.prompt_ids([*system, *builder.initial(observation, info)], tools=tools)
        pending = list(context)
    history: list[tuple[str, str]] = []
    seen_commands: dict[str, None] = {}  # every admissible command of the earlier turns, in first-seen order
    turns: list[Turn] = []
    won = False
    stop = "max_turns"
    for _ in range(settings.max_turns):
        expert = info.get(INFO_EXPERT_ACTION)
        if not expert:
            stop = "env_error"
            break
        text, response = _expert_response(str(expert), formatter, parse)
        if settings.context_mode == "window":
            window = history[-settings.window_turns :] if settings.window_turns else []
            pending = formatter.prompt_ids(
                [*system, *builder.window(observation, info, window, actions=[a for _, a in history])], tools=tools
            )
            prompt_len = len(pending)
        else:
            prompt_len = len(context)
        if prompt_len + len(response) > settings.max_context_tokens:
            stop = "context_limit"
            break
        action = parse(text).action
        assert action is not None  # expert_response_text checked it parses
        explored = invalid = False
        available = list(info.get(INFO_AVAILABLE_ACTIONS) or [])
        if rng is not None and rng.random() < explore:
            stale = [c for c in seen_commands if c not in available] if explore_invalid > 0 else []
            others = [c for c in available if c != action]
            if stale and rng.random() < explore_invalid:
                action, explored, invalid = rng.choice(stale), True, True
            elif others:
                action, explored = rng.choice(others), True
        seen_commands.update(dict.fromkeys(available))
        acted_on, anchor = observation, str(info.get("anchor", ""))
        observation, reward, terminated, truncated, info = env.step(action)
        won = bool(info.get("won", False))
        turns.append(
            Turn(
                prompt_ids=pending,
                response_ids=response,
                response_logprobs=[0.0] * len(response),
                observation=acted_on,
                response_text=text,
                action=action,
                format_valid=True,
                action_valid=bool(info.get("action_valid", True)),
                reward=float(reward),
                terminated=bool(terminated),
                truncated=bool(truncated),
                anchor=anchor,
                expert_action=str(expert),
                info={"explored": True, **({"invalid": True} if invalid else {})} if explored else {},
            )
        )
        history.append((acted_on, action))
        if terminated or truncated:
            stop = "terminated" if terminated else "truncated"
            break
        if settings.context_mode == "concat":
            pending = formatter.delta_ids(builder.reply(observation, info), tools=tools, response_ended_with_eos=True)
            context = [*context, *response, *pending]
    if not turns:
        return None
    return Episode(
        task_id=str(info.get("task_id", spec.task_id or "")),
        group_id=spec.group_id,
        sample_idx=spec.sample_idx,
        env_id=env_id,
        turns=turns,
        seed=spec.seed,
        context_mode=settings.context_mode,
        won=won,
        stop_reason=stop,  # type: ignore[arg-type]
        metrics={"num_turns": float(len(turns)), "expert": 1.0},
    )


def dagger_relabel(
    episodes: Sequence[Episode], formatter: ChatFormatter, parse: Callable[[str], Parsed]
) -> list[Episode]:
    """DAgger's relabelling: the policy's own turns, each answered with the expert's action at that turn's state.

    The policy played ``episodes``; every turn recorded the expert's action at the state it acted on
    (``Turn.expert_action``). Each turn keeps its prompt (the state as the policy saw it, after its own mistakes)
    and gets the expert's response as the SFT target, so SFT then teaches what to do in the states the policy
    reaches itself, the ones expert play never shows (Ross et al., 2011; ALFWorld's BUTLER agent trains this way).

    Window mode only: there a turn's prompt is the whole state. In concat mode a turn's context holds the policy's
    earlier responses, which relabelling would leave inconsistent. Turns without an expert action are dropped, and
    episodes left without turns. The policy's own action is kept in ``Turn.info["policy_action"]``.
    """
    out: list[Episode] = []
    for episode in episodes:
        if episode.context_mode != "window":
            raise TrainerError(
                f"DAgger relabels window-mode turns; episode {episode.group_id}/{episode.sample_idx} is "
                f"{episode.context_mode} mode (set rollout.context_mode: window, or trainer.dagger_rounds: 0)"
            )
        turns = []
        for turn in episode.turns:
            if not turn.expert_action:
                continue
            text, response = _expert_response(turn.expert_action, formatter, parse)
            turns.append(
                dataclasses.replace(
                    turn,
                    response_ids=response,
                    response_logprobs=[0.0] * len(response),
                    response_text=text,
                    action=parse(text).action,
                    format_valid=True,
                    action_valid=True,
                    reward=0.0,
                    info={"dagger": True, "policy_action": turn.action},
                )
            )
        if turns:
            out.append(dataclasses.replace(episode, turns=turns, return_=0.0, metrics={"dagger": 1.0}))
    return out


def replay_sample(episodes: Sequence[Episode], turns: int, seed: int) -> list[Episode]:
    """Episodes drawn at random (without replacement, seeded) until they hold at least ``turns`` turns, or all."""
    order = random.Random(seed).sample(range(len(episodes)), len(episodes))
    out: list[Episode] = []
    held = 0
    for i in order:
        if held >= turns:
            break
        out.append(episodes[i])
        held += len(episodes[i].turns)
    return out


def sft_epochs(
    learner: Learner,
    episodes: Sequence[Episode],
    mode: str,
    *,
    epochs: int,
    batch_rows: int,
    seed: int,
    pad_id: int = 0,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    schedule: str = "constant",
    warmup_steps: int = 0,
    prompt_weight: float = 0.0,
    prompt_fraction: float = 1.0,
    group_by_length: bool = False,
) -> list[dict[str, float]]:
    """Token-mean cross-entropy on the expert responses, ``epochs`` passes over shuffled rows.

    ``prompt_weight`` adds that weight times the prompt tokens' cross-entropy (:meth:`Learner.sft_step`), over a
    random ``prompt_fraction`` of the prompt tokens, drawn afresh each step (1.0: all of them).
    ``group_by_length`` draws each step's rows among rows of similar length (:func:`length_grouped_order`), so
    a step pads little; the rows of an epoch are the same, only how they are grouped into steps changes.

    ``schedule="cosine"`` replaces the learner's scheduler with ``warmup_steps`` of linear warm-up and a cosine decay
    over exactly the optimizer steps these epochs take; ``"constant"`` keeps the learner's own scheduler.
    """
    if not 0.0 < prompt_fraction <= 1.0:
        raise TrainerError(f"prompt_fraction={prompt_fraction}: it must be in (0, 1]")
    batch: Batch = collate(episodes, mode, pad_id=pad_id)  # type: ignore[arg-type]
    if schedule == "cosine":
        total = sft_step_count(episodes, mode, epochs=epochs, batch_rows=batch_rows)
        learner.scheduler = torch.optim.lr_scheduler.LambdaLR(
            learner.optimizer, lambda step: sft_lr_factor(step, warmup=warmup_steps, total=total)
        )
    generator = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    lengths = batch.attention_mask.sum(dim=1).tolist()
    for epoch in range(epochs):
        if group_by_length:
            steps = length_grouped_order(lengths, batch_rows, generator)
        else:
            order = torch.randperm(batch.num_rows, generator=generator).tolist()
            steps = [order[start : start + batch_rows] for start in range(0, len(order), batch_rows)]
        for rows in steps:
            width = int(max(lengths[r] for r in rows))
            keep = None
            if prompt_weight > 0 and prompt_fraction < 1.0:
                keep = torch.rand((len(rows), width), generator=generator) < prompt_fraction
            metrics = learner.sft_step(
                batch.input_ids[rows, :width],
                batch.attention_mask[rows, :width],
                batch.loss_mask[rows, :width],
                prompt_weight=prompt_weight,
                prompt_mask=keep,
            )
            metrics["sft/epoch"] = float(epoch)
            history.append(metrics)
            if on_step is not None:
                on_step(len(history), metrics)
    return history


def sft_step_count(episodes: Sequence[Episode], mode: str, *, epochs: int, batch_rows: int) -> int:
    """The optimizer steps :func:`sft_epochs` takes: ``epochs`` x ceil(rows / ``batch_rows``), where a row is a turn
    in window mode and an episode with turns in concat mode (as :func:`~resrl_agent.types.collate` builds them)."""
    rows = sum(len(e.turns) for e in episodes) if mode == "window" else sum(1 for e in episodes if e.turns)
    return epochs * -(-rows // batch_rows)


def length_grouped_order(
    lengths: Sequence[int], batch_rows: int, generator: torch.Generator, *, pool_batches: int = 32
) -> list[list[int]]:
    """Steps of ``batch_rows`` rows of similar length, in random order (each row exactly once).

    Rows are shuffled, cut into pools of ``pool_batches`` steps, each pool is sorted by length and cut into steps,
    and the steps are shuffled: the usual "group by length" trade of padding against randomness. Only the last
    step can be short. As many steps as a plain shuffle: ``ceil(len(lengths) / batch_rows)``.
    """
    order = torch.randperm(len(lengths), generator=generator).tolist()
    pool = batch_rows * pool_batches
    steps: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda r: lengths[r])
        steps.extend(chunk[i : i + batch_rows] for i in range(0, len(chunk), batch_rows))
    # every pool but the last holds a whole number of steps, so only the very last step can be short: keep it last
    tail = steps.pop() if steps and len(steps[-1]) < batch_rows else None
    shuffled = [steps[i] for i in torch.randperm(len(steps), generator=generator).tolist()]
    return shuffled + ([tail] if tail else [])


def sft_lr_factor(step: int, *, warmup: int, total: int) -> float:
    """The SFT learning-rate multiplier at optimizer step ``step`` (0-based): linear warm-up, then cosine to 0.

    Step ``warmup`` runs at the full rate and the last step (``total - 1``) at the smallest nonzero one.
    """
    if step < warmup:
        return (step + 1) / warmup
    span = max(total - warmup, 1)
    progress = min((step - warmup) / span, 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def sft_phase(
    learner: Learner,
    episodes: Sequence[Episode],
    config: RunConfig,
    *,
    pad_id: int,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    epochs: int | None = None,
    lr: float | None = None,
) -> list[dict[str, float]]:
    """The SFT warm start on the learner: SFT learning rate and warm-up, then a fresh optimizer for RL.

    ``epochs`` (default ``trainer.sft_epochs``) passes over ``episodes`` at peak learning rate ``lr`` (default
    ``trainer.sft_lr``); a DAgger round passes its own."""
    t = config.trainer
    rl = learner.settings
    learner.reset_optimizer(lr=t.sft_lr if lr is None else lr, warmup_steps=t.sft_warmup_steps)
    history = sft_epochs(
        learner,
        episodes,
        config.rollout.context_mode,
        epochs=t.sft_epochs if epochs is None else epochs,
        batch_rows=t.sft_batch_rows,
        seed=derive_seed(config.seed, "sft"),
        pad_id=pad_id,
        schedule=t.sft_schedule,
        warmup_steps=t.sft_warmup_steps,
        prompt_weight=t.sft_prompt_weight,
        prompt_fraction=t.sft_prompt_fraction,
        group_by_length=t.sft_group_by_length,
        on_step=on_step,
    )
    learner.reset_optimizer(lr=rl.lr, warmup_steps=rl.warmup_steps)
    return history
