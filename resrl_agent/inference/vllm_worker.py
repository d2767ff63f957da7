"""vLLM worker extension (``LLM(worker_extension_cls=...)``): runs inside vLLM's worker process.

Tensors sent through ``collective_rpc`` to a multiprocess engine arrive as plain lists, so the learner's state dict
travels as safetensors bytes and is loaded with the worker's own ``reload_weights`` (which also repacks CPU weights;
loading into the model directly fails there). See notes in docs/rollouts.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["WeightSync"]


class WeightSync:
    """Mixed into vLLM's Worker: ``self`` is the worker."""

    def load_st_bytes(self, blob: bytes) -> int:
        from safetensors.torch import load

        state_dict = load(blob)
        worker: Any = self
        worker.reload_weights(weights_iterator=list(state_dict.items()))
        return len(state_dict)
