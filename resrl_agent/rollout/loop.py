"""The multi-turn agent loop: env + inference engine -> token-exact ``Episode`` records.

Up to ``settings.concurrency`` episodes are live at once. Every round, the prompts of all live episodes that wait
for the model go to the engine in one ``generate`` call (one batch for HF, concurrent requests for vLLM and HTTP);
their envs then step in parallel workers (:mod:`resrl_agent.rollout.workers`). A round waits at most
``batch_wait_s`` for slow envs, so one slow env never holds up the others, and a crashed or hung env ends only its
own episode (``stop_reason="env_error"``). When an episode ends, its slot takes the next task.

Model text is parsed by the env's pure ``parse_action`` (Contract 2); unparsable text is an invalid turn whose
feedback is the next observation, and the env is not stepped (Contract 3). Response ids and logprobs are stored
exactly as sampled; env replies are appended as delta tokens (concat mode) or each turn is rendered whole (window
mode). Each request's sampling seed is derived from the run seed, the group (task and iteration), the sample and
the turn, so the HF, vLLM and HTTP backends sample the same way whatever the batch (:func:`request_seed`).
``sequential=True`` plays one episode at a time with inline envs: the deterministic reference mode.

With ``settings.remote`` (``env.servers`` in the config) the envs are sessions on env servers
(:mod:`resrl_agent.rollout.remote_pool`): an episode whose server disappears is dropped and its task played again
from reset on another server, so every TaskSpec still yields exactly one episode and groups come back whole.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Any

import envs
from envs.base import INFO_EXPERT_ACTION, EnvError, Parsed, PromptBuilder, jsonable_info
from resrl_agent.errors import RolloutError
from resrl_agent.inference.base import Generation, InferenceEngine, SamplingParams
from resrl_agent.rollout.chat import ChatFormatter, Message
from resrl_agent.rollout.remote_pool import RemoteEnvPool, RemoteEnvRunner, RemotePoolSettings
from resrl_agent.rollout.workers import (
    EnvRunner,
    PooledEnvRunner,
    SharedEnvProcess,
    WorkerKind,
    make_executor,
    make_runner,
)
from resrl_agent.seeding import derive_seed
from resrl_agent.types import ContextMode, Episode, StopReason, Turn

logger = logging.getLogger(__name__)

__all__ = ["RolloutSettings", "TaskSpec", "env_thread_safe", "request_seed", "run_episodes"]


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One rollout to play: the task, its group, which sample of the group, and the reset seed."""

    task_id: str | None
    group_id: str
    sample_idx: int
    seed: int


@dataclass(frozen=True, slots=True)
class RolloutSettings:
    """How episodes are played.

    Attributes:
        concurrency: episodes live at once (each holds one env).
        env_workers: where envs run: ``thread`` (default), ``process`` (crash isolation) or ``inline``. Envs that are
            not thread-safe (class attribute ``thread_safe = False``; ALFWorld's textworld parser) use processes.
        step_timeout_s: an env call (reset or step) that takes longer ends its episode with ``env_error``.
        batch_wait_s: how long a round waits for envs still stepping before it samples without them.
        seed: the run seed, mixed into every request's sampling seed.
        sequential: one episode at a time, inline envs: the deterministic reference mode.
        max_env_processes: process mode: None = one worker process per live episode (full isolation); N = at most N
            processes, each hosting several envs (start-up paid N times; a crash ends that process's episodes).
        remote: env servers to open sessions on instead of local envs (``env_workers`` is then ``thread``, or
            inline when sequential); an episode whose server is lost is re-run on another server.
    """

    context_mode: ContextMode = "concat"
    window_turns: int = 2
    max_turns: int = 8
    max_context_tokens: int = 2048
    sampling: SamplingParams = field(default_factory=SamplingParams)
    concurrency: int = 64
    env_workers: WorkerKind = "thread"
    step_timeout_s: float | None = 300.0
    batch_wait_s: float = 0.5
    seed: int = 0
    sequential: bool = False
    process_start_method: str = "forkserver"
    max_env_processes: int | None = None
    remote: RemotePoolSettings | None = None


