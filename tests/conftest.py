"""Shared fixtures: quiet, deterministic settings and the tiny model built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def resrl_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private cache dir for the session (models, generated data), so tests never touch the user's cache."""
    path = tmp_path_factory.mktemp("resrl-cache")
    os.environ["RESRL_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(resrl_cache: Path) -> Path:
    """The embedded default model, built from scratch exactly as `resrl-agent make-model` builds it."""
    from resrl_agent.inference.make_model import make_tiny_model

    return make_tiny_model(resrl_cache / "models" / "tiny", size="tiny")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
