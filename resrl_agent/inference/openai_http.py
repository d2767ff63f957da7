"""OpenAI-compatible HTTP backend: token ids in, token ids and logprobs out, over ``/v1/completions``.

Works with any server that accepts a prompt as a list of token ids and returns the sampled token ids: ``vllm serve``
(``return_token_ids``, or ``return_tokens_as_token_ids`` on the logprob tokens) and our
:mod:`resrl_agent.inference.openai_server`. A server that returns only text cannot be used: re-tokenizing text is not
token-exact, so that raises :class:`~resrl_agent.errors.RolloutError`.

Requests of one ``generate`` call run concurrently (a thread pool over one ``httpx.Client``), each with its own seed.
Logprobs are the server's: vLLM's default ``raw_logprobs`` equal Contract 6 at T = 1 (the training setting); start
vLLM with ``--logprobs-mode processed_logprobs`` to get the tempered (and top-p renormalised) ones instead.

Weight updates go through the vLLM dev-mode routes (``VLLM_SERVER_DEV_MODE=1``): pause, ``collective_rpc
reload_weights`` from a directory of safetensors, reset the prefix cache, resume. The directory must be readable by
the server (same host, or a shared volume).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from resrl_agent.errors import RolloutError
from resrl_agent.inference.base import Generation, SamplingParams, expand_seeds

logger = logging.getLogger(__name__)

__all__ = ["OpenAIEngine", "completion_payload", "parse_choice"]


def completion_payload(model: str, prompt: Sequence[int], params: SamplingParams, seed: int | None) -> dict[str, Any]:
    """The ``/v1/completions`` request body for one sample (vLLM's extensions for token ids included)."""
    payload: dict[str, Any] = {
        "model": model,
        "prompt": list(prompt),
        "max_tokens": params.max_new_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "n": 1,
        "logprobs": 0,
        "return_token_ids": True,
        "return_tokens_as_token_ids": True,
        "skip_special_tokens": False,
    }
    if params.top_k > 0:
        payload["top_k"] = params.top_k
    if seed is not None:
        payload["seed"] = int(seed)
    if params.stop:
        payload["stop"] = list(params.stop)
        payload["include_stop_str_in_output"] = True
    return payload


def parse_choice(choice: Mapping[str, Any], eos_token_id: int) -> Generation:
    """One completion choice -> Generation with the sampled ids (never re-tokenized text)."""
    logprobs = choice.get("logprobs") or {}
    ids = choice.get("token_ids")
    if ids is None:
        tokens = logprobs.get("tokens") or []
        if tokens and all(isinstance(t, str) and t.startswith("token_id:") for t in tokens):
            ids = [int(t.split(":", 1)[1]) for t in tokens]
    if ids is None:
        raise RolloutError(
            "the server returned text but no token ids; token-exact rollouts need them: use vLLM "
            "(return_token_ids / return_tokens_as_token_ids) or resrl_agent.inference.openai_server"
        )
    lps = logprobs.get("token_logprobs")
    if lps is None or len(lps) != len(ids):
        raise RolloutError(f"the server returned {len(ids)} token ids but logprobs {lps!r}; request logprobs=0")
    ids = [int(i) for i in ids]
    finish = "stop" if choice.get("finish_reason") == "stop" else "length"
    return Generation(ids, [float(x) for x in lps], finish, str(choice.get("text") or ""))


class OpenAIEngine:
    """An :class:`~resrl_agent.inference.base.InferenceEngine` over an OpenAI-compatible server."""

    def __init__(
        self,
        base_url: str,
        *,
        tokenizer: Any = None,
        eos_token_id: int | None = None,
        model: str | None = None,
        api_key: str | None = None,
        concurrency: int = 16,
        timeout_s: float = 600.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        eos = eos_token_id if eos_token_id is not None else getattr(tokenizer, "eos_token_id", None)
        if eos is None:
            raise ValueError("OpenAIEngine needs the eos token id: pass tokenizer= or eos_token_id=")
        self.eos_token_id: int = int(eos)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(headers=headers, timeout=timeout_s, transport=transport)
        self.concurrency = max(1, concurrency)
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="resrl-http")
        self.model = model or self._first_model()
        self.weights_version = 0

    @property
    def root_url(self) -> str:
        return self.base_url.removesuffix("/v1")

    def _first_model(self) -> str:
        response = self._request("GET", f"{self.base_url}/models")
        data = response.json().get("data") or []
        if not data:
            raise RolloutError(f"{self.base_url}/models lists no model; pass model= to OpenAIEngine")
        return str(data[0]["id"])

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.client.request(method, url, **kwargs)
        except httpx.HTTPError as err:
            raise RolloutError(f"{method} {url} failed: {err}; is the server running?") from err
        if response.status_code >= 400:
            raise RolloutError(f"{method} {url} answered {response.status_code}: {response.text[:500]}")
        return response

    def _one(self, prompt: Sequence[int], params: SamplingParams, seed: int | None) -> Generation:
        body = completion_payload(self.model, prompt, params, seed)
        response = self._request("POST", f"{self.base_url}/completions", json=body)
        choices = response.json().get("choices") or []
        if len(choices) != 1:
            raise RolloutError(f"expected one choice from /completions, got {len(choices)}")
        return parse_choice(choices[0], self.eos_token_id)

    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, seeds: Sequence[int] | None = None
    ) -> list[Generation]:
        request_seeds = expand_seeds(len(prompts), params, seeds)
        expanded = [p for p in prompts for _ in range(params.n)]
        single = SamplingParams(
            params.temperature, params.top_p, params.top_k, params.max_new_tokens, params.stop, 1, None
        )
        futures = [self._pool.submit(self._one, p, single, s) for p, s in zip(expanded, request_seeds, strict=True)]
        return [f.result() for f in futures]

    def update_weights_from_path(self, weights_dir: str | Path) -> float:
        """Reload the server's weights from a directory of safetensors (vLLM dev-mode routes); returns seconds."""
        start = time.perf_counter()
        root = self.root_url
        self._request("POST", f"{root}/pause", params={"mode": "wait"})
        try:
            body = {"method": "reload_weights", "kwargs": {"weights_path": str(weights_dir)}}
            self._request("POST", f"{root}/collective_rpc", json=body)
            self._request("POST", f"{root}/reset_prefix_cache")
        finally:
            self._request("POST", f"{root}/resume")
        self.weights_version += 1
        return time.perf_counter() - start

    def update_weights(self, state_dict: Mapping[str, Any], *, weights_dir: str | Path | None = None) -> None:
        """Write the state dict as safetensors (default: a temp dir in /dev/shm when present) and reload it."""
        from safetensors.torch import save_file

        base = weights_dir
        temporary = base is None
        if base is None:
            shm = Path("/dev/shm")
            base = tempfile.mkdtemp(prefix="resrl-weights-", dir=shm if shm.is_dir() else None)
        target = Path(base)
        try:
            target.mkdir(parents=True, exist_ok=True)
            # clones: tied tensors (embeddings = lm head) must not share memory in a safetensors file
            tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
            save_file(tensors, str(target / "model.safetensors"))
            self.update_weights_from_path(target)
        finally:
            if temporary:  # the server has read the weights by now; a copy per iteration would fill /dev/shm
                shutil.rmtree(target, ignore_errors=True)

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self.client.close()