def env_thread_safe(env_id: str) -> bool:
    """Whether envs of this id may step in parallel threads: the env class's ``thread_safe`` (default True; an env
    whose engine shares global state between instances, like textworld's parser, says False)."""
    try:
        return bool(getattr(envs.env_class(env_id), "thread_safe", True))
    except (EnvError, ImportError, AttributeError):
        return True


def request_seed(run_seed: int, spec: TaskSpec, turn: int) -> int:
    """The sampling seed of one request: run seed, group (task and iteration), sample index and turn."""
    return derive_seed(run_seed, "sample", spec.group_id, spec.seed, spec.sample_idx, turn)


@dataclass
class _Slot:
    """One episode in play."""

    index: int
    spec: TaskSpec
    runner: EnvRunner
    observation: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    system: list[Message] = field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    context: list[int] = field(default_factory=list)  # concat: the whole sequence so far
    pending: list[int] = field(default_factory=list)  # the prompt tokens of the next turn
    history: list[tuple[str, str]] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    won: bool = False
    stop: StopReason | None = None
    future: Future[Any] | None = None
    deadline: float = math.inf
    waiting: str = ""  # "reset" | "step" while an env call is in flight
    generation: Generation | None = None
    parsed: Parsed | None = None
    started: float = 0.0
    rerun: bool = False  # the env's server was lost: the episode is dropped and its task played again


def _expert_action(info: dict[str, Any]) -> str | None:
    """The env's expert action at a state (``info["expert_action"]``), None where the env has none."""
    action = info.get(INFO_EXPERT_ACTION)
    return str(action) if action else None


