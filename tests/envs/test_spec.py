"""The env registry: specs found by scanning envs/*/spec.py and through entry points, validated, and read by the
eval report."""

from __future__ import annotations

import logging
from importlib import metadata
from pathlib import Path

import pytest

import envs
from envs.base import EnvError
from envs.spec import ENTRY_POINT_GROUP, EnvSpec, EpisodeOutcome, discover_specs

BUILTIN = {"resrl/ALFWorld-v0", "resrl/BabyAI-v0", "resrl/Echo-v0", "resrl/FunctionCalling-v0", "resrl/Math-v0",
           "resrl/WebShop-v0"}  # fmt: skip


def test_every_env_folder_describes_itself_once() -> None:
    folders = {p.parent.name for p in Path(envs.__file__).parent.glob("*/env.py")}
    assert {envs.spec(i).package.removeprefix("envs.") for i in BUILTIN} == folders
    assert set(envs.env_ids()) >= BUILTIN
    assert envs.spec("resrl/Math-v0").entry_point == "envs.math.env:MathEnv"
    with pytest.raises(EnvError, match=r"unknown env id 'resrl/Nope-v0' \(registered ids: resrl/ALFWorld-v0"):
        envs.spec("resrl/Nope-v0")


def test_spec_validation() -> None:
    assert EnvSpec("mine/A-v0", "pkg.sub.env:A").package == "pkg.sub"
    assert EnvSpec("mine/A-v0", "pkg.env:A", package="other").package == "other"
    with pytest.raises(ValueError, match="not 'package.module:Class'"):
        EnvSpec("mine/A-v0", "pkg.env.A")
    with pytest.raises(ValueError, match="needs a namespace"):
        EnvSpec("A-v0", "pkg.env:A")
    with pytest.raises(ValueError, match="needs a cli_name"):
        EnvSpec("mine/A-v0", "pkg.env:A", cli="pkg.cli:app")


def test_outcome_last_reads_the_latest_info_with_the_key() -> None:
    outcome = EpisodeOutcome("t", True, [{"score": 0.5, "x": 1}, {"x": 2}, {}])
    assert (outcome.last("score"), outcome.last("x"), outcome.last("y", 7)) == (0.5, 2, 7)


def _plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, value: str) -> None:
    """One entry point ``plug = value`` whose module (``value`` before the colon) holds ``source``."""
    (tmp_path / f"{value.partition(':')[0]}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    point = metadata.EntryPoint("plug", value, ENTRY_POINT_GROUP)
    monkeypatch.setattr(metadata, "entry_points", lambda group: [point] if group == ENTRY_POINT_GROUP else [])


def test_an_entry_point_adds_a_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _plugin(
        tmp_path,
        monkeypatch,
        "from envs.spec import EnvSpec\nSPEC = EnvSpec('mine/P-v0', 'plug_env:P')\n",
        "plug_ok:SPEC",
    )
    specs = discover_specs()
    assert specs["mine/P-v0"].package == "plug_env" and set(specs) >= BUILTIN


def test_a_broken_plugin_is_skipped_with_a_warning_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _plugin(tmp_path, monkeypatch, "raise ImportError('needs a missing package')\n", "plug_broken:SPEC")
    with caplog.at_level(logging.WARNING, logger="envs.spec"):
        specs = discover_specs()
    assert set(specs) == BUILTIN
    assert "env plugin 'plug' (plug_broken:SPEC, group resrl_agent.envs) did not load" in caplog.text
    assert "needs a missing package" in caplog.text


def test_a_plugin_that_is_not_a_spec_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _plugin(tmp_path, monkeypatch, "SPEC = {'id': 'mine/P-v0'}\n", "plug_dict:SPEC")
    with caplog.at_level(logging.WARNING, logger="envs.spec"):
        assert "mine/P-v0" not in discover_specs()
    assert "is a dict, not an envs.spec.EnvSpec" in caplog.text


def test_a_plugin_cannot_take_a_builtin_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = "from envs.spec import EnvSpec\nSPEC = EnvSpec('resrl/Echo-v0', 'plug_env:Echo')\n"
    _plugin(tmp_path, monkeypatch, source, "plug_taken:SPEC")
    with pytest.raises(EnvError, match=r"'resrl/Echo-v0' is described twice: by envs.echo.env:EchoEnv and by plug_env"):
        discover_specs()
