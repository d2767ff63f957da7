"""The Ray driver: the Trainer's two parts as Ray actors (:class:`RayGenerator`: rollout workers around an inference
actor; :class:`RayLearners`: the learner actor(s)); :class:`RayTrainer` only builds them, every phase is
:class:`~resrl_agent.trainer.loop.Trainer`'s.

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
from typing import Any, cast

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

from resrl_agent.config import RunConfig
from resrl_agent.errors import TrainerError
from resrl_agent.inference.base import Generation, InferenceEngine, SamplingParams
from resrl_agent.inference.hf import load_model_and_tokenizer
from resrl_agent.inference.make_model import resolve_model_path
from resrl_agent.rollout.chat import ChatFormatter
from resrl_agent.rollout.loop import RolloutSettings, TaskSpec
from resrl_agent.run.engines import close_engine, make_engine
from resrl_agent.seeding import derive_seed, seed_everything
from resrl_agent.trainer.distributed import DataParallel, free_port, init_learner_group
from resrl_agent.trainer.learner import Learner, LearnerSettings
from resrl_agent.trainer.loop import Trainer
from resrl_agent.trainer.parts import LocalGenerator, LocalLearners
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
        self._local: LocalLearners | None = None
        if world_size == 1:
            self._build(None)

    def _build(self, parallel: DataParallel | None) -> None:
        config = self.config
        settings = LearnerSettings.from_config(config)
        learner = Learner(self._model, settings, seed=derive_seed(config.seed, "learner"), parallel=parallel)
        self._local = LocalLearners(learner, config, self.pad_id)

    @property
    def local(self) -> LocalLearners:
        """This rank's learner as an in-process learner group (its update and SFT)."""
        if self._local is None:
            raise TrainerError(f"learner rank {self.rank} of {self.world_size} has not joined its group (join())")
        return self._local

    @property
    def learner(self) -> Learner:
        return self.local.learner

    def address(self) -> tuple[str, int]:
        """Rank 0: where the others meet it (this node's IP, a free port)."""
        return ray.util.get_node_ip_address(), free_port()

    def join(self, addr: str, port: int) -> int:
        """Join the learners' process group and build this rank's learner (a collective: all ranks at once)."""
        init_learner_group(self.rank, self.world_size, addr=addr, port=port, device=self.config.trainer.device)
        self._build(DataParallel(self.config.trainer.data_parallel))
        return self.rank

    def update(self, episodes: list[Episode]) -> dict[str, float]:
        return self.local.update(episodes)

    def sft(
        self, episodes: list[Episode], epochs: int | None = None, lr: float | None = None
    ) -> list[dict[str, float]]:
        return self.local.sft(episodes, None, epochs=epochs, lr=lr)

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
    """Owns envs (local, or remote over HTTP through the env's own client) and plays groups of tasks: a
    :class:`~resrl_agent.trainer.parts.LocalGenerator` whose engine is the inference actor."""

    def __init__(self, config: RunConfig, engine: Any) -> None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(config.model.path))
        formatter = ChatFormatter(tokenizer)
        engine = engine if not _is_actor(engine) else _RemoteEngine(engine, formatter.eos_token_id)
        self.generator = LocalGenerator(config, engine, formatter)

    def pid(self) -> int:
        return os.getpid()

    def play(self, tasks: list[TaskSpec], settings: RolloutSettings, policy_version: int) -> list[Episode]:
        return self.generator.play(tasks, settings, policy_version=policy_version)


def _is_actor(obj: Any) -> bool:
    return isinstance(obj, ray.actor.ActorHandle)


class RayLearners:
    """The learner actors as one learner group: every call goes to all ranks at once (their collectives need every
    rank); rank 0's answer is the group's."""

    def __init__(self, actors: list[Any]) -> None:
        self.actors = actors

    def _on_all(self, method: str, *args: Any) -> Any:
        refs = [getattr(actor, method).remote(*args) for actor in self.actors]
        first = ray.get(refs[0])
        ray.get(refs[1:])
        return first

    def _shared(self, value: Any) -> Any:
        return ray.put(value) if len(self.actors) > 1 else value  # one object-store copy for every rank

    def update(self, episodes: list[Episode]) -> dict[str, float]:
        metrics: dict[str, float] = self._on_all("update", self._shared(episodes))
        return metrics

    def sft(
        self, episodes: list[Episode], on_step: Any, *, epochs: int | None, lr: float | None
    ) -> list[dict[str, float]]:
        del on_step  # the steps run in the learner actors; the driver logs their history when they return
        history: list[dict[str, float]] = self._on_all("sft", self._shared(episodes), epochs, lr)
        return history

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = self._on_all("state_dict")
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._on_all("load_state_dict", self._shared(state))

    def weight_refs(self) -> list[Any]:
        """Every rank's ``weights`` call (fsdp2: all ranks join the gather); rank 0's ref holds the whole state."""
        return [actor.weights.remote() for actor in self.actors]

    def stats(self) -> dict[str, float]:
        return {"ray/learners": float(len(self.actors))}

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor)


