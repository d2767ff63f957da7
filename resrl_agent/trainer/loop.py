"""The single-process trainer: SFT warm start, then rollout -> advantages -> ResRL -> PPO -> weights to inference.

The Trainer holds a generator (plays tasks into episodes) and a learner group (updates, SFT, weights, state); see
:mod:`resrl_agent.trainer.parts`. Here both live in this process: the inference engine
(:func:`resrl_agent.run.engines.make_engine`; HF shares the policy's weights when both are on the same device, so
"pushing weights" costs nothing; vLLM runs its own engine and takes the learner's weights after every update) and
one learner. The Ray driver (:mod:`resrl_agent.trainer.ray_driver`) only builds other parts: rollout workers around
an inference actor, and one or several learner actors (``trainer.num_learners``); every phase is this code.

Determinism (``trainer.deterministic``): every generation request is its own batch of one, seeded from the run
seed, the iteration, the task slot, the sample and the turn (``TaskSpec.seed`` comes from ``derive_seed(seed,
"task", iteration, k)``; the rollout loop mixes in the sample index and the turn). Together with the checkpointed
optimizer, scheduler, learner generator and global RNG states, a run resumed from a checkpoint reproduces the
uninterrupted run's rollouts and losses exactly on CPU.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import envs
from resrl_agent.config import RunConfig, dump_config
from resrl_agent.errors import TrainerError
from resrl_agent.eval.heldout import HeldOutResult, heldout_rows
from resrl_agent.eval.summary import summarize
from resrl_agent.files import atomic_write_text
from resrl_agent.inference.hf import load_model_and_tokenizer
from resrl_agent.inference.make_model import resolve_model_path
from resrl_agent.rollout.chat import ChatFormatter
from resrl_agent.rollout.loop import TaskSpec
from resrl_agent.run.engines import make_engine
from resrl_agent.run.settings import rollout_settings
from resrl_agent.run.tasks import eval_tasks, held_out_split, train_tasks
from resrl_agent.seeding import derive_seed, seed_everything
from resrl_agent.trainer.checkpoint import (
    check_tokenizer,
    load_checkpoint,
    loadable_checkpoints,
    save_checkpoint,
    set_rng_state,
)
from resrl_agent.trainer.learner import Learner, LearnerSettings
from resrl_agent.trainer.metrics import MetricsSink
from resrl_agent.trainer.parts import Generator, LearnerGroup, LocalGenerator, LocalLearners
from resrl_agent.trainer.sft import dagger_relabel, expert_episodes, replay_sample, sft_step_count
from resrl_agent.types import Episode, write_episodes

logger = logging.getLogger(__name__)

__all__ = ["Trainer", "rollout_metrics", "run_files", "write_heldout"]

# what a run writes into its run dir (a --force start over deletes exactly these)
RUN_FILES = ("metrics.jsonl", "checkpoints", "heldout.json", "plots", "tb", "sft_episodes.jsonl", "config.yaml")
RUN_FILE_PATTERNS = ("eval_*.jsonl", "dagger_*.jsonl")


def run_files(run_dir: Path) -> list[Path]:
    """The files of a previous run in ``run_dir``: empty when it holds no metrics and no checkpoint (a dir with only
    a config, or files of other commands, is free)."""
    if not run_dir.is_dir():
        return []
    metrics = run_dir / "metrics.jsonl"
    checkpoints = run_dir / "checkpoints"
    has_run = (metrics.is_file() and metrics.stat().st_size > 0) or (
        checkpoints.is_dir() and any(checkpoints.glob("*.pt"))
    )
    if not has_run:
        return []
    held = [run_dir / name for name in RUN_FILES if (run_dir / name).exists()]
    return held + [p for pattern in RUN_FILE_PATTERNS for p in sorted(run_dir.glob(pattern))]


def write_heldout(run_dir: Path, config: RunConfig, results: list[HeldOutResult]) -> None:
    """RUN_DIR/heldout.json (:func:`heldout_rows`) and RUN_DIR/plots/heldout_success.png, written atomically."""
    from resrl_agent.eval.plot import plot_heldout_success

    payload = {
        "env": config.env.id,
        "env_kwargs": dict(config.env.kwargs),
        "eval_split": held_out_split(config),
        "num_tasks": config.eval.num_tasks,
        "samples_per_task": config.eval.samples_per_task,
        "rows": heldout_rows(results),
    }
    atomic_write_text(run_dir / "heldout.json", json.dumps(payload, indent=1))
    shape = f"{config.eval.num_tasks} tasks x {config.eval.samples_per_task}"
    plot_heldout_success(
        [(r.label, r.won, r.total) for r in results],
        run_dir / "plots" / "heldout_success.png",
        title=f"{config.name}: held-out success ({shape})",
    )


def rollout_metrics(episodes: list[Episode]) -> dict[str, float]:
    """An iteration's ``rollout/*`` metrics (:func:`~resrl_agent.eval.summary.summarize`)."""
    s = summarize(episodes)
    return {
        "rollout/episodes": float(s.episodes),
        "rollout/groups": float(s.groups),
        "rollout/success": s.success_rate,
        "rollout/return_mean": s.mean_return,
        "rollout/turns_mean": s.mean_turns,
        "rollout/invalid_format_rate": s.invalid_format_rate,
        "rollout/invalid_action_rate": s.invalid_action_rate,
        "rollout/env_error_frac": s.env_errors / max(s.episodes, 1),
        "rollout/tokens": float(s.tokens),
        "rollout/response_tokens": float(s.response_tokens),
    }


