"""The Ray driver: rollout worker actors, an inference actor and learner actor(s) around the same plain classes.

Every actor is a plain class that works without Ray (:class:`LearnerWorker`, :class:`InferenceWorker`,
:class:`RolloutWorker`); Ray only places and wraps them. Each asks for ``trainer.worker_cpus`` (fractional) CPUs, so
on a 2-core machine all of them get a slot.

Rollouts are dispatched one group at a time (the G rollouts of one task go to one worker). A worker that dies
(its process killed) is replaced by a fresh actor and the groups it held are re-run from scratch on some worker,
so each group comes back exactly once with all G episodes: none lost, none duplicated.

With ``trainer.num_learners`` = N > 1 the driver starts N learner actors (one GPU each on CUDA). Rank 0 picks the
rendezvous address (its node's IP and a free port) and every actor joins one torch.distributed group (nccl on CUDA,
gloo on CPU) and builds its learner (``trainer.data_parallel``: ddp or fsdp2; see
:mod:`resrl_agent.trainer.distributed`). Every actor gets the whole episode list (one object in the object store)
and keeps its episode groups; weights for inference and checkpoints come from rank 0 (gathered whole under fsdp2,
which every rank joins); a resumed state is loaded into every rank.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

from resrl_agent.config import RunConfig
from resrl_agent.errors import TrainerError
from resrl_agent.inference.base import Generation, InferenceEngine, SamplingParams
from resrl_agent.inference.hf import load_model_and_tokenizer
from resrl_agent.inference.make_model import resolve_model_path
from resrl_agent.rollout.chat import ChatFormatter
from resrl_agent.rollout.loop import RolloutSettings, TaskSpec, run_episodes
from resrl_agent.run.engines import close_engine, make_engine
from resrl_agent.run.settings import rollout_settings
from resrl_agent.seeding import derive_seed, seed_everything
from resrl_agent.trainer.distributed import DataParallel, free_port, init_learner_group
from resrl_agent.trainer.learner import Learner, LearnerSettings
from resrl_agent.trainer.loop import Trainer
from resrl_agent.trainer.sft import sft_phase
from resrl_agent.trainer.update import train_on_episodes
from resrl_agent.types import Episode

logger = logging.getLogger(__name__)

__all__ = ["InferenceWorker", "LearnerWorker", "RayTrainer", "RolloutWorker"]

_WORKER_DIED = (RayActorError, ActorDiedError, ActorUnavailableError)


def _load(config: RunConfig, device: str) -> tuple[Any, Any]:
    return load_model_and_tokenizer(
        resolve_model_path(config.model.path),
        dtype=config.model.dtype,
        device=device,
        attn_implementation=config.model.attn_implementation,
    )


class LearnerWorker:
    """The learner and its update (GPU when present); the learner actor(s) wrap it.

    With ``world_size`` > 1 the worker is rank ``rank`` of the learners: it loads the model at once, and builds its
    learner in :meth:`join`, after the process group exists (fsdp2 shards the model before the optimizer is made).
    Every rank receives the same calls; :meth:`weights` and :meth:`state_dict` return the whole state on rank 0
    and ``{}`` elsewhere.
    """

    def __init__(self, config: RunConfig, rank: int = 0, world_size: int = 1) -> None:
        seed_everything(config.seed)
        self.config = config
        self.rank, self.world_size = rank, world_size
        self._model, tokenizer = _load(config, config.trainer.device)
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
        self._learner: Learner | None = None
        if world_size == 1:
            self._build(None)

    def _build(self, parallel: DataParallel | None) -> None:
        config = self.config
        settings = LearnerSettings.from_config(config)
        self._learner = Learner(self._model, settings, seed=derive_seed(config.seed, "learner"), parallel=parallel)

    @property
    def learner(self) -> Learner:
        if self._learner is None:
            raise TrainerError(f"learner rank {self.rank} of {self.world_size} has not joined its group (join())")
        return self._learner

    def address(self) -> tuple[str, int]:
        """Rank 0: where the others meet it (this node's IP, a free port)."""
        return ray.util.get_node_ip_address(), free_port()

    def join(self, addr: str, port: int) -> int:
        """Join the learners' process group and build this rank's learner (a collective: all ranks at once)."""
        init_learner_group(self.rank, self.world_size, addr=addr, port=port, device=self.config.trainer.device)
        self._build(DataParallel(self.config.trainer.data_parallel))
        return self.rank

    def update(self, episodes: list[Episode]) -> dict[str, float]:
        return train_on_episodes(self.learner, episodes, self.config, pad_id=self.pad_id)

    def sft(
        self, episodes: list[Episode], epochs: int | None = None, lr: float | None = None
    ) -> list[dict[str, float]]:
        return sft_phase(self.learner, episodes, self.config, pad_id=self.pad_id, epochs=epochs, lr=lr)

    def weights(self) -> dict[str, Any]:
        parallel = self.learner.parallel
        if self.rank != 0 and (parallel is None or not parallel.sharded):
            return {}  # replicas: rank 0's copy is the one sent
        state = self.learner.model_state()  # fsdp2: every rank joins the gather
        return state if self.rank == 0 else {}

    def state_dict(self) -> dict[str, Any]:
        parallel = self.learner.parallel
        if self.rank != 0 and (parallel is None or not parallel.sharded):
            return {}
        state = self.learner.state_dict()
        return state if self.rank == 0 else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.learner.load_state_dict(state)


class InferenceWorker:
    """The configured engine behind the inference actor (:func:`~resrl_agent.run.engines.make_engine`: HF on
    ``engine.device``, or a vLLM engine); ``update_weights`` loads the learner's weights into it."""

    def __init__(self, config: RunConfig) -> None:
        self.engine: InferenceEngine = make_engine(config)
        self.version = 0

    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, seeds: Sequence[int] | None = None
    ) -> list[Generation]:
        return self.engine.generate(prompts, params, seeds)

    def update_weights(self, state: dict[str, Any], version: int) -> int:
        self.engine.update_weights(state)
        self.version = version
        return version

    def close(self) -> None:
        """Stop the engine's processes (vLLM's engine core) before the actor is killed; idempotent."""
        close_engine(self.engine)


