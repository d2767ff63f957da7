"""Checkpoints: model, optimizer, scheduler, every RNG state, the data position and the config; exact resume."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resrl_agent.errors import TrainerError

__all__ = ["export_checkpoint", "latest_checkpoint", "load_checkpoint", "rng_state", "save_checkpoint", "set_rng_state"]


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: str | Path, name: str, payload: dict[str, Any]) -> Path:
    """Write ``RUN_DIR/checkpoints/NAME.pt`` atomically and point ``latest`` at it."""
    folder = Path(run_dir) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.pt"
    tmp = path.with_suffix(".pt.tmp")
    torch.save({**payload, "rng": rng_state()}, tmp)
    os.replace(tmp, path)
    (folder / "latest").write_text(path.name + "\n", encoding="utf-8")
    return path


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    marker = Path(run_dir) / "checkpoints" / "latest"
    if not marker.is_file():
        return None
    path = marker.parent / marker.read_text(encoding="utf-8").strip()
    return path if path.is_file() else None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise TrainerError(f"no checkpoint at {file}; `--resume` needs a run dir with checkpoints/latest")
    payload: dict[str, Any] = torch.load(file, map_location="cpu", weights_only=False)
    return payload


def export_checkpoint(path: str | Path, out: str | Path, *, model_path: str | None = None) -> Path:
    """Write the policy of a training checkpoint (``RUN_DIR/checkpoints/*.pt``) as a Hugging Face checkpoint in ``out``.

    The base model (``model_path``, default the run's ``model.path``: a local dir, or ``tiny``/``small``) gives the
    architecture and tokenizer; the checkpoint's weights replace its own. The result loads with ``from_pretrained``
    and serves as ``model.path`` for `resrl-agent eval` / `rollout` on any backend (vLLM included).
    """
    from resrl_agent.inference.hf import load_model_and_tokenizer
    from resrl_agent.inference.make_model import resolve_model_path

    payload = load_checkpoint(path)
    state = (payload.get("learner") or {}).get("model")
    if not isinstance(state, dict):
        raise TrainerError(f"{path} holds no model weights (learner.model); is it a `resrl-agent train` checkpoint?")
    model_cfg = (payload.get("config") or {}).get("model") or {}
    base = model_path or model_cfg.get("path")
    if not base:
        raise TrainerError(f"{path} does not say which base model it was trained from; pass model_path")
    model, tokenizer = load_model_and_tokenizer(resolve_model_path(str(base)), dtype=model_cfg.get("dtype", "float32"))
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise TrainerError(f"the weights in {path} do not fit the base model {base}: {err}") from None
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target
