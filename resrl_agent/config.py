"""Typed, strict run configuration: pydantic v2 models loaded from YAML plus dotted command-line overrides.

Every section forbids unknown keys and is frozen; closed choices are ``Literal``, the one open choice (the advantage
estimator) is a name checked against its registry; defaults live only here.
``load_config("configs/x.yaml", ["algo.resrl.rank=32"])`` returns a validated :class:`RunConfig` or raises
:class:`~resrl_agent.errors.ConfigError` naming the key, the value seen and what is allowed.

Env kwargs are free-form here and validated by the env itself at ``make()`` time, so this module never
imports envs.
"""

from __future__ import annotations

import difflib
import os
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from resrl_agent.errors import ConfigError

__all__ = [
    "AlgoConfig",
    "EngineConfig",
    "EnvRef",
    "EvalConfig",
    "GigpoConfig",
    "LossConfig",
    "ModelConfig",
    "RemoteEnvConfig",
    "ResrlConfig",
    "RolloutConfig",
    "RunConfig",
    "TrainerConfig",
    "apply_overrides",
    "dump_config",
    "load_config",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class RemoteEnvConfig(_Section):
    """How rollouts use the env servers of ``env.servers`` (docs/cluster.md, "Remote env pools")."""

    token_file: str | None = Field(None, description="bearer token file, read on each rollout worker's host")
    token_env: str = Field("RESRL_ENV_SERVER_TOKEN", description="else the env var holding the token")
    transport: Literal["http", "websocket"] = "http"
    request_timeout_s: float = Field(30.0, gt=0.0, description="one request; past it (and its retries) = server lost")
    retries: int = Field(2, ge=0, description="connection retries of one request (steps keep their request id)")
    health_interval_s: float = Field(2.0, gt=0.0, description="seconds between /healthz probes of every server")
    probe_timeout_s: float = Field(2.0, gt=0.0)
    max_reruns: int = Field(3, ge=0, description="re-runs of one task after losing its server, then env_error")
    wait_for_server_s: float = Field(60.0, gt=0.0, description="wait this long for a healthy server, then fail")


class EnvRef(_Section):
    """Which registered env to run (``resrl/ALFWorld-v0`` ...) and the kwargs its constructor validates.

    ``servers``: env server URLs; when set, rollouts open sessions there (spread by load, health-checked) instead
    of building envs in the rollout process. Task lists are still read from a local instance of the env.
    """

    id: str = "resrl/Echo-v0"
    kwargs: dict[str, Any] = Field(default_factory=dict)
    train_split: str | None = None
    eval_split: str | None = None
    servers: list[str] = Field(default_factory=list, description="env server URLs (http://host:8000); [] = local")
    remote: RemoteEnvConfig = Field(default_factory=RemoteEnvConfig)

    @model_validator(mode="after")
    def _server_urls(self) -> EnvRef:
        for url in self.servers:
            if not url.startswith(("http://", "https://")) or len(url.rstrip("/")) <= len("https://"):
                raise ValueError(f"env.servers: {url!r} is not an http(s) URL; write it as http://host:8000")
        if len({u.rstrip("/") for u in self.servers}) != len(self.servers):
            raise ValueError(f"env.servers lists a server twice: {self.servers}")
        return self


class ModelConfig(_Section):
    """The policy: a local HF checkpoint dir, or ``tiny``/``small`` (built locally by make-model and cached)."""

    path: str = "tiny"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    gradient_checkpointing: bool = False


class RolloutConfig(_Section):
    """How episodes are played: context mode, group size, sampling, limits."""

    context_mode: Literal["concat", "window"] = "concat"
    window_turns: int = Field(2, ge=0, description="window mode: past turns kept in each prompt")
    group_size: int = Field(4, ge=1, description="G: rollouts per task")
    tasks_per_iteration: int = Field(4, ge=1)
    max_turns: int = Field(8, ge=1)
    max_new_tokens: int = Field(64, ge=1)
    max_context_tokens: int = Field(2048, ge=16)
    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0, description="0 = off")
    stop: list[str] = Field(default_factory=list)
    concurrency: int = Field(16, ge=1, description="episodes played at once")
    env_workers: Literal["thread", "process", "inline"] = Field(
        "thread", description="where envs step: threads, worker processes (crash isolation) or inline"
    )
    step_timeout_s: float | None = Field(300.0, gt=0.0, description="an env call slower than this ends its episode")
    max_env_processes: int | None = Field(
        None, ge=1, description="process workers: None = one per live episode; N = at most N shared processes"
    )


