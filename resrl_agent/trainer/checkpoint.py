"""Checkpoints: model, optimizer, scheduler, every RNG state, the data position and the config; exact resume.

A checkpoint also records the tokenizer it was trained with (``payload["tokenizer"]``: its fingerprint, see
:func:`resrl_agent.inference.make_model.tokenizer_fingerprint`, and the tiny model's corpus version when known).
Every load against a model (resume, export, ``eval``/``rollout --checkpoint``) checks it: weights trained on other
token ids would load without an error and read garbage, so a mismatch is refused with a :class:`TrainerError`.
Checkpoints written before the fingerprint existed load with a warning.

A checkpoint holds tensors and plain values only (the RNG states too: numpy's as lists) and loads with
``torch.load(weights_only=True)``: loading one never runs code. It is written atomically (temp file, fsync, rename),
and so is ``latest``; :func:`loadable_checkpoints` lists a run's checkpoints newest first, so a resume can fall back
past one that a crash left unreadable.
"""

from __future__ import annotations

import logging
import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resrl_agent.errors import TrainerError
from resrl_agent.files import atomic_write, atomic_write_text

logger = logging.getLogger(__name__)

__all__ = [
    "check_tokenizer",
    "convert_checkpoint",
    "export_checkpoint",
    "latest_checkpoint",
    "load_checkpoint",
    "loadable_checkpoints",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
    "tokenizer_record",
]


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": _numpy_state_plain(np.random.get_state()),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _numpy_state_plain(state: Any) -> list[Any]:
    """numpy's legacy RNG state with its key array as a list (``weights_only`` loads no numpy arrays)."""
    name, keys, pos, has_gauss, cached = state
    return [str(name), [int(k) for k in keys], int(pos), int(has_gauss), float(cached)]


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_python_state(state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state(state: Any) -> tuple[Any, ...]:
    """``random.setstate`` wants tuples where a round trip may have made lists."""
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def tokenizer_record(tokenizer: Any) -> dict[str, Any]:
    """What a checkpoint records about its tokenizer: the fingerprint, and the model dir and corpus version of a
    model built by make-model (read from its ``resrl_build.json``) when the tokenizer was loaded from one."""
    from resrl_agent.inference.make_model import build_info, tokenizer_fingerprint

    record: dict[str, Any] = {"fingerprint": tokenizer_fingerprint(tokenizer)}
    source = getattr(tokenizer, "name_or_path", None)
    if source:
        record["model_dir"] = str(source)
        info = build_info(source) or {}
        for key in ("size", "seed", "corpus_version", "builder_version"):
            if key in info:
                record[key] = info[key]
    return record


def _describe(record: dict[str, Any]) -> str:
    text = str(record.get("fingerprint", "?"))[:16]
    if "corpus_version" in record:
        details = ", ".join(f"{k} {record[k]}" for k in ("size", "seed", "corpus_version") if k in record)
        text += f" ({details})"
    return text


def check_tokenizer(payload: dict[str, Any], tokenizer: Any, *, checkpoint: str | Path, model_path: str) -> None:
    """Refuse ``payload`` (a loaded checkpoint) if it was trained with another tokenizer than ``tokenizer``.

    ``model_path`` is how the user named the model (``model.path``), for the message. A checkpoint that records no
    tokenizer (written before fingerprints existed) passes with a warning."""
    recorded = payload.get("tokenizer")
    if not isinstance(recorded, dict) or "fingerprint" not in recorded:
        logger.warning(
            "%s records no tokenizer fingerprint (written by an older resrl-agent); loading it against model.path=%s "
            "unchecked: if that model was rebuilt since (as the tiny model is, for tokenizer corpus version 2), "
            "the token ids differ and the weights are meaningless",
            checkpoint,
            model_path,
        )
        return
    current = tokenizer_record(tokenizer)
    if recorded["fingerprint"] == current["fingerprint"]:
        return
    trained_on = recorded.get("model_dir", "?")
    raise TrainerError(
        f"checkpoint {checkpoint} was trained with tokenizer {_describe(recorded)} (model dir {trained_on}), but the "
        f"model at model.path={model_path} ({current.get('model_dir', '?')}) has tokenizer {_describe(current)}: "
        f"the token ids differ, so the weights would not mean the same tokens. {_fix_hint(recorded)}"
    )


def _fix_hint(recorded: dict[str, Any]) -> str:
    from resrl_agent.inference.corpus import CORPUS_VERSIONS

    hint = "Set model.path to the model the run used"
    if "size" not in recorded:
        return hint
    command = f"`resrl-agent make-model --size {recorded['size']} --seed {recorded.get('seed', 0)} --out DIR`"
    version = recorded.get("corpus_version")
    if version is not None and version not in CORPUS_VERSIONS:
        command += f" with a resrl-agent that has tokenizer corpus version {version}"
    return f"{hint}, or rebuild the same model ({command}) and set model.path=DIR"


def save_checkpoint(run_dir: str | Path, name: str, payload: dict[str, Any], *, tokenizer: Any | None = None) -> Path:
    """Write ``RUN_DIR/checkpoints/NAME.pt`` atomically and point ``latest`` at it (atomically too).

    ``tokenizer``: the policy's tokenizer, recorded (:func:`tokenizer_record`) so that loads can check it."""
    folder = Path(run_dir) / "checkpoints"
    path = folder / f"{name}.pt"
    extra = {"tokenizer": tokenizer_record(tokenizer)} if tokenizer is not None else {}
    atomic_write(path, lambda handle: torch.save({**payload, **extra, "rng": rng_state()}, handle))
    atomic_write_text(folder / "latest", path.name + "\n")
    for stale in folder.glob(".*.tmp-*"):  # a writer killed mid-write (one run per dir: not ours is dead)
        if not stale.name.endswith(f"-{os.getpid()}"):
            stale.unlink(missing_ok=True)
    return path


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    marker = Path(run_dir) / "checkpoints" / "latest"
    if not marker.is_file():
        return None
    path = marker.parent / marker.read_text(encoding="utf-8").strip()
    return path if path.is_file() else None


def loadable_checkpoints(run_dir: str | Path) -> list[Path]:
    """The run's checkpoints to resume from, best first: the one ``latest`` names, then the others newest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    others = sorted(folder.glob("*.pt"), key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)
    first = latest_checkpoint(run_dir)
    return ([first] if first is not None else []) + [p for p in others if p != first]


def load_checkpoint(path: str | Path, *, tokenizer: Any | None = None, model_path: str | None = None) -> dict[str, Any]:
    """Read a checkpoint (``weights_only``: tensors and plain values, no code runs). With ``tokenizer`` (the model
    it is about to be loaded into, named ``model_path`` by the user), refuse it if it was trained with another
    tokenizer (:func:`check_tokenizer`). An empty, truncated or foreign file is a TrainerError that names it."""
    file = Path(path)
    if not file.is_file():
        raise TrainerError(f"no checkpoint at {file}; `--resume` needs a run dir with checkpoints/latest")
    if file.stat().st_size == 0:
        raise TrainerError(f"checkpoint {file} is empty (a write that was cut off?); delete it or use another one")
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise TrainerError(
            f"checkpoint {file} holds more than tensors and plain values, so it is not loaded (loading it could run "
            "code). Checkpoints of resrl-agent before weights-only loading hold numpy RNG state: if you trust the "
            "file, re-save it with `resrl-agent convert-checkpoint FILE`. "
            f"({str(err).splitlines()[0]})"
        ) from None
    except Exception as err:  # a truncated zip, a file that is not a torch checkpoint at all
        raise TrainerError(
            f"checkpoint {file} cannot be read ({type(err).__name__}: {err}); is it truncated?"
        ) from None
    if not isinstance(payload, dict):
        raise TrainerError(f"checkpoint {file} holds a {type(payload).__name__}, not a resrl-agent checkpoint")
    if tokenizer is not None:
        named = model_path or str(getattr(tokenizer, "name_or_path", "") or "?")
        check_tokenizer(payload, tokenizer, checkpoint=file, model_path=named)
    return payload


def convert_checkpoint(path: str | Path) -> Path:
    """Re-save an old checkpoint (numpy RNG state pickled as an array) in the weights-only form, in place (the old
    file is kept as ``NAME.pt.bak``). It unpickles the file fully: run it only on checkpoints you made."""
    file = Path(path)
    payload = torch.load(file, map_location="cpu", weights_only=False)
    rng = dict(payload.get("rng") or {})
    if "numpy" in rng and not isinstance(rng["numpy"], list):
        rng["numpy"] = _numpy_state_plain(rng["numpy"])
    payload["rng"] = rng
    backup = file.with_suffix(".pt.bak")
    os.replace(file, backup)
    atomic_write(file, lambda handle: torch.save(payload, handle))
    load_checkpoint(file)  # it must now load weights-only
    return file


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
    check_tokenizer(payload, tokenizer, checkpoint=path, model_path=str(base))
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise TrainerError(f"the weights in {path} do not fit the base model {base}: {err}") from None
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target