class RayGenerator:
    """Rollout worker actors around one inference actor.

    Rollouts are dispatched one group per request; a worker that dies is replaced by a fresh actor and its group
    re-run from scratch, so each group comes back exactly once with all G episodes.
    """

    def __init__(self, config: RunConfig, inference: Any, num_workers: int) -> None:
        self.config, self.inference = config, inference
        self._worker_cls = ray.remote(max_restarts=0)(RolloutWorker)
        self.workers = [self._new_worker() for _ in range(num_workers)]
        self.replaced_workers = 0
        self.version = 0

    def _new_worker(self) -> Any:
        return self._worker_cls.options(num_cpus=self.config.trainer.worker_cpus).remote(self.config, self.inference)

    def load_weights_from(self, learners: RayLearners) -> None:
        self.version += 1
        refs = learners.weight_refs()
        ray.get(self.inference.update_weights.remote(refs[0], self.version))
        ray.get(refs[1:])

    def play(
        self,
        tasks: list[TaskSpec],
        settings: RolloutSettings,
        *,
        policy_version: int,
        progress: Callable[[int], None] | None = None,
        on_submitted: Callable[[list[Any]], None] | None = None,
    ) -> list[Episode]:
        """Play ``tasks`` on the worker actors, one group per request; a dead worker is replaced, its groups re-run.

        ``progress(n)`` after each group that comes back (n episodes done so far); ``on_submitted(workers)`` runs
        once after the first requests are in flight (tests kill a worker there).
        """
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
                ref = self.workers[slot].play.remote(groups[group], settings, policy_version)
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
                if progress is not None:
                    progress(sum(len(v) for v in results.values()))
        ordered = [ep for group in groups for ep in results[group]]
        if len(ordered) != len(tasks):
            raise TrainerError(f"{len(ordered)} episodes for {len(tasks)} rollouts")
        return ordered

    def stats(self) -> dict[str, float]:
        return {"ray/replaced_workers": float(self.replaced_workers)}

    def close(self) -> None:
        """Stop the actors; the inference actor first shuts its engine down cleanly (a vLLM engine's processes
        would otherwise only notice their parent's death; see :mod:`resrl_agent.inference.vllm_spawn`)."""
        try:
            ray.get(self.inference.close.remote(), timeout=60)
        except Exception as err:  # a dead actor or a hung engine must not stop the others from being killed
            logger.warning("inference actor: engine close failed (%s); killing it", err)
        for handle in [*self.workers, self.inference]:
            ray.kill(handle)


class RayTrainer(Trainer):
    """The trainer with Ray actors: the same phases, checkpoints and metrics as :class:`Trainer`, on a
    :class:`RayGenerator` and :class:`RayLearners` (the Ray instance itself stays up after :meth:`close`)."""

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
        actors = [learner_cls.remote(config, rank, n) for rank in range(n)]
        if n > 1:
            addr, port = ray.get(actors[0].address.remote())
            ray.get([actor.join.remote(addr, port) for actor in actors])
        engine_gpu = share if engine_cuda else 0
        inference = ray.remote(InferenceWorker).options(num_cpus=cpus, num_gpus=engine_gpu).remote(config)
        self.learner_group = RayLearners(actors)
        self.generator = RayGenerator(config, inference, config.trainer.rollout_workers)
        self.push_weights()

    @property
    def ray_generator(self) -> RayGenerator:
        return cast(RayGenerator, self.generator)

    @property
    def learners(self) -> list[Any]:
        """The learner actors, rank 0 first."""
        return cast(RayLearners, self.learner_group).actors

    @property
    def workers(self) -> list[Any]:
        """The rollout worker actors."""
        return self.ray_generator.workers

    @property
    def inference(self) -> Any:
        """The inference actor."""
        return self.ray_generator.inference

    @property
    def replaced_workers(self) -> int:
        return self.ray_generator.replaced_workers