@dataclass
class _State:
    """The data position: what a checkpoint must restore besides weights and RNGs."""

    iteration: int = 0  # next RL iteration to run
    sft_done: bool = False
    evals: dict[str, dict[str, float]] = field(default_factory=dict)


class Trainer:
    """The whole run in one process: ``run()`` does SFT (if configured), RL iterations, checkpoints and evals."""

    def __init__(self, config: RunConfig, *, progress: Callable[[str, dict[str, float]], None] | None = None) -> None:
        self.config = config
        self.run_dir = config.resolved_run_dir  # nothing is written there before claim_run_dir
        seed_everything(config.seed)
        self.sink = MetricsSink(self.run_dir)
        self.state = _State()
        self.progress = progress
        self._interrupted = False
        self._setup()

    def _setup(self) -> None:
        """Build the policy, learner and inference engine in this process (the Ray driver builds actors)."""
        config = self.config
        if config.trainer.num_learners > 1:
            raise TrainerError(
                f"trainer.num_learners={config.trainer.num_learners} needs trainer.driver=ray (it starts one learner "
                "actor per rank); the single-process trainer has one learner. Without Ray, run your own processes "
                "with resrl_agent.trainer.distributed (init_learner_group, DataParallel, train_on_episodes)"
            )
        model_dir = resolve_model_path(config.model.path)
        model, tokenizer = load_model_and_tokenizer(
            model_dir,
            dtype=config.model.dtype,
            device=config.trainer.device,
            attn_implementation=config.model.attn_implementation,
        )
        self.tokenizer = tokenizer
        self.formatter = ChatFormatter(tokenizer)
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
        learner = Learner(model, LearnerSettings.from_config(config), seed=derive_seed(config.seed, "learner"))
        self.learner_group: LearnerGroup = LocalLearners(learner, config, self.pad_id)
        # hf: shares the policy's module (same device) or a copy; vllm: its own engine that takes pushed weights
        self.generator: Generator = LocalGenerator(config, make_engine(config, model, tokenizer), self.formatter)

    @property
    def learner(self) -> Learner:
        """The in-process learner (the single-process trainer's)."""
        return cast(LocalLearners, self.learner_group).learner

    @property
    def engine(self) -> Any:
        """The in-process inference engine (the single-process trainer's)."""
        return cast(LocalGenerator, self.generator).engine

    # --------------------------------------------------------------------------------------------- plumbing
    def push_weights(self) -> None:
        """Make the generator sample from the learner group's current weights (after every update)."""
        self.generator.load_weights_from(self.learner_group)

    def _emit(self, phase: str, step: int, metrics: dict[str, float]) -> None:
        self.sink.log(step, metrics, phase=phase)
        if self.progress is not None:
            self.progress(phase, {"step": float(step), **metrics})

    def rollout(self, tasks: list[TaskSpec], *, iteration: int, evaluation: bool = False) -> list[Episode]:
        """Play ``tasks`` with the current policy on the generator."""
        settings = rollout_settings(self.config, evaluation=evaluation)
        progress = self._episode_progress(len(tasks), evaluation)
        return self.generator.play(tasks, settings, policy_version=iteration, progress=progress)

    def _episode_progress(self, total: int, evaluation: bool) -> Callable[[int], None] | None:
        """``progress(n)`` for a rollout: tells the display (phase "episodes", not logged) n of ``total`` are done."""
        if self.progress is None:
            return None
        report = self.progress
        kind = 1.0 if evaluation else 0.0
        return lambda done: report("episodes", {"done": float(done), "total": float(total), "evaluation": kind})

    def update(self, episodes: list[Episode]) -> dict[str, float]:
        """One RL update on the learner group, with both parts' counters."""
        return {**self.learner_group.update(episodes), **self.learner_group.stats(), **self.generator.stats()}

    def sft_update(
        self,
        episodes: list[Episode],
        on_step: Callable[[int, dict[str, float]], None] | None = None,
        *,
        epochs: int | None = None,
        lr: float | None = None,
    ) -> list[dict[str, float]]:
        """SFT epochs (default ``trainer.sft_epochs``) on the learner group at peak learning rate ``lr`` (default
        ``trainer.sft_lr``); the RL optimizer is fresh afterwards.

        ``on_step(step, metrics)`` is called after each optimizer step, as it happens, where the steps run in this
        process (Ray learner actors return their history at the end instead)."""
        return self.learner_group.sft(episodes, on_step, epochs=epochs, lr=lr)

    # ------------------------------------------------------------------------------------------ checkpoints
    def save(self, name: str) -> None:
        payload = {
            "learner": self.learner_group.state_dict(),
            "iteration": self.state.iteration,
            "sft_done": self.state.sft_done,
            "evals": self.state.evals,
            "config": self.config.model_dump(mode="json"),
        }
        path = save_checkpoint(self.run_dir, name, payload, tokenizer=self.tokenizer)
        logger.info("checkpoint %s", path)

    def resume(self, path: str | None = None) -> None:
        """Restore weights, optimizer, scheduler, RNGs and the data position from a checkpoint: ``path``, else the
        newest of the run's that loads (one a crash left unreadable is skipped, with a warning that says so)."""
        candidates = [Path(path)] if path is not None else loadable_checkpoints(self.run_dir)
        if not candidates:
            raise TrainerError(f"--resume: no checkpoint under {self.run_dir}/checkpoints")
        payload: dict[str, Any] | None = None
        for file in candidates:
            try:
                payload = load_checkpoint(file)
                break
            except TrainerError as err:
                if path is not None or file == candidates[-1]:
                    raise
                logger.warning("--resume: skipping %s, the newest checkpoint that does not load: %s", file, err)
        assert payload is not None
        check_tokenizer(payload, self.tokenizer, checkpoint=file, model_path=self.config.model.path)
        self.learner_group.load_state_dict(payload["learner"])
        self.state = _State(payload["iteration"], payload["sft_done"], dict(payload.get("evals", {})))
        set_rng_state(payload["rng"])
        self.push_weights()
        self.sink.truncate_after("rl", self.state.iteration - 1)
        logger.info("resumed from %s at iteration %d", file, self.state.iteration)

    # ------------------------------------------------------------------------------------------------ phases
    def evaluate(self, label: str) -> HeldOutResult:
        """Success on the held-out tasks (the same tasks and seeds at every call)."""
        start = time.perf_counter()
        tasks = eval_tasks(self.config, self.config.eval.num_tasks, self.config.eval.samples_per_task)
        episodes = self.rollout(tasks, iteration=-1, evaluation=True)
        elapsed = time.perf_counter() - start
        write_episodes(self.run_dir / f"eval_{label}.jsonl", episodes)
        result = HeldOutResult.of(label, episodes)
        self.state.evals[label] = {"won": result.won, "total": result.total, "mean_return": result.mean_return}
        lo, hi = result.interval
        self._emit(
            f"eval/{label}",
            self.state.iteration,
            {
                "eval/success": result.success,
                "eval/ci_low": lo,
                "eval/ci_high": hi,
                "eval/return": result.mean_return,
                "eval/episodes": float(result.total),
                "time/eval_s": elapsed,
            },
        )
        return result

    def run_sft(self) -> list[dict[str, float]]:
        """Collect expert episodes on training tasks and fine-tune on them (``trainer.sft_epochs`` passes)."""
        t = self.config.trainer
        start = time.perf_counter()
        tasks = train_tasks(self.config, -2, t.sft_tasks, 1)
        episodes = expert_episodes(
            self.config.env.id,
            tasks,
            self.formatter,
            rollout_settings(self.config),
            env_kwargs=dict(self.config.env.kwargs),
            only_won=t.sft_only_won,
            explore=t.sft_explore,
            explore_invalid=t.sft_explore_invalid,
            seed=derive_seed(self.config.seed, "sft-explore"),
            workers=t.sft_workers,
        )
        write_episodes(self.run_dir / "sft_episodes.jsonl", episodes)
        collect_s = time.perf_counter() - start
        mode = self.config.rollout.context_mode
        total = sft_step_count(episodes, mode, epochs=t.sft_epochs, batch_rows=t.sft_batch_rows)
        logger.info("sft: %d expert episodes (%.1f s), %d optimizer steps to run", len(episodes), collect_s, total)
        collected = {"sft/expert_episodes": float(len(episodes)), "time/sft_collect_s": collect_s}
        self._emit("sft", 0, {**collected, "sft/total_steps": float(total)})
        history = self._sft_reported(episodes, first_step=1)
        for round_ in range(t.dagger_rounds):
            history += self.run_dagger_round(round_, episodes, first_step=len(history) + 1)
        self.state.sft_done = True
        return history

    def run_dagger_round(self, round_: int, expert: list[Episode], *, first_step: int) -> list[dict[str, float]]:
        """One DAgger round: the policy plays ``trainer.dagger_tasks`` train tasks, its turns are relabelled with
        the expert's actions (:func:`dagger_relabel`), and SFT runs on them mixed with expert turns (replay).

        Its tasks are drawn as a training iteration's are, at iteration ``-3 - round_`` (SFT's expert play is -2,
        the held-out evaluation -1), so they never repeat an RL iteration's draw. The SFT steps are numbered on
        from ``first_step`` in the "sft" metrics; each round also logs its policy's success and inadmissible rate.
        """
        t = self.config.trainer
        start = time.perf_counter()
        iteration = -3 - round_
        tasks = train_tasks(self.config, iteration, t.dagger_tasks, 1)
        played = self.rollout(tasks, iteration=iteration, evaluation=t.dagger_sampling == "eval")
        rows = dagger_relabel(played, self.formatter, envs.action_parser(self.config.env.id))
        if not rows:
            raise TrainerError(
                f"DAgger round {round_}: none of the policy's {sum(len(e.turns) for e in played)} turns on "
                f"{self.config.env.id} carries an expert action (info['expert_action']), so there is nothing to "
                "relabel; use an env with an expert, or set trainer.dagger_rounds: 0"
            )
        relabelled = sum(len(e.turns) for e in rows)
        seed = derive_seed(self.config.seed, "dagger", round_)
        replay = replay_sample(expert, int(t.dagger_replay * relabelled), seed)
        replayed = sum(len(e.turns) for e in replay)
        write_episodes(self.run_dir / f"dagger_{round_}.jsonl", played)
        summary = rollout_metrics(played)
        steps = sft_step_count(
            [*rows, *replay], self.config.rollout.context_mode, epochs=t.dagger_epochs, batch_rows=t.sft_batch_rows
        )
        self._emit(
            f"dagger/{round_}",
            first_step - 1,
            {
                "dagger/success": summary["rollout/success"],
                "dagger/invalid_action_rate": summary["rollout/invalid_action_rate"],
                "dagger/relabelled_turns": float(relabelled),
                "dagger/replay_turns": float(replayed),
                "sft/total_steps": float(first_step - 1 + steps),  # the SFT steps so far and this round's
                "time/dagger_rollout_s": time.perf_counter() - start,
            },
        )
        logger.info(
            "dagger round %d: the policy won %d/%d; %d turns relabelled, %d expert turns replayed",
            round_,
            sum(e.won for e in played),
            len(played),
            relabelled,
            replayed,
        )
        return self._sft_reported(
            [*rows, *replay],
            first_step=first_step,
            tags={"dagger/round": float(round_)},
            epochs=t.dagger_epochs,
            lr=t.dagger_lr,
        )

    def _sft_reported(
        self,
        episodes: list[Episode],
        *,
        first_step: int,
        tags: dict[str, float] | None = None,
        epochs: int | None = None,
        lr: float | None = None,
    ) -> list[dict[str, float]]:
        """:meth:`sft_update`, each step logged as "sft" step ``first_step``, ``first_step + 1``... (with ``tags``)
        as it runs, or when it returns where it could not be streamed (Ray learner actors); then push the weights."""
        extra = tags or {}
        streamed: list[int] = []

        def on_step(step: int, metrics: dict[str, float]) -> None:
            streamed.append(step)
            self._emit("sft", first_step - 1 + step, {**metrics, **extra})

        history = self.sft_update(episodes, on_step=on_step, epochs=epochs, lr=lr)
        for step, metrics in enumerate(history[len(streamed) :], start=len(streamed) + 1):
            self._emit("sft", first_step - 1 + step, {**metrics, **extra})
        self.push_weights()
        return history

    def run_iteration(self, iteration: int) -> dict[str, float]:
        c = self.config
        start = time.perf_counter()
        tasks = train_tasks(c, iteration, c.rollout.tasks_per_iteration, c.rollout.group_size)
        episodes = self.rollout(tasks, iteration=iteration)
        rollout_s = time.perf_counter() - start
        if len(episodes) != len(tasks):
            raise TrainerError(f"iteration {iteration}: {len(episodes)} episodes for {len(tasks)} rollouts")
        metrics = rollout_metrics(episodes)
        start = time.perf_counter()
        metrics.update(self.update(episodes))
        update_s = time.perf_counter() - start
        start = time.perf_counter()
        self.push_weights()
        metrics.update(
            {
                "time/rollout_s": rollout_s,
                "time/update_s": update_s,
                "time/push_s": time.perf_counter() - start,
                "perf/rollout_tokens_per_s": metrics["rollout/response_tokens"] / max(rollout_s, 1e-9),
            }
        )
        return metrics

    def claim_run_dir(self, *, resume: bool = False, force: bool = False) -> None:
        """Make the run dir this run's before anything is written there.

        A dir that holds a run (metrics or checkpoints) is refused unless ``resume`` (continue it) or ``force``
        (start over: its run files are deleted first); the error says which. Then the resolved config is saved."""
        held = run_files(self.run_dir)
        if held and not resume and not force:
            raise TrainerError(
                f"run dir {self.run_dir} already holds a run ({', '.join(sorted(p.name for p in held)[:4])}): "
                "continue it with --resume, start it over with --force (its metrics, checkpoints and evals are "
                "deleted), or give this run another name=... or run_dir=..."
            )
        if force and not resume:
            for path in held:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            if held:
                logger.warning("--force: deleted the previous run's files in %s", self.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(self.config, self.run_dir / "config.yaml")

    def run(self, *, resume: bool = False, force: bool = False) -> dict[str, HeldOutResult]:
        """SFT (if configured and not done), RL iterations with checkpoints, then the held-out comparison.

        ``resume`` continues the run in the run dir from its newest checkpoint that loads; ``force`` starts over in
        a run dir that holds a run (see :meth:`claim_run_dir`)."""
        c, t = self.config, self.config.trainer
        self.claim_run_dir(resume=resume, force=force)
        if resume:
            self.resume()
        results: dict[str, HeldOutResult] = {}
        previous = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, self._on_interrupt)
        try:
            if t.compare_eval and "untrained" not in self.state.evals and not self.state.sft_done:
                results["untrained"] = self.evaluate("untrained")
            if t.sft_epochs > 0 and not self.state.sft_done:
                self.run_sft()
                if t.compare_eval:
                    results["sft"] = self.evaluate("sft")
                self.save("sft")
            while self.state.iteration < t.iterations:
                if self._interrupted:
                    raise KeyboardInterrupt
                it = self.state.iteration
                metrics = self.run_iteration(it)
                self.state.iteration = it + 1
                self._emit("rl", it, metrics)
                last = self.state.iteration == t.iterations
                if (t.save_every and self.state.iteration % t.save_every == 0) or last:
                    self.save(f"iter_{self.state.iteration:05d}")
                if t.eval_every and self.state.iteration % t.eval_every == 0 and not last:
                    self.evaluate(f"iter{self.state.iteration}")
            if t.compare_eval:
                results["rl" if t.iterations else "final"] = self.evaluate("rl" if t.iterations else "final")
                self.save(f"iter_{self.state.iteration:05d}")
        except KeyboardInterrupt:
            logger.warning("interrupted: saving a checkpoint at iteration %d", self.state.iteration)
            self.save(f"interrupt_{self.state.iteration:05d}")
            raise
        finally:
            signal.signal(signal.SIGINT, previous)
            self.sink.close()
        del c
        # every evaluation of the run, resumed ones included, in the order they ran (untrained, sft, iterN..., rl)
        every = {
            label: results.get(label)
            or HeldOutResult(label, int(numbers["won"]), int(numbers["total"]), float(numbers["mean_return"]))
            for label, numbers in self.state.evals.items()
        }
        if every:
            write_heldout(self.run_dir, self.config, list(every.values()))
        return every

    def close(self) -> None:
        """Release what the trainer holds: the generator's engine (vLLM's engine core) or actors, the learner
        group's actors. Idempotent; the parts' counters stay readable."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        for part in (getattr(self, "generator", None), getattr(self, "learner_group", None)):
            if part is not None:  # None: __init__ failed before the part was built
                part.close()

    def _on_interrupt(self, signum: int, frame: Any) -> None:
        if self._interrupted:  # a second Ctrl-C stops at once (the handler below still saves)
            raise KeyboardInterrupt
        self._interrupted = True
        logger.warning("Ctrl-C: finishing the current phase, then saving a checkpoint (Ctrl-C again to stop now)")
