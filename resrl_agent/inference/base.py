"""One protocol for every inference backend: token ids in, sampled token ids and their logprobs out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = ["Generation", "InferenceEngine", "SamplingParams"]


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Sampling settings; the defaults are the paper's training setting (T = 1, top-p 1, top-k off)."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 64
    stop: tuple[str, ...] = ()

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


class InferenceEngine(Protocol):
    """Backends (HF, vLLM, OpenAI-compatible HTTP) implement this; the rollout loop only sees this."""

    eos_token_id: int

    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, seeds: Sequence[int] | None = None
    ) -> list[Generation]:
        """Sample one response per prompt; ``seeds`` (one per prompt) make sampling reproducible."""
        ...