class _RemoteEngine:
    """The InferenceEngine protocol over an inference actor handle (what a rollout worker's loop calls)."""

    def __init__(self, handle: Any, eos_token_id: int) -> None:
        self.handle = handle
        self.eos_token_id = eos_token_id

    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, seeds: Sequence[int] | None = None
    ) -> list[Generation]:
        result: list[Generation] = ray.get(self.handle.generate.remote(list(prompts), params, seeds))
        return result


class RolloutWorker:
    """Owns envs (local, or remote over HTTP through the env's own client) and plays groups of tasks."""

    def __init__(self, config: RunConfig, engine: Any) -> None:
        from transformers import AutoTokenizer

        self.config = config
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(config.model.path))
        self.formatter = ChatFormatter(tokenizer)
        self.engine = engine if not _is_actor(engine) else _RemoteEngine(engine, self.formatter.eos_token_id)

    def pid(self) -> int:
        return os.getpid()

    def play(self, tasks: list[TaskSpec], settings: RolloutSettings, policy_version: int) -> list[Episode]:
        return run_episodes(
            self.config.env.id,
            tasks,
            self.engine,
            self.formatter,
            settings,
            env_kwargs=dict(self.config.env.kwargs),
            policy_version=policy_version,
        )


def _is_actor(obj: Any) -> bool:
    return isinstance(obj, ray.actor.ActorHandle)