class _Loop:
    def __init__(
        self,
        env_id: str,
        tasks: Sequence[TaskSpec],
        engine: InferenceEngine,
        formatter: ChatFormatter,
        settings: RolloutSettings,
        env_kwargs: dict[str, Any],
        policy_version: int,
        parse: Callable[[str], Parsed],
        builder: PromptBuilder,
        progress: Callable[[int], None] | None,
    ) -> None:
        self.env_id, self.tasks, self.engine, self.formatter = env_id, tasks, engine, formatter
        self.settings, self.env_kwargs, self.policy_version = settings, env_kwargs, policy_version
        self.parse, self.builder, self.progress = parse, builder, progress
        self.kind: WorkerKind = "inline" if settings.sequential else settings.env_workers
        self.max_processes = settings.max_env_processes
        self.pool: RemoteEnvPool | None = None
        self.rerun_queue: list[int] = []  # task indices whose episode lost its server, to play again
        self.reruns: dict[int, int] = {}
        self.avoid: dict[int, set[str]] = {}  # servers a re-run task should not go back to
        if settings.remote is not None:
            self.kind = "inline" if settings.sequential else "thread"  # remote calls wait on the network only
            self.pool = RemoteEnvPool(settings.remote)
        elif self.kind == "thread" and not env_thread_safe(env_id):
            self.kind = "process"
            self.max_processes = self.max_processes or os.cpu_count() or 2
            logger.info("%s is not thread-safe: its envs step in %d worker processes", env_id, self.max_processes)
        self.shared: list[SharedEnvProcess] = []
        self.width = 1 if settings.sequential else max(1, settings.concurrency)
        self.executor = make_executor(self.kind, self.width + 4)
        self.finished: list[Episode | None] = [None] * len(tasks)
        self.num_finished = 0
        self.next_task = 0
        self.spare: list[EnvRunner] = []  # healthy runners of finished episodes, reused for the next task
        self.runners: list[EnvRunner] = []
        self.checked_tools: set[str] = set()
        self.eos = formatter.eos_token_id

    # ------------------------------------------------------------------ scheduling
    def run(self) -> list[Episode]:
        slots: list[_Slot] = []
        try:
            while self.num_finished < len(self.tasks):
                while len(slots) < self.width and (self.rerun_queue or self.next_task < len(self.tasks)):
                    if self.rerun_queue:
                        slots.append(self._start(self.rerun_queue.pop(0)))
                    else:
                        slots.append(self._start(self.next_task))
                        self.next_task += 1
                self._collect(slots, block=not any(self._ready(s) for s in slots))
                ready = [s for s in slots if self._ready(s)]
                if ready:
                    self._generate(ready)
                for slot in [s for s in slots if s.stop is not None and s.future is None]:
                    slots.remove(slot)
                    self._finish(slot)
        finally:
            for slot in slots:  # only on an exception: stop what is still in flight
                slot.runner.abandon()
            self.executor.shutdown(wait=False, cancel_futures=True)
            for runner in self.runners:
                runner.close()
            for process in self.shared:
                process.close()
            if self.pool is not None:
                self.pool.close()
        return [e for e in self.finished if e is not None]

    def _ready(self, slot: _Slot) -> bool:
        return slot.stop is None and slot.future is None

    def _start(self, index: int) -> _Slot:
        spec = self.tasks[index]
        self.spare = [r for r in self.spare if self._reusable(r)]
        if self.spare:
            runner = self.spare.pop()
        elif self.pool is not None:
            runner = RemoteEnvRunner(self.pool, self.env_id, self.env_kwargs, avoid=self.avoid.get(index, set()))
            self.runners.append(runner)
        elif self.kind == "process" and self.max_processes:
            self.shared = [p for p in self.shared if not p.broken]
            if len(self.shared) < self.max_processes:
                self.shared.append(
                    SharedEnvProcess(
                        self.env_id,
                        self.env_kwargs,
                        timeout_s=self.settings.step_timeout_s,
                        start_method=self.settings.process_start_method,
                    )
                )
            runner = PooledEnvRunner(min(self.shared, key=lambda p: p.next_key))
            self.runners.append(runner)
        else:
            runner = make_runner(
                self.kind,
                self.env_id,
                self.env_kwargs,
                timeout_s=self.settings.step_timeout_s,
                start_method=self.settings.process_start_method,
            )
            self.runners.append(runner)
        slot = _Slot(index, spec, runner, started=time.perf_counter())
        options = {"task_id": spec.task_id} if spec.task_id is not None else None
        self._submit(slot, "reset", runner.reset, spec.seed, options)
        return slot

    def _reusable(self, runner: EnvRunner) -> bool:
        if isinstance(runner, PooledEnvRunner):
            return not runner.shared.broken
        if isinstance(runner, RemoteEnvRunner):
            return self.pool is not None and self.pool.is_healthy(runner.server)
        return True

    def _lost(self, slot: _Slot) -> bool:
        """Whether the slot's env failed because its server disappeared and its task may be played again."""
        runner = slot.runner
        if not (isinstance(runner, RemoteEnvRunner) and runner.lost) or self.settings.remote is None:
            return False
        done = self.reruns.get(slot.index, 0)
        if done >= self.settings.remote.max_reruns:
            logger.warning(
                "%s/%d lost its env server %d times: episode ended (env_error)",
                slot.spec.group_id,
                slot.spec.sample_idx,
                done + 1,
            )
            return False
        return True

    def _submit(self, slot: _Slot, what: str, fn: Callable[..., Any], *args: Any) -> None:
        slot.waiting = what
        timeout = self.settings.step_timeout_s
        slot.deadline = math.inf if timeout is None else time.monotonic() + timeout
        slot.future = self.executor.submit(fn, *args)

    def _collect(self, slots: list[_Slot], *, block: bool) -> None:
        """Apply finished env calls. Waits for all in-flight calls up to ``batch_wait_s`` (or, when nothing else
        can run, until the first one finishes), and ends the episodes whose call is past its deadline."""
        in_flight = {s.future: s for s in slots if s.future is not None}
        if in_flight:
            if block:
                first_deadline = min(s.deadline for s in in_flight.values())
                timeout = None if first_deadline == math.inf else max(0.0, first_deadline - time.monotonic())
                wait(list(in_flight), timeout=timeout, return_when=FIRST_COMPLETED)
            # give the others a short while to join this round's batch
            wait(list(in_flight), timeout=self.settings.batch_wait_s)
        now = time.monotonic()
        for future, slot in in_flight.items():
            if future.done():
                slot.future = None
                self._apply(slot, future)
            elif now >= slot.deadline:
                logger.warning(
                    "env %s() of %s/%d took longer than %s s: episode ended (env_error)",
                    slot.waiting,
                    slot.spec.group_id,
                    slot.spec.sample_idx,
                    self.settings.step_timeout_s,
                )
                future.cancel()
                slot.runner.abandon()
                slot.future = None
                slot.stop = "env_error"
                slot.rerun = self._lost(slot)

    def _apply(self, slot: _Slot, future: Future[Any]) -> None:
        try:
            result = future.result()
        except EnvError as err:
            logger.warning("env %s failed in %s/%d: %s", slot.waiting, slot.spec.group_id, slot.spec.sample_idx, err)
            slot.stop = "env_error"
            slot.rerun = self._lost(slot)
            return
        if slot.waiting == "reset":
            self._on_reset(slot, *result)
        else:
            self._on_step(slot, *result)

    # ------------------------------------------------------------------ episode steps
    def _on_reset(self, slot: _Slot, observation: str, info: dict[str, Any]) -> None:
        slot.observation, slot.info = observation, info
        system_text = self.builder.system(info)
        slot.system = [{"role": "system", "content": system_text}] if system_text else []
        slot.tools = self.builder.tools(info)
        if self.settings.context_mode == "concat":
            key = json.dumps(slot.tools, sort_keys=True)
            if key not in self.checked_tools:
                self.formatter.check_prefix_stable(tools=slot.tools)
                self.checked_tools.add(key)
            slot.context = self.formatter.prompt_ids(
                [*slot.system, *self.builder.initial(observation, info)], tools=slot.tools
            )
            slot.pending = list(slot.context)

    def _prompt(self, slot: _Slot) -> list[int]:
        if self.settings.context_mode == "window":
            history = slot.history[-self.settings.window_turns :] if self.settings.window_turns else []
            actions = [action for _, action in slot.history]
            messages = self.builder.window(slot.observation, slot.info, history, actions=actions)
            slot.pending = self.formatter.prompt_ids([*slot.system, *messages], tools=slot.tools)
            return slot.pending
        return slot.context

    def _generate(self, ready: list[_Slot]) -> None:
        runnable, prompts, seeds = [], [], []
        for slot in ready:
            if len(slot.turns) >= self.settings.max_turns:
                slot.stop = "max_turns"
                continue
            prompt = self._prompt(slot)
            if len(prompt) + self.settings.sampling.max_new_tokens > self.settings.max_context_tokens:
                slot.stop = "context_limit"
                continue
            runnable.append(slot)
            prompts.append(prompt)
            seeds.append(request_seed(self.settings.seed, slot.spec, len(slot.turns)))
        if not runnable:
            return
        generations = self.engine.generate(prompts, self.settings.sampling, seeds=seeds)
        if len(generations) != len(prompts):
            raise RolloutError(f"the engine returned {len(generations)} generations for {len(prompts)} prompts")
        for slot, gen in zip(runnable, generations, strict=True):
            parsed = self.parse(gen.text)
            slot.generation, slot.parsed = gen, parsed
            if parsed.format_valid and parsed.action is not None:
                self._submit(slot, "step", slot.runner.step, parsed.action)
            else:  # Contract 3: the env is not stepped; its feedback is the next observation
                self._record(slot, parsed.feedback, 0.0, False, False, slot.info, action_valid=False)

    def _on_step(
        self, slot: _Slot, observation: str, reward: float, terminated: bool, truncated: bool, info: dict[str, Any]
    ) -> None:
        value = float(reward)
        if not math.isfinite(value):
            logger.warning("env %s returned a non-finite reward %r: episode ended (env_error)", self.env_id, reward)
            slot.runner.broken = True
            slot.stop = "env_error"
            return
        slot.won = bool(info.get("won", False))
        self._record(slot, observation, value, bool(terminated), bool(truncated), info, action_valid=None)

    def _record(
        self,
        slot: _Slot,
        observation: str,
        reward: float,
        terminated: bool,
        truncated: bool,
        info: dict[str, Any],
        *,
        action_valid: bool | None,
    ) -> None:
        """Store the turn just played and prepare the next prompt."""
        gen, parsed = slot.generation, slot.parsed
        assert gen is not None and parsed is not None
        stepped = action_valid is None
        slot.turns.append(
            Turn(
                prompt_ids=slot.pending,
                response_ids=list(gen.token_ids),
                response_logprobs=list(gen.logprobs),
                observation=slot.observation,
                response_text=gen.text,
                action=parsed.action if parsed.format_valid else None,
                format_valid=parsed.format_valid,
                action_valid=bool(info.get("action_valid", True)) if stepped else False,
                reward=reward,
                terminated=terminated,
                truncated=truncated,
                anchor=str(slot.info.get("anchor", "")),
                expert_action=_expert_action(slot.info),
                info=jsonable_info(info) if stepped else {},
            )
        )
        slot.history.append((slot.observation, parsed.action if parsed.action is not None else gen.text))
        slot.observation = observation
        slot.info = info  # unchanged when the env was not stepped (Contract 3)
        slot.generation = slot.parsed = None
        if terminated or truncated:
            slot.stop = "terminated" if terminated else "truncated"
            return
        if self.settings.context_mode == "concat":
            ended_with_eos = gen.finish_reason == "stop" and bool(gen.token_ids) and gen.token_ids[-1] == self.eos
            delta = self.formatter.delta_ids(
                self.builder.reply(observation, info), tools=slot.tools, response_ended_with_eos=ended_with_eos
            )
            slot.context = [*slot.context, *gen.token_ids, *delta]
            slot.pending = delta

    def _finish(self, slot: _Slot) -> None:
        if slot.runner.broken:
            slot.runner.close()
        else:
            self.spare.append(slot.runner)
        if slot.rerun:  # its server is gone: drop the turns, play the task again elsewhere (same seeds)
            assert isinstance(slot.runner, RemoteEnvRunner)
            self.reruns[slot.index] = self.reruns.get(slot.index, 0) + 1
            if slot.runner.url is not None:
                self.avoid.setdefault(slot.index, set()).add(slot.runner.url)
            self.rerun_queue.append(slot.index)
            logger.info(
                "%s/%d: env server %s lost after %d turns; playing it again on another server",
                slot.spec.group_id,
                slot.spec.sample_idx,
                slot.runner.url,
                len(slot.turns),
            )
            return
        assert self.finished[slot.index] is None, "an episode finished twice"
        stop = slot.stop or "max_turns"
        extra = {} if self.pool is None else {"env_reruns": float(self.reruns.get(slot.index, 0))}
        self.finished[slot.index] = Episode(
            task_id=str(slot.info.get("task_id", slot.spec.task_id or "")),
            group_id=slot.spec.group_id,
            sample_idx=slot.spec.sample_idx,
            env_id=self.env_id,
            turns=slot.turns,
            seed=slot.spec.seed,
            policy_version=self.policy_version,
            context_mode=self.settings.context_mode,
            won=slot.won,
            stop_reason=stop,
            metrics={
                "num_turns": float(len(slot.turns)),
                "invalid_format": float(sum(not t.format_valid for t in slot.turns)),
                "env_error": float(stop == "env_error"),
                "wall_s": time.perf_counter() - slot.started,
                **extra,
            },
        )
        self.num_finished += 1
        if self.progress is not None:
            self.progress(self.num_finished)


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
    """Play every task to the end and return one Episode per TaskSpec, in order.

    ``progress(n)`` is called with the number of finished episodes each time one finishes.
    """
    parse = parse_action or envs.action_parser(env_id)
    builder: PromptBuilder = prompts or envs.load_module(env_id, "prompts").PROMPTS
    loop = _Loop(
        env_id, tasks, engine, formatter, settings, dict(env_kwargs or {}), policy_version, parse, builder, progress
    )
    return loop.run()
