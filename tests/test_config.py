"""Typed config: every shipped YAML validates; overrides apply; mistakes are clear errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from resrl_agent.config import RunConfig, dump_config, load_config
from resrl_agent.errors import ConfigError

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path) -> None:
    config = load_config(path)
    assert isinstance(config, RunConfig) and config.name


def test_defaults_are_the_paper_settings() -> None:
    config = load_config()
    resrl = config.algo.resrl
    assert (resrl.rank, resrl.q_low, resrl.q_high, resrl.min_weight, resrl.pos_scale) == (64, 0.2, 0.8, 0.1, 0.1)
    assert (config.algo.loss.clip_low, config.algo.loss.clip_high, config.algo.loss.dual_clip) == (0.2, 0.2, 3.0)
    assert (config.trainer.lr, config.trainer.warmup_steps, config.trainer.weight_decay) == (1e-6, 10, 0.1)
    assert config.algo.gigpo.gamma == 0.95 and config.rollout.temperature == 1.0


def test_dotted_overrides_are_typed(tmp_path: Path) -> None:
    config = load_config(
        None,
        [
            "trainer.lr=3e-5",
            "algo.resrl.rank=32",
            "rollout.stop=[</s>, END]",
            "env.kwargs.max_steps=5",
            "algo.resrl.reweight=none",
            "engine.url=null",
        ],
    )
    assert config.trainer.lr == pytest.approx(3e-5)
    assert config.algo.resrl.rank == 32 and config.algo.resrl.reweight == "none"
    assert config.rollout.stop == ["</s>", "END"]
    assert config.env.kwargs == {"max_steps": 5}
    dump_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config


def test_unknown_key_names_the_key_and_the_allowed_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'algo\.resrl\.rnak'; did you mean 'algo\.resrl\.rank'"):
        load_config(None, ["algo.resrl.rnak=3"])
    path = tmp_path / "typo.yaml"
    path.write_text("trainer:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'trainer\.learning_rate'.*Allowed keys here: .*lr"):
        load_config(path)


def test_wrong_type_and_closed_choices() -> None:
    with pytest.raises(ConfigError, match=r"trainer\.lr: .*valid number.*got 'fast'"):
        load_config(None, ["trainer.lr=fast"])
    with pytest.raises(
        ConfigError, match=r"algo\.advantage: no advantage estimator named 'ppo'; registered: dapo, gigpo, grpo, nsr"
    ):
        load_config(None, ["algo.advantage=ppo"])
    with pytest.raises(ConfigError, match=r"rollout\.group_size: .*greater than or equal to 1"):
        load_config(None, ["rollout.group_size=0"])


def test_cross_field_checks_name_the_key_to_change() -> None:
    with pytest.raises(ConfigError, match=r"q_low=0\.9 must be below algo\.resrl\.q_high=0\.8"):
        load_config(None, ["algo.resrl.q_low=0.9"])
    with pytest.raises(ConfigError, match="set rollout.group_size >= 2"):
        load_config(None, ["algo.advantage=gigpo", "rollout.group_size=1"])
    with pytest.raises(ConfigError, match="engine.backend=openai needs engine.url"):
        load_config(None, ["engine.backend=openai"])


def test_bad_files_and_overrides(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")
    with pytest.raises(ConfigError, match="not of the form key.path=value"):
        load_config(None, ["trainer.lr"])
    with pytest.raises(ConfigError, match="is a value, not a section"):
        load_config(None, ["seed.x=1"])


def test_config_is_frozen() -> None:
    config = load_config()
    with pytest.raises(ValueError, match="frozen"):
        config.seed = 3  # type: ignore[misc]


def test_dapo_defaults_to_clip_higher() -> None:
    assert load_config(None, ["algo.advantage=dapo"]).algo.loss.clip_high == 0.28
    assert load_config(None, ["algo.advantage=dapo", "algo.loss.clip_high=0.3"]).algo.loss.clip_high == 0.3
    assert load_config(None, ["algo.advantage=grpo"]).algo.loss.clip_high == 0.2


def test_invalid_penalty_is_one_setting_for_every_estimator(tmp_path: Path) -> None:
    assert load_config(None, ["algo.advantage=grpo", "algo.invalid_penalty=0.25"]).algo.invalid_penalty == 0.25
    old = tmp_path / "old.yaml"
    old.write_text("algo:\n  gigpo: {gamma: 0.9, invalid_penalty: 0.2}\n")
    with pytest.raises(ConfigError, match="moved to algo.invalid_penalty"):
        load_config(old)
