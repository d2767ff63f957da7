"""HF transformers backend: batched ``generate`` on CPU or GPU, returning per-token logprobs."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from resrl_agent.inference.base import Generation, SamplingParams

logger = logging.getLogger(__name__)

__all__ = ["HFEngine", "load_model_and_tokenizer"]


def load_model_and_tokenizer(
    path: str | Path, *, dtype: str = "float32", device: str = "cpu", attn_implementation: str = "sdpa"
) -> tuple[Any, Any]:
    """``from_pretrained`` for the model and tokenizer: the same path for a tiny local build and a real checkpoint."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=getattr(torch, dtype), attn_implementation=attn_implementation
    ).to(device)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


class HFEngine:
    """Sample with ``model.generate`` on left-padded batches.

    Logprobs are log softmax(raw logits / T) of the sampled token, before top-k/top-p filtering (Contract 6), so the
    learner's recomputation matches them at T = 1 and any T.
    """

    def __init__(self, model: Any, tokenizer: Any, *, max_batch_size: int = 64) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        eos = tokenizer.eos_token_id
        if eos is None:
            raise ValueError("the tokenizer has no eos_token_id; set one in tokenizer_config.json")
        self.eos_token_id: int = int(eos)
        self.pad_token_id: int = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, seeds: Sequence[int] | None = None
    ) -> list[Generation]:
        results: list[Generation] = []
        for start in range(0, len(prompts), self.max_batch_size):
            chunk = prompts[start : start + self.max_batch_size]
            seed = None if seeds is None else int(seeds[start])
            results.extend(self._generate_batch(chunk, params, seed))
        return results

    @torch.no_grad()
    def _generate_batch(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, seed: int | None
    ) -> list[Generation]:
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):  # left padding for generation
            input_ids[row, width - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
            attention_mask[row, width - len(prompt) :] = 1
        sample = not params.greedy
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": sample,
            "output_logits": True,
            "return_dict_in_generate": True,
            "eos_token_id": self.eos_token_id,
            "pad_token_id": self.pad_token_id,
        }
        if sample:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if seed is not None:
            torch.manual_seed(seed)
        self.model.eval()
        out = self.model.generate(
            input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device), **kwargs
        )
        new_ids = out.sequences[:, width:].cpu()  # [B, N]
        temperature = params.temperature if sample else 1.0
        logits = torch.stack(out.logits, dim=1).float().cpu() / temperature  # [B, N, V] raw logits, no filtering
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, new_ids[..., None]).squeeze(-1)  # [B, N]
        results = []
        for row in range(len(prompts)):
            ids = new_ids[row].tolist()
            finish = "length"
            if self.eos_token_id in ids:
                ids = ids[: ids.index(self.eos_token_id) + 1]  # up to and including the first eos
                finish = "stop"
            cut = self._stop_cut(ids, params.stop)
            if cut is not None:
                ids, finish = ids[:cut], "stop"
            lps = logprobs[row, : len(ids)].tolist()
            results.append(Generation(ids, lps, finish, self.tokenizer.decode(ids, skip_special_tokens=True)))
        return results

    def _stop_cut(self, ids: list[int], stop: Sequence[str]) -> int | None:
        """Number of tokens up to and including the one that completes the first stop string, if any.

        Cutting after sampling keeps every kept id and logprob exactly as sampled (the batch keeps decoding).
        """
        if not stop:
            return None
        text = self.tokenizer.decode(ids, skip_special_tokens=False)
        if not any(s in text for s in stop):
            return None
        for n in range(1, len(ids) + 1):
            prefix = self.tokenizer.decode(ids[:n], skip_special_tokens=False)
            if any(s in prefix for s in stop):
                return n
        return None