class RayTrainer(Trainer):
    """The trainer with Ray actors: same phases, checkpoints and metrics as :class:`Trainer`."""

    def _setup(self) -> None:
        from transformers import AutoTokenizer

        config = self.config
        if not ray.is_initialized():
            ray.init(include_dashboard=False, log_to_driver=False)
        cpus = config.trainer.worker_cpus
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(config.model.path))
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer
        self.formatter = ChatFormatter(tokenizer)
        self.pad_id = int(tokenizer.pad_token_id)
        learner_cuda = config.trainer.device.startswith("cuda")
        engine_cuda = config.engine.device.startswith("cuda")
        # Both on one GPU: each actor asks for half of it (an actor with num_gpus=0 sees no GPU at all). Several
        # learners take one GPU each (nccl wants one rank per device).
        share = 0.5 if learner_cuda and engine_cuda else 1
        n = config.trainer.num_learners
        gpu = (share if n == 1 else 1) if learner_cuda else 0
        learner_cls = ray.remote(LearnerWorker).options(num_cpus=cpus, num_gpus=gpu)
        self.learners = [learner_cls.remote(config, rank, n) for rank in range(n)]
        if n > 1:
            addr, port = ray.get(self.learners[0].address.remote())
            ray.get([actor.join.remote(addr, port) for actor in self.learners])
        self.learner_actor = self.learners[0]
        engine_gpu = share if engine_cuda else 0
        self.inference = ray.remote(InferenceWorker).options(num_cpus=cpus, num_gpus=engine_gpu).remote(config)
        self._worker_cls = ray.remote(max_restarts=0)(RolloutWorker)
        self.workers = [self._new_worker() for _ in range(config.trainer.rollout_workers)]
        self.replaced_workers = 0
        self.version = 0
        self.push_weights()

    def _new_worker(self) -> Any:
        return self._worker_cls.options(num_cpus=self.config.trainer.worker_cpus).remote(self.config, self.inference)

    # ------------------------------------------------------------------------------------------- the phases
    def _on_learners(self, method: str, *args: Any) -> Any:
        """Call ``method`` on every learner at once (their collectives need all ranks); rank 0's result."""
        refs = [getattr(actor, method).remote(*args) for actor in self.learners]
        first = ray.get(refs[0])
        ray.get(refs[1:])
        return first

    def push_weights(self) -> None:
        self.version += 1
        refs = [actor.weights.remote() for actor in self.learners]
        ray.get(self.inference.update_weights.remote(refs[0], self.version))
        ray.get(refs[1:])

    def update(self, episodes: list[Episode]) -> dict[str, float]:
        shared = ray.put(episodes) if len(self.learners) > 1 else episodes
        metrics: dict[str, float] = self._on_learners("update", shared)
        metrics["ray/replaced_workers"] = float(self.replaced_workers)
        metrics["ray/learners"] = float(len(self.learners))
        return metrics

    def sft_update(
        self,
        episodes: list[Episode],
        on_step: Callable[[int, dict[str, float]], None] | None = None,
        *,
        epochs: int | None = None,
        lr: float | None = None,
    ) -> list[dict[str, float]]:
        del on_step  # the steps run in the learner actors; the driver logs their history when they return
        shared = ray.put(episodes) if len(self.learners) > 1 else episodes
        history: list[dict[str, float]] = self._on_learners("sft", shared, epochs, lr)
        return history

    def learner_state(self) -> dict[str, Any]:
        state: dict[str, Any] = self._on_learners("state_dict")
        return state

    def load_learner_state(self, state: dict[str, Any]) -> None:
        shared = ray.put(state) if len(self.learners) > 1 else state
        self._on_learners("load_state_dict", shared)

    def rollout(
        self,
        tasks: list[TaskSpec],
        *,
        iteration: int,
        evaluation: bool = False,
        on_submitted: Callable[[list[Any]], None] | None = None,
    ) -> list[Episode]:
        """Play ``tasks`` on the worker actors, one group per request; a dead worker is replaced, its groups re-run.

        ``on_submitted(workers)`` runs once after the first requests are in flight (tests kill a worker there).
        """
        settings = rollout_settings(self.config, evaluation=evaluation)
        groups: dict[str, list[TaskSpec]] = {}
        for spec in tasks:
            groups.setdefault(spec.group_id, []).append(spec)
        queue = list(groups)
        results: dict[str, list[Episode]] = {}
        in_flight: dict[Any, tuple[int, str]] = {}
        idle = list(range(len(self.workers)))
        notified = False
        while queue or in_flight:
            while queue and idle:
                slot, group = idle.pop(0), queue.pop(0)
                ref = self.workers[slot].play.remote(groups[group], settings, iteration)
                in_flight[ref] = (slot, group)
            if on_submitted is not None and not notified:
                notified = True
                on_submitted(list(self.workers))
            done, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in done:
                slot, group = in_flight.pop(ref)
                try:
                    episodes = ray.get(ref)
                except _WORKER_DIED as err:
                    logger.warning("rollout worker %d died (%s); replacing it and re-running %s", slot, err, group)
                    self.workers[slot] = self._new_worker()
                    self.replaced_workers += 1
                    queue.insert(0, group)
                    idle.append(slot)
                    continue
                if group in results:
                    raise TrainerError(f"group {group} came back twice")  # cannot happen: one request per group
                results[group] = episodes
                idle.append(slot)
        ordered = [ep for group in groups for ep in results[group]]
        if len(ordered) != len(tasks):
            raise TrainerError(f"{len(ordered)} episodes for {len(tasks)} rollouts")
        return ordered

    def close(self) -> None:
        """Stop this run's actors (the Ray instance itself stays up); the inference actor first shuts its engine
        down cleanly (a vLLM engine's processes would otherwise only notice their parent's death; see
        :mod:`resrl_agent.inference.vllm_spawn`)."""
        try:
            ray.get(self.inference.close.remote(), timeout=60)
        except Exception as err:  # a dead actor or a hung engine must not stop the others from being killed
            logger.warning("inference actor: engine close failed (%s); killing it", err)
        for handle in [*self.workers, self.inference, *self.learners]:
            ray.kill(handle)