class EngineConfig(_Section):
    """The inference backend that samples rollouts.

    ``vllm`` needs the vllm package where the engine runs (the trainer's process, or the Ray inference actor); that
    is checked when the engine is built (``resrl_agent.run.engines.make_engine``: a ConfigError that says how to
    install it), not here, so configs still load where vllm is absent (a Ray driver node, the main CI venv).
    """

    backend: Literal["hf", "vllm", "openai"] = Field(
        "hf",
        description="hf (transformers), vllm (offline vLLM engine; training pushes weights into it) or openai "
        "(a server at engine.url: rollout/eval only)",
    )
    url: str | None = None
    device: str = Field("cpu", description="hf: where the engine's model lives (vLLM picks its own platform)")
    gpu_memory_utilization: float = Field(
        0.5, gt=0.0, le=1.0, description="vllm on CUDA: the GPU fraction it may take (CPU: VLLM_CPU_KVCACHE_SPACE)"
    )

    @model_validator(mode="after")
    def _url_for_openai(self) -> EngineConfig:
        if self.backend == "openai" and not self.url:
            raise ValueError("engine.backend=openai needs engine.url (for example http://127.0.0.1:8000/v1)")
        return self


class GigpoConfig(_Section):
    gamma: float = Field(0.95, ge=0.0, le=1.0)
    omega: float = Field(1.0, ge=0.0, description="weight of the step-group advantage")
    norm: Literal["mean_std", "mean"] = "mean_std"
    episode_stats: Literal["steps", "trajectories"] = "steps"

    @model_validator(mode="before")
    @classmethod
    def _penalty_moved(cls, data: Any) -> Any:
        if isinstance(data, dict) and "invalid_penalty" in data:
            raise ValueError(
                "algo.gigpo.invalid_penalty moved to algo.invalid_penalty (it applies to every estimator now)"
            )
        return data


class ResrlConfig(_Section):
    """ResRL negative-token reweighting (arXiv 2605.00380); ``reweight: none`` turns it off."""

    reweight: Literal["none", "resrl"] = "resrl"
    rank: int = Field(64, ge=1)
    q_low: float = Field(0.2, ge=0.0, le=1.0)
    q_high: float = Field(0.8, ge=0.0, le=1.0)
    min_weight: float = Field(0.1, ge=0.0, le=1.0, description="xi")
    pos_scale: float = Field(0.1, ge=0.0, description="lambda: positive advantages are multiplied by it")
    max_pos_tokens: int = Field(4096, ge=4)
    svd: Literal["randomized", "exact"] = "randomized"
    niter: int = Field(4, ge=0)
    positive: Literal["advantage", "score"] = "advantage"

    @model_validator(mode="after")
    def _quantiles_ordered(self) -> ResrlConfig:
        if self.q_low >= self.q_high:
            raise ValueError(f"algo.resrl.q_low={self.q_low} must be below algo.resrl.q_high={self.q_high}")
        return self


class LossConfig(_Section):
    clip_low: float = Field(0.2, ge=0.0)
    clip_high: float = Field(0.2, ge=0.0)
    dual_clip: float | None = Field(3.0, gt=1.0)
    agg: Literal["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"] = "token-mean"
    kl_coef: float = Field(0.0, ge=0.0)
    kl_kind: Literal["low_var_kl", "k1", "k2"] = "low_var_kl"
    entropy_coef: float = Field(0.0, ge=0.0)


