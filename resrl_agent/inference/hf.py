"""HF transformers backend: batched ``generate`` on CPU or GPU, returning per-token logprobs.

Sampling is done by a logits processor that draws Gumbel noise from one ``torch.Generator`` per request (the
Gumbel-max trick), and ``generate`` then takes the argmax: a request's tokens depend on its own seed and prompt
only, not on what else is in the batch (up to float noise in padded attention, ~1e-6 in the logits).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from resrl_agent.inference.base import Generation, SamplingParams, expand_seeds

logger = logging.getLogger(__name__)

__all__ = ["HFEngine", "SeededSampler", "load_model_and_tokenizer"]


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


class SeededSampler:
    """A logits processor: temperature, top-k, top-p, then per-row Gumbel noise from per-row generators.

    With ``do_sample=False`` the argmax of its output is a sample from the filtered softmax(logits / T).
    """

    def __init__(self, seeds: Sequence[int], params: SamplingParams, device: torch.device) -> None:
        self.params = params
        self.generators = []
        for seed in seeds:
            gen = torch.Generator(device=device)
            gen.manual_seed(int(seed))
            self.generators.append(gen)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        p = self.params
        scores = scores.float() / p.temperature  # [B, V]
        if p.top_k > 0 and p.top_k < scores.shape[-1]:
            kth = torch.topk(scores, p.top_k, dim=-1).values[:, -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if p.top_p < 1.0:
            sorted_scores, order = torch.sort(scores, dim=-1, descending=True)
            probs = torch.softmax(sorted_scores, dim=-1)
            before = torch.cumsum(probs, dim=-1) - probs  # mass of the tokens ranked above each one
            drop_sorted = before > p.top_p  # keeps the smallest set reaching top_p (the first token always)
            drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
            scores = scores.masked_fill(drop, float("-inf"))
        uniform = torch.stack(
            [torch.rand(scores.shape[-1], generator=g, device=scores.device) for g in self.generators]
        )
        gumbel = -torch.log(-torch.log(uniform.clamp(1e-20, 1.0 - 1e-7)))
        return scores + gumbel


# generation settings that would change the sampled distribution or the tokens allowed, with their neutral values
_NEUTRAL_GENERATION = {
    "repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "sequence_bias": None,
    "min_length": 0,
    "min_new_tokens": None,
    "exponential_decay_length_penalty": None,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "typical_p": 1.0,
    "min_p": None,
    "diversity_penalty": 0.0,
}


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
        self.weights_version = 0
        self._neutralise_generation_config()

    def _neutralise_generation_config(self) -> None:
        """Replace the checkpoint's generation defaults by a bare config.

        transformers fills every generation field left unset from ``model.generation_config``, so a checkpoint's
        repetition penalty, n-gram ban or suppressed tokens would change what is sampled while the stored logprobs
        (raw logits / T) would not show it: silently off-policy (Contract 6). Sampling is ours (SeededSampler).
        """
        from transformers import GenerationConfig

        old = getattr(self.model, "generation_config", None)
        neutral = GenerationConfig(eos_token_id=self.eos_token_id, pad_token_id=self.pad_token_id)
        if old is not None:
            changed = {
                k: v
                for k, v in old.to_diff_dict().items()
                if k in _NEUTRAL_GENERATION and v not in (_NEUTRAL_GENERATION[k], [], None)
            }
            if changed:
                logger.info(
                    "ignoring the checkpoint's generation settings %s: rollouts sample from the raw policy", changed
                )
        self.model.generation_config = neutral

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def update_weights(self, state_dict: Mapping[str, Any], *, strict: bool = True) -> None:
        """Copy the learner's tensors into the model in place (same process; any device or dtype)."""
        with torch.no_grad():
            result = self.model.load_state_dict(dict(state_dict), strict=strict)
        if not strict and (result.missing_keys or result.unexpected_keys):
            logger.debug("update_weights: missing %s, unexpected %s", result.missing_keys, result.unexpected_keys)
        self.weights_version += 1

    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, seeds: Sequence[int] | None = None
    ) -> list[Generation]:
        request_seeds = expand_seeds(len(prompts), params, seeds)
        expanded = [list(p) for p in prompts for _ in range(params.n)]
        resolved = [
            int(torch.randint(0, 2**31 - 1, (1,)).item()) if s is None else s for s in request_seeds
        ]  # unseeded requests follow torch's global RNG
        results: list[Generation] = []
        for start in range(0, len(expanded), self.max_batch_size):
            end = start + self.max_batch_size
            results.extend(self._generate_batch(expanded[start:end], params, resolved[start:end]))
        return results

    @torch.no_grad()
    def _generate_batch(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, seeds: list[int]
    ) -> list[Generation]:
        from transformers import GenerationConfig, LogitsProcessorList

        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):  # left padding for generation
            input_ids[row, width - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
            attention_mask[row, width - len(prompt) :] = 1
        # a fresh config: a checkpoint's own defaults (repetition penalty, top-k ...) must not change the policy
        config = GenerationConfig(
            max_new_tokens=params.max_new_tokens,
            do_sample=False,
            top_k=None,
            top_p=None,
            temperature=None,
            eos_token_id=self.eos_token_id,
            pad_token_id=self.pad_token_id,
            output_logits=True,
            return_dict_in_generate=True,
        )
        processors = LogitsProcessorList()
        if not params.greedy:
            processors.append(SeededSampler(seeds, params, self.device))
        self.model.eval()
        out = self.model.generate(
            input_ids=input_ids.to(self.device),
            attention_mask=attention_mask.to(self.device),
            generation_config=config,
            logits_processor=processors,
        )
        new_ids = out.sequences[:, width:].cpu()  # [B, N]
        temperature = 1.0 if params.greedy else params.temperature
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
