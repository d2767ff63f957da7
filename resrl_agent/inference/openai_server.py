"""A small OpenAI-compatible server over any in-process engine (e.g. :class:`HFEngine`): the subset rollouts use.

Routes: ``GET /health``, ``GET /v1/models``, ``POST /v1/completions`` (prompt as token ids, ``return_token_ids``,
``logprobs``, ``seed``, ``stop``; vLLM's field names) and vLLM's dev-mode weight routes (``/pause``, ``/resume``,
``/reset_prefix_cache``, ``/collective_rpc`` with ``reload_weights(weights_path=DIR)``), so
:class:`~resrl_agent.inference.openai_http.OpenAIEngine` drives it exactly like ``vllm serve``.

Concurrent requests are batched: requests that arrive within ``batch_window_s`` of each other with the same
sampling settings go to the engine as one ``generate`` call (per-request seeds keep each sample independent of its
batch). Bind it to loopback: it has no authentication.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from resrl_agent.inference.base import Generation, InferenceEngine, SamplingParams

logger = logging.getLogger(__name__)

__all__ = ["CompletionRequest", "create_app", "serve_in_thread"]


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    prompt: list[int] | str
    max_tokens: int = Field(16, ge=1)
    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = -1
    n: int = Field(1, ge=1)
    seed: int | None = None
    stop: list[str] | str | None = None
    logprobs: int | None = None
    return_token_ids: bool = False
    return_tokens_as_token_ids: bool = False


class RpcRequest(BaseModel):
    method: str
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)


class _Batcher:
    """Groups concurrent requests with equal sampling settings into one engine call, run in a worker thread."""

    def __init__(self, engine: InferenceEngine, window_s: float, max_batch: int) -> None:
        self.engine, self.window_s, self.max_batch = engine, window_s, max_batch
        self.queue: asyncio.Queue[tuple[list[int], SamplingParams, int | None, asyncio.Future[Generation]]] | None = (
            None
        )
        self.lock = threading.Lock()  # also held by weight reloads
        self.task: asyncio.Task[None] | None = None

    async def submit(self, prompt: list[int], params: SamplingParams, seed: int | None) -> Generation:
        if self.queue is None:
            self.queue = asyncio.Queue()
            self.task = asyncio.get_running_loop().create_task(self._run())
        future: asyncio.Future[Generation] = asyncio.get_running_loop().create_future()
        await self.queue.put((prompt, params, seed, future))
        return await future

    async def _run(self) -> None:
        assert self.queue is not None
        while True:
            items = [await self.queue.get()]
            deadline = time.monotonic() + self.window_s
            while len(items) < self.max_batch:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break
                try:
                    items.append(await asyncio.wait_for(self.queue.get(), timeout))
                except asyncio.TimeoutError:
                    break
            groups: dict[SamplingParams, list[Any]] = {}
            for item in items:
                groups.setdefault(item[1], []).append(item)
            for params, group in groups.items():
                try:
                    results = await asyncio.to_thread(
                        self._generate, [g[0] for g in group], params, [g[2] for g in group]
                    )
                except Exception as err:  # the requests fail, the server stays up
                    for g in group:
                        g[3].set_exception(err)
                    continue
                for g, result in zip(group, results, strict=True):
                    g[3].set_result(result)

    def _generate(
        self, prompts: list[list[int]], params: SamplingParams, seeds: Sequence[int | None]
    ) -> list[Generation]:
        import random

        resolved = [s if s is not None else random.randrange(2**31 - 1) for s in seeds]
        with self.lock:
            return self.engine.generate(prompts, params, seeds=resolved)


def _encode(engine: Any, prompt: list[int] | str) -> list[int]:
    if isinstance(prompt, list):
        return prompt
    tokenizer = getattr(engine, "tokenizer", None)
    if tokenizer is None:
        raise HTTPException(400, "this server takes prompts as token ids")
    return list(tokenizer(prompt, add_special_tokens=False)["input_ids"])


def create_app(
    engine: InferenceEngine, *, model_name: str = "resrl", batch_window_s: float = 0.01, max_batch: int = 64
) -> FastAPI:
    """The FastAPI app serving ``engine``."""
    app = FastAPI(title="resrl-agent OpenAI-compatible completions")
    batcher = _Batcher(engine, batch_window_s, max_batch)
    state = {"paused": False}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "resrl-agent"}]}

    @app.post("/v1/completions")
    async def completions(request: CompletionRequest) -> dict[str, Any]:
        if state["paused"]:
            raise HTTPException(503, "the engine is paused for a weight update")
        stop = (request.stop,) if isinstance(request.stop, str) else tuple(request.stop or ())
        try:
            params = SamplingParams(
                temperature=request.temperature,
                top_p=request.top_p,
                top_k=max(request.top_k, 0),
                max_new_tokens=request.max_tokens,
                stop=stop,
            )
        except ValueError as err:
            raise HTTPException(400, str(err)) from None
        from resrl_agent.inference.base import expand_seeds

        prompt = _encode(engine, request.prompt)
        seeds = (
            expand_seeds(1, SamplingParams(n=request.n), [request.seed])
            if request.seed is not None
            else [None] * request.n
        )
        results = await asyncio.gather(*(batcher.submit(prompt, params, s) for s in seeds))
        choices = []
        for index, gen in enumerate(results):
            choice: dict[str, Any] = {"index": index, "text": gen.text, "finish_reason": gen.finish_reason}
            if request.return_token_ids:
                choice["token_ids"] = gen.token_ids
            if request.logprobs is not None:
                choice["logprobs"] = {
                    "token_logprobs": gen.logprobs,
                    "tokens": [f"token_id:{i}" for i in gen.token_ids] if request.return_tokens_as_token_ids else None,
                }
            choices.append(choice)
        used = sum(len(g.token_ids) for g in results)
        return {
            "id": f"cmpl-{time.time_ns()}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model_name,
            "choices": choices,
            "usage": {"prompt_tokens": len(prompt), "completion_tokens": used, "total_tokens": len(prompt) + used},
        }

    @app.post("/pause")
    def pause() -> dict[str, bool]:
        state["paused"] = True
        return {"paused": True}

    @app.post("/resume")
    def resume() -> dict[str, bool]:
        state["paused"] = False
        return {"paused": False}

    @app.post("/reset_prefix_cache")
    def reset_prefix_cache() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/collective_rpc")
    def collective_rpc(request: RpcRequest) -> dict[str, Any]:
        path = request.kwargs.get("weights_path")
        if request.method != "reload_weights" or not isinstance(path, str):
            raise HTTPException(400, "only reload_weights(weights_path=DIR) is supported")
        from safetensors.torch import load_file

        files = sorted(Path(path).glob("*.safetensors"))
        if not files:
            raise HTTPException(404, f"no *.safetensors in {path}")
        state_dict: dict[str, Any] = {}
        for file in files:
            state_dict.update(load_file(str(file)))
        with batcher.lock:
            engine.update_weights(state_dict)
        return {"results": [len(state_dict)]}

    return app


def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> tuple[Any, threading.Thread, str]:
    """Run ``app`` with uvicorn in a daemon thread; returns (server, thread, base URL). ``server.should_exit = True``
    stops it."""
    import socket

    import uvicorn

    if port == 0:
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True, name="resrl-openai-server")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the OpenAI-compatible server did not start on {host}:{port}")
        time.sleep(0.02)
    return server, thread, f"http://{host}:{port}/v1"