class AlgoConfig(_Section):
    advantage: str = Field(
        "gigpo",
        description="the advantage estimator, by its registered name (resrl_agent.algorithms.estimator_names(); "
        "add one with resrl_agent.algorithms.register_estimator)",
    )
    gigpo: GigpoConfig = Field(default_factory=GigpoConfig)
    resrl: ResrlConfig = Field(default_factory=ResrlConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    overlong_buffer: int = Field(0, ge=0, description="dapo: soft overlong penalty over the last N tokens; 0 = off")
    invalid_penalty: float = Field(
        0.1,
        ge=0.0,
        description="taken off the score of every turn whose output did not parse, before any estimator (GRPO, NSR, "
        "PSR, W-REINFORCE, DAPO, GiGPO), as verl-agent does",
    )

    @field_validator("advantage")
    @classmethod
    def _registered_estimator(cls, name: str) -> str:
        # the one list of estimators is the registry; imported here, not at the top: the algorithms pull in torch
        from resrl_agent.algorithms.estimators import get_estimator

        get_estimator(name)
        return name

    @model_validator(mode="before")
    @classmethod
    def _dapo_clip_higher(cls, data: Any) -> Any:
        """DAPO's clip-higher (0.2 / 0.28) is part of the algorithm: the default when advantage=dapo."""
        if isinstance(data, dict) and data.get("advantage") == "dapo":
            loss = data.get("loss")
            loss = dict(loss) if isinstance(loss, dict) else {}
            if "clip_high" not in loss:
                loss["clip_high"] = 0.28
                data = {**data, "loss": loss}
        return data


class TrainerConfig(_Section):
    iterations: int = Field(10, ge=0)
    lr: float = Field(1e-6, gt=0.0)
    warmup_steps: int = Field(10, ge=0)
    weight_decay: float = Field(0.1, ge=0.0)
    grad_clip: float = Field(1.0, gt=0.0)
    ppo_epochs: int = Field(1, ge=1)
    mini_batches: int = Field(1, ge=1, description="optimizer steps per iteration and epoch")
    micro_batch_tokens: int = Field(8192, ge=16, description="tokens per forward/backward (gradient accumulation)")
    save_every: int = Field(0, ge=0, description="0 = only at the end")
    eval_every: int = Field(0, ge=0)
    num_learners: int = Field(
        1, ge=1, description="learner processes in one torch.distributed group (ray driver; > 1 needs it)"
    )
    data_parallel: Literal["ddp", "fsdp2"] = Field(
        "ddp", description="with num_learners > 1: replicated weights (ddp) or sharded ones (fsdp2, fully_shard)"
    )
    device: str = "cpu"
    sft_epochs: int = Field(0, ge=0, description="SFT warm-start epochs on expert trajectories before RL")
    sft_lr: float = Field(1e-3, gt=0.0)
    sft_tasks: int = Field(64, ge=1, description="expert episodes (one per task) collected for SFT")
    sft_batch_rows: int = Field(16, ge=1, description="rows per SFT optimizer step")
    sft_warmup_steps: int = Field(0, ge=0)
    sft_schedule: Literal["constant", "cosine"] = Field(
        "cosine", description="SFT learning rate after warm-up: constant, or cosine decay to 0 at the last step"
    )
    sft_explore: float = Field(
        0.0, ge=0.0, le=1.0, description="SFT data: chance a turn steps a random admissible command (expert label kept)"
    )
    sft_explore_invalid: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="SFT data: share of the sft_explore detours that send an inadmissible command instead (one that "
        "was admissible earlier in the episode but is not now, e.g. going where you already are), so the data holds "
        "the env's answer to a mistake and the expert's recovery from it",
    )
    sft_workers: int = Field(1, ge=1, description="SFT data: processes that play the expert episodes")
    dagger_rounds: int = Field(
        0,
        ge=0,
        description="after the SFT epochs, DAgger rounds: the policy plays dagger_tasks train tasks, each of its turns "
        "is relabelled with the expert's action at that state, and SFT runs on them (window mode only)",
    )
    dagger_tasks: int = Field(64, ge=1, description="DAgger: train tasks the policy plays per round (one sample each)")
    dagger_epochs: int = Field(1, ge=1, description="DAgger: SFT passes over a round's rows")
    dagger_lr: float | None = Field(
        None, gt=0.0, description="DAgger: peak learning rate of a round's SFT (warm-up, cosine); default sft_lr"
    )
    dagger_replay: float = Field(
        1.0,
        ge=0.0,
        description="DAgger: expert turns mixed into a round's SFT rows, per relabelled turn (expert episodes drawn "
        "at random from the SFT data; keeps what the expert play taught)",
    )
    dagger_sampling: Literal["rollout", "eval"] = Field(
        "rollout", description="DAgger: the policy plays with the rollout's sampling settings or the eval's"
    )
    sft_prompt_weight: float = Field(
        0.0,
        ge=0.0,
        description="SFT: add this weight x the prompt tokens' cross-entropy (language modelling on the env's text; "
        "helps a model trained from scratch, 0 for a pretrained one)",
    )
    sft_prompt_fraction: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="SFT: the share of prompt tokens, drawn each step, that enter the prompt loss (fewer: a cheaper "
        "step, the same expected loss)",
    )
    sft_group_by_length: bool = Field(
        True, description="SFT: each step's rows have similar lengths (less padding; the rows per epoch are the same)"
    )
    sft_only_won: bool = Field(True, description="SFT data: drop expert episodes that did not win within max_turns")
    logit_chunk_tokens: int = Field(1024, ge=1, description="tokens per LM-head chunk (fp32 logits of one chunk)")
    driver: Literal["local", "ray"] = Field("local", description="one process, or Ray actors")
    rollout_workers: int = Field(2, ge=1, description="ray driver: rollout worker actors")
    worker_cpus: float = Field(0.25, gt=0.0, description="ray driver: CPUs each actor asks for (fractional)")
    deterministic: bool = Field(
        False, description="sequential rollouts, one seeded request at a time: resume reproduces a run exactly"
    )
    compare_eval: bool = Field(
        False, description="evaluate the untrained, SFT and final policies on the same held-out tasks at the end"
    )


