"""The rollout loop's settings from a config: training play, held-out play, local or remote envs."""

from __future__ import annotations

from resrl_agent.config import RunConfig
from resrl_agent.inference.base import SamplingParams
from resrl_agent.rollout.loop import RolloutSettings
from resrl_agent.rollout.remote_pool import RemotePoolSettings
from resrl_agent.rollout.workers import WorkerKind

__all__ = ["remote_pool_settings", "rollout_settings"]


def rollout_settings(
    config: RunConfig,
    *,
    temperature: float | None = None,
    top_p: float | None = None,
    sequential: bool = False,
    env_workers: WorkerKind | None = None,
    evaluation: bool = False,
) -> RolloutSettings:
    """The loop's settings from the config; ``env_workers`` (a CLI flag) overrides ``rollout.env_workers``.

    ``evaluation``: the held-out play's settings, the eval's temperature and top-p (unless given) and its sampling
    seed (``eval.seed``, else the run's), so runs of different seeds can be scored on the same samples."""
    r = config.rollout
    if evaluation:
        temperature = config.eval.temperature if temperature is None else temperature
        top_p = config.eval.top_p if top_p is None else top_p
    sampling = SamplingParams(
        temperature=r.temperature if temperature is None else temperature,
        top_p=r.top_p if top_p is None else top_p,
        top_k=r.top_k,
        max_new_tokens=r.max_new_tokens,
        stop=tuple(r.stop),
    )
    return RolloutSettings(
        context_mode=r.context_mode,
        window_turns=r.window_turns,
        max_turns=r.max_turns,
        max_context_tokens=r.max_context_tokens,
        sampling=sampling,
        concurrency=r.concurrency,
        env_workers=env_workers or r.env_workers,
        step_timeout_s=r.step_timeout_s,
        max_env_processes=r.max_env_processes,
        seed=config.eval_seed if evaluation else config.seed,
        sequential=sequential,
        remote=remote_pool_settings(config),
    )


def remote_pool_settings(config: RunConfig) -> RemotePoolSettings | None:
    """``env.servers`` and ``env.remote`` as the rollout loop's pool settings; None when envs run locally."""
    if not config.env.servers:
        return None
    r = config.env.remote
    return RemotePoolSettings(
        servers=tuple(config.env.servers),
        token_file=r.token_file,
        token_env=r.token_env,
        transport=r.transport,
        request_timeout_s=r.request_timeout_s,
        retries=r.retries,
        health_interval_s=r.health_interval_s,
        probe_timeout_s=r.probe_timeout_s,
        max_reruns=r.max_reruns,
        wait_for_server_s=r.wait_for_server_s,
    )
