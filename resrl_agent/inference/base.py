"""One protocol for every inference backend: token ids in, sampled token ids and their logprobs out.

Backends: :class:`~resrl_agent.inference.hf.HFEngine` (transformers, CPU or GPU, in process),
:class:`~resrl_agent.inference.vllm.VLLMEngine` (vLLM offline engine) and
:class:`~resrl_agent.inference.openai_http.OpenAIEngine` (any OpenAI-compatible server that returns token ids,
such as ``vllm serve`` or ``resrl_agent.inference.openai_server``). All of them

- take prompts as token ids and return the sampled ids verbatim (never re-tokenized text),
- return one logprob per sampled token (Contract 6: log softmax(logits / T), no top-p/top-k renormalisation;
  exact for every backend at the training setting T = 1, top-p 1, top-k off),
- honour one sampling seed per request, so a request samples the same tokens whatever else is in the batch,
- take the learner's new weights with ``update_weights(state_dict)`` without a restart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = ["Generation", "InferenceEngine", "SamplingParams", "expand_seeds"]


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Sampling settings; the defaults are the paper's training setting (T = 1, top-p 1, top-k off).

    ``n`` samples per prompt (the result lists the n samples of prompt 0, then of prompt 1, ...); ``seed`` is the
    base seed used when ``generate`` gets no per-request seeds. ``stop`` strings end a response right after the
    token that completes one (that token is kept); eos always ends it.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 64
    stop: tuple[str, ...] = ()
    n: int = 1
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ValueError(
                f"SamplingParams(temperature={self.temperature}, top_p={self.top_p}, top_k={self.top_k}): "
                "need temperature >= 0, 0 < top_p <= 1, top_k >= 0 (0 = off)"
            )
        if self.max_new_tokens < 1 or self.n < 1:
            raise ValueError(f"max_new_tokens={self.max_new_tokens} and n={self.n} must be >= 1")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True, slots=True)
class Generation:
    """One sampled response: ids exactly as sampled, log softmax(logits / T) of each (Contract 6)."""

    token_ids: list[int]
    logprobs: list[float]
    finish_reason: Literal["stop", "length"]
    text: str = ""
    extra: dict[str, float] = field(default_factory=dict)


def expand_seeds(num_prompts: int, params: SamplingParams, seeds: Sequence[int] | None) -> list[int | None]:
    """One seed per returned sample (prompt-major, ``n`` per prompt); None where sampling is unseeded."""
    from resrl_agent.seeding import derive_seed

    if seeds is not None and len(seeds) != num_prompts:
        raise ValueError(f"got {len(seeds)} seeds for {num_prompts} prompts; pass one seed per prompt")
    out: list[int | None] = []
    for i in range(num_prompts):
        base = int(seeds[i]) if seeds is not None else (None if params.seed is None else derive_seed(params.seed, i))
        for j in range(params.n):
            out.append(base if base is None or params.n == 1 else derive_seed(base, "n", j))
    return out


@runtime_checkable
class InferenceEngine(Protocol):
    """Backends (HF, vLLM, OpenAI-compatible HTTP) implement this; the rollout loop only sees this."""

    eos_token_id: int

    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, seeds: Sequence[int] | None = None
    ) -> list[Generation]:
        """Sample ``params.n`` responses per prompt; ``seeds`` (one per prompt) make sampling reproducible."""
        ...

    def update_weights(self, state_dict: Mapping[str, Any]) -> None:
        """Load the learner's new weights (a torch state dict, names as in the HF model) without a restart."""
        ...