class EvalConfig(_Section):
    num_tasks: int = Field(30, ge=1)
    samples_per_task: int = Field(1, ge=1)
    temperature: float = Field(0.6, ge=0.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    split: str | None = None
    seed: int | None = Field(
        None,
        description="seed of the held-out draw (which tasks, their reset and sampling seeds); None: the run's seed. "
        "Fix it to compare runs of different seeds on the very same episodes",
    )


class RunConfig(_Section):
    """The root of a run: one YAML file in configs/ validates into this."""

    name: str = "run"
    seed: int = 0
    run_dir: str = "runs/${name}"
    env: EnvRef = Field(default_factory=EnvRef)
    model: ModelConfig = Field(default_factory=ModelConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    algo: AlgoConfig = Field(default_factory=AlgoConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _cross_checks(self) -> RunConfig:
        if self.algo.advantage == "gigpo" and self.rollout.group_size < 2:
            raise ValueError("algo.advantage=gigpo compares rollouts of one task: set rollout.group_size >= 2")
        if self.rollout.max_new_tokens >= self.rollout.max_context_tokens:
            raise ValueError(
                f"rollout.max_new_tokens={self.rollout.max_new_tokens} leaves no room for a prompt in "
                f"rollout.max_context_tokens={self.rollout.max_context_tokens}; raise the latter"
            )
        if self.trainer.dagger_rounds and self.rollout.context_mode != "window":
            raise ValueError(
                f"trainer.dagger_rounds={self.trainer.dagger_rounds} relabels window-mode turns (a whole prompt per "
                "turn); set rollout.context_mode: window, or trainer.dagger_rounds: 0"
            )
        return self

    @property
    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir.replace("${name}", self.name))

    @property
    def eval_seed(self) -> int:
        """The seed of the held-out draw (tasks, reset seeds) and of its sampling: ``eval.seed``, else ``seed``."""
        return self.seed if self.eval.seed is None else self.eval.seed


def _parse_value(text: str) -> Any:
    """Parse an override value with YAML rules (``1e-6`` -> float, ``true`` -> bool, ``[a, b]`` -> list)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    # YAML 1.1 reads "1e-6" as a string; accept the float people mean.
    if isinstance(value, str):
        try:
            return (
                float(value) if any(c in value for c in ".eE") and value.strip().lstrip("+-")[:1].isdigit() else value
            )
        except ValueError:
            return value
    return value


def _section_at(path: Sequence[str]) -> type[BaseModel] | None:
    """The pydantic model class at a dotted path, or None below a free-form dict."""
    model: type[BaseModel] = RunConfig
    for part in path:
        field = model.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return None
    return model


def _holds_mapping(model: type[BaseModel], name: str) -> bool:
    """Whether a field is a sub-section or a free-form dict (so ``name.x=...`` may address inside it)."""
    annotation = model.model_fields[name].annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return typing.get_origin(annotation) is dict or annotation is dict


def _unknown_key_error(path: Sequence[str], key: str) -> ConfigError:
    model = _section_at(path)
    allowed = sorted(model.model_fields) if model is not None else []
    dotted = ".".join([*path, key])
    close = difflib.get_close_matches(key, allowed, n=1)
    suggestion = f"; did you mean {'.'.join([*path, close[0]])!r}?" if close else ""
    return ConfigError(f"unknown config key {dotted!r}{suggestion} Allowed keys here: {', '.join(allowed)}")


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a nested dict (a copy); unknown section keys fail early."""
    result = _deep_copy(data)
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"override {override!r} is not of the form key.path=value (e.g. trainer.lr=1e-6)")
        dotted, _, raw = override.partition("=")
        parts = [p for p in dotted.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"override {override!r} has an empty key")
        node = result
        for depth, part in enumerate(parts):
            section = _section_at(parts[:depth])
            if section is not None and part not in section.model_fields:
                raise _unknown_key_error(parts[:depth], part)
            if depth == len(parts) - 1:
                node[part] = _parse_value(raw)
            else:
                if section is not None and not _holds_mapping(section, part):
                    raise ConfigError(
                        f"cannot set {dotted!r}: {'.'.join(parts[: depth + 1])} is a value, not a section"
                    )
                child = node.get(part)
                if child is None:
                    child = node[part] = {}
                if not isinstance(child, dict):
                    raise ConfigError(
                        f"cannot set {dotted!r}: {'.'.join(parts[: depth + 1])} is a value, not a section"
                    )
                node = child
    return result


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def _format_validation_error(err: ValidationError, source: str) -> ConfigError:
    lines = []
    for item in err.errors():
        loc = [str(p) for p in item["loc"]]
        if item["type"] == "extra_forbidden":
            lines.append(str(_unknown_key_error(loc[:-1], loc[-1])))
            continue
        dotted = ".".join(loc) or "(root)"
        seen = item.get("input")
        message = item["msg"].removeprefix("Value error, ")
        if loc:
            lines.append(f"{dotted}: {message} (got {seen!r})")
        else:
            lines.append(message)
    return ConfigError(f"invalid config {source}:\n  " + "\n  ".join(lines))


def load_config(path: str | os.PathLike[str] | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """Load a RunConfig from YAML (None = all defaults) and apply dotted overrides."""
    data: dict[str, Any] = {}
    source = "(defaults)"
    if path is not None:
        source = str(path)
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"config file {file} not found; the shipped configs are in configs/")
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {file} is not valid YAML: {err}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {file} must hold a mapping at the top, got {type(loaded).__name__}")
        data = loaded
    data = apply_overrides(data, overrides)
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as err:
        raise _format_validation_error(err, source) from None
    check_env_ref(config.env)
    return config


def check_env_ref(env: EnvRef) -> None:
    """The env id is registered and every ``env.kwargs`` key is a parameter of its constructor (before any model
    loads or any file is written); a ConfigError with a "did you mean" otherwise."""
    import inspect

    import envs

    known = envs.env_ids()
    if env.id not in known:
        close = difflib.get_close_matches(env.id, known, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"env.id: no env {env.id!r} is registered; {hint}registered: {', '.join(known)}")
    cls = envs.env_class(env.id)
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # a constructor without a signature: nothing to check against
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [name for name, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for key in env.kwargs:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"env.kwargs.{key}: {cls.__name__} ({env.id}) takes no {key!r}; {hint}it takes: {', '.join(accepted)}"
            )


def dump_config(config: RunConfig, path: str | os.PathLike[str]) -> None:
    """Save the resolved config (every default filled in) as YAML, e.g. into the run dir."""
    from resrl_agent.files import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
