"""The tiny model's tokenizer is a fixed, versioned spec: registering an env never changes a model or a checkpoint's
outputs, and a checkpoint refuses to load against a model with another tokenizer."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import envs
from resrl_agent.errors import ModelBuildError, TrainerError
from resrl_agent.inference import corpus as corpus_module
from resrl_agent.inference.corpus import CORPUS_VERSION, corpus
from resrl_agent.inference.make_model import make_tiny_model, resolve_model_path, tokenizer_fingerprint
from resrl_agent.trainer.checkpoint import export_checkpoint, load_checkpoint, save_checkpoint

TEXT = "Mission: pick up the zorblax\nYou see a red ball 2 steps forward.\n<action>go forward</action>"
OBSERVATION = (
    "Mission: go to the red ball\n"
    "You see a red ball 2 steps forward and 1 step left.\n"
    "You see a wall 3 steps forward.\n"
    "You see a closed blue door 1 step right.\n"
    "You carry nothing."
)
THROWAWAY_ID = "resrl/Throwaway-v0"


def _package(root: Path, name: str, prompts: str) -> None:
    (root / name).mkdir()
    (root / name / "__init__.py").write_text("")
    (root / name / "prompts.py").write_text(prompts)


@pytest.fixture()
def throwaway_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An env registered like a real one, whose corpus texts are words no corpus has; unregistered afterwards."""
    import gymnasium

    _package(
        tmp_path,
        "resrl_throwaway_env",
        "def corpus_texts():\n    return ['zorblax quuxifer frobnitz wibblewobble ' * 50] * 100\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(envs.SPECS, THROWAWAY_ID, envs.EnvSpec(THROWAWAY_ID, "resrl_throwaway_env.env:ThrowawayEnv"))
    envs.register(THROWAWAY_ID, "resrl_throwaway_env.env:ThrowawayEnv")
    assert THROWAWAY_ID in envs.env_ids()
    yield THROWAWAY_ID
    del gymnasium.registry[THROWAWAY_ID]


def _outputs(model_dir: Path) -> tuple[str, list[int], torch.Tensor]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    return tokenizer_fingerprint(tokenizer), ids, logits


def _checkpoint(run_dir: Path, tiny_model_dir: Path, tokenizer: Any | None) -> tuple[Path, dict[str, torch.Tensor]]:
    """A trainer-shaped checkpoint whose weights differ from the base model's (so its outputs are its own)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    gen = torch.Generator().manual_seed(1)
    state = {k: v + 0.05 * torch.randn(v.shape, generator=gen) for k, v in model.state_dict().items()}
    payload = {"learner": {"model": state}, "iteration": 1, "config": {"model": {"path": "tiny", "dtype": "float32"}}}
    return save_checkpoint(run_dir, "iter_00001", payload, tokenizer=tokenizer), state


@pytest.fixture()
def other_tokenizer_dir(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """The tiny model with one extra token in its tokenizer: the same weights, other ids."""
    from transformers import AutoTokenizer

    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    tokenizer = AutoTokenizer.from_pretrained(other)
    tokenizer.add_tokens(["<extra>"])
    tokenizer.save_pretrained(other)
    return other


def test_registering_an_env_changes_neither_the_model_nor_its_outputs(tiny_model_dir: Path, request: Any) -> None:
    marker = (tiny_model_dir / "resrl_build.json").read_text()
    stamp = (tiny_model_dir / "model.safetensors").stat().st_mtime_ns
    before = _outputs(tiny_model_dir)
    before_docs = list(corpus(100))
    request.getfixturevalue("throwaway_env")

    assert resolve_model_path("tiny") == tiny_model_dir == make_tiny_model(tiny_model_dir)
    assert (tiny_model_dir / "model.safetensors").stat().st_mtime_ns == stamp  # the cached build is reused
    assert (tiny_model_dir / "resrl_build.json").read_text() == marker
    assert "envs" not in json.loads(marker) and json.loads(marker)["corpus_version"] == CORPUS_VERSION
    fingerprint, ids, logits = _outputs(tiny_model_dir)
    assert fingerprint == before[0] == json.loads(marker)["tokenizer_sha256"]
    assert ids == before[1]
    assert torch.equal(logits, before[2])
    docs = list(corpus(100))
    assert docs == before_docs and not any("zorblax" in d for d in docs)


def test_a_fresh_build_ignores_the_registered_envs(tiny_model_dir: Path, throwaway_env: str, tmp_path: Path) -> None:
    again = make_tiny_model(tmp_path / "again")
    assert (again / "tokenizer.json").read_bytes() == (tiny_model_dir / "tokenizer.json").read_bytes()
    assert (again / "resrl_build.json").read_bytes() == (tiny_model_dir / "resrl_build.json").read_bytes()


def test_a_checkpoint_gives_the_same_outputs_after_registering_an_env(
    tiny_model_dir: Path, tiny_tokenizer: Any, tmp_path: Path, request: Any
) -> None:
    path, _ = _checkpoint(tmp_path / "run", tiny_model_dir, tiny_tokenizer)
    before = _outputs(export_checkpoint(path, tmp_path / "before"))
    request.getfixturevalue("throwaway_env")
    after = _outputs(export_checkpoint(path, tmp_path / "after"))
    assert after[0] == before[0] and after[1] == before[1] and torch.equal(after[2], before[2])
    assert not torch.equal(after[2], _outputs(tiny_model_dir)[2])  # the checkpoint's weights, not the base model's
    record = load_checkpoint(path, tokenizer=tiny_tokenizer)["tokenizer"]
    assert record["fingerprint"] == tokenizer_fingerprint(tiny_tokenizer)
    assert record["corpus_version"] == CORPUS_VERSION and record["size"] == "tiny"


def test_a_checkpoint_refuses_another_tokenizer(
    tiny_model_dir: Path, tiny_tokenizer: Any, other_tokenizer_dir: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    path, _ = _checkpoint(tmp_path / "run", tiny_model_dir, tiny_tokenizer)
    mine, theirs = tokenizer_fingerprint(tiny_tokenizer), tokenizer_fingerprint(other_tokenizer_dir)
    assert mine != theirs
    with pytest.raises(TrainerError) as refused:
        export_checkpoint(path, tmp_path / "out", model_path=str(other_tokenizer_dir))
    message = str(refused.value)
    assert f"was trained with tokenizer {mine[:16]} (size tiny, seed 0, corpus_version {CORPUS_VERSION})" in message
    assert f"the model at model.path={other_tokenizer_dir}" in message and f"has tokenizer {theirs[:16]}" in message
    assert "the token ids differ" in message
    assert "Set model.path to the model the run used, or rebuild the same model" in message
    assert "`resrl-agent make-model --size tiny --seed 0 --out DIR`" in message
    assert not (tmp_path / "out").exists()
    with pytest.raises(TrainerError, match="was trained with tokenizer"):
        load_checkpoint(path, tokenizer=AutoTokenizer.from_pretrained(other_tokenizer_dir), model_path="mine")


def test_resume_checks_the_tokenizer(tiny_model_dir: Path, other_tokenizer_dir: Path, tmp_path: Path) -> None:
    """The trainer records its tokenizer in every checkpoint and checks it on resume."""
    from resrl_agent.config import load_config
    from resrl_agent.trainer.loop import Trainer

    torch.set_num_threads(1)

    def trainer(model_path: str) -> Trainer:
        return Trainer(
            load_config("configs/echo_tiny.yaml", [f"run_dir={tmp_path / 'run'}", f"model.path={model_path}"])
        )

    first = trainer("tiny")
    first.save("iter_00001")
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "iter_00001.pt")["tokenizer"]["fingerprint"] == (
        tokenizer_fingerprint(first.tokenizer)
    )
    trainer("tiny").resume()
    with pytest.raises(TrainerError, match=f"the model at model.path={other_tokenizer_dir} "):
        trainer(str(other_tokenizer_dir)).resume()


def test_an_old_checkpoint_without_a_fingerprint_loads_with_a_warning(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, _ = _checkpoint(tmp_path / "run", tiny_model_dir, None)
    assert "tokenizer" not in load_checkpoint(path)
    with caplog.at_level(logging.WARNING, logger="resrl_agent.trainer.checkpoint"):
        out = export_checkpoint(path, tmp_path / "out")
    assert (out / "model.safetensors").is_file()
    assert "records no tokenizer fingerprint" in caplog.text


def test_fingerprint_is_stable_across_save_and_reload(
    tiny_model_dir: Path, tiny_tokenizer: Any, tmp_path: Path
) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    # the tiny build records the fingerprint of the tokenizer as trained, in memory; it equals the reloaded one's
    recorded = json.loads((tiny_model_dir / "resrl_build.json").read_text())["tokenizer_sha256"]
    assert recorded == tokenizer_fingerprint(tiny_tokenizer) == tokenizer_fingerprint(tiny_model_dir)
    assert recorded == tokenizer_fingerprint(tiny_tokenizer.backend_tokenizer)
    tiny_tokenizer.save_pretrained(tmp_path / "saved")
    assert tokenizer_fingerprint(AutoTokenizer.from_pretrained(tmp_path / "saved")) == recorded
    assert len(recorded) == 64 and int(recorded, 16) >= 0

    # another kind of tokenizer (WordPiece, no Qwen2 config beside it): stable too, and different
    raw = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.train_from_iterator(
        ["the red ball", "go forward", "pick up the key"] * 20, trainers.WordPieceTrainer(special_tokens=["[UNK]"])
    )
    other = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]")
    other.save_pretrained(tmp_path / "wordpiece")
    assert tokenizer_fingerprint(other) == tokenizer_fingerprint(tmp_path / "wordpiece") != recorded

    # one extra token is another tokenizer
    extra = AutoTokenizer.from_pretrained(tiny_model_dir)
    extra.add_tokens(["<extra>"])
    assert tokenizer_fingerprint(extra) != recorded


def test_unknown_corpus_versions_are_clear_errors() -> None:
    with pytest.raises(
        ModelBuildError, match="unknown tokenizer corpus version 999; this resrl-agent knows versions 2"
    ):
        next(corpus(10, version=999))
    with pytest.raises(ModelBuildError, match="corpus version 1 took its env texts from whatever envs were registered"):
        next(corpus(10, version=1))
    with pytest.raises(ModelBuildError, match="choose one of"):
        make_tiny_model(Path("unused"), size="huge")


def test_a_changed_snapshot_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(corpus_module._ENV_TEXTS_SHA256, CORPUS_VERSION, "0" * 64)
    with pytest.raises(ModelBuildError, match="does not hold the frozen texts of corpus version 2"):
        next(corpus(10))


def test_the_corpus_imports_no_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An env whose prompts module fails on import (say, an optional dependency) cannot break a model build."""
    _package(tmp_path, "resrl_broken_env", "raise ImportError('an optional dependency is missing')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(envs.SPECS, "resrl/Broken-v0", envs.EnvSpec("resrl/Broken-v0", "resrl_broken_env.env:Broken"))
    docs = list(corpus(50))
    assert len(docs) == len(corpus_module.env_texts()) + 50 and "resrl_broken_env.prompts" not in sys.modules
    code = (
        "import sys; from resrl_agent.inference import corpus, make_model; list(corpus.corpus(10)); "
        "assert not [m for m in sys.modules if m == 'envs' or m.startswith('envs.')], 'envs imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_gridworld_texts_are_few_tokens(tiny_tokenizer: Any) -> None:
    docs = list(corpus(10))[-10:]
    grid = [d for d in docs if "Mission: " in d]
    assert len(grid) == 2 and all("<action>" in d and "You carry " in d for d in grid)
    assert docs == list(corpus(10))[-10:] != list(corpus(10, seed=1))[-10:]  # deterministic for the seed
    assert len(tiny_tokenizer(OBSERVATION, add_special_tokens=False)["input_ids"]) <= 48
    for action in ("turn left", "turn right", "go forward", "pick up", "drop", "toggle"):
        assert len(tiny_tokenizer(f"<action>{action}</action>", add_special_tokens=False)["input_ids"]) <= 6
    for word in ("forward", "steps", "carry", "nothing", "wall", "door", "locked", "purple", "grey", "toggle"):
        assert len(tiny_tokenizer(f" {word}", add_special_tokens=False)["input_ids"]) == 1, word
