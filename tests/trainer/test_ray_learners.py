"""RayTrainer with two learner actors (fsdp2 over gloo, 2 CPUs): rendezvous, training, weights and state from rank 0."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from resrl_agent.config import load_config
from resrl_agent.trainer.checkpoint import latest_checkpoint, load_checkpoint
from resrl_agent.trainer.metrics import read_metrics

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_two_learner_actors_train_on_math(
    ray_session: Any, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from resrl_agent.trainer.ray_driver import RayTrainer

    run_dir = tmp_path_factory.mktemp("ray-learners")
    config = load_config(
        "configs/math_tiny.yaml",
        [
            f"run_dir={run_dir}",
            "trainer.driver=ray",
            "trainer.num_learners=2",
            "trainer.data_parallel=fsdp2",
            "trainer.iterations=2",
            "trainer.sft_epochs=0",
            "trainer.rollout_workers=1",
            "rollout.tasks_per_iteration=2",
            "rollout.max_new_tokens=12",
        ],
    )
    trainer = RayTrainer(config)
    try:
        assert len(trainer.learners) == 2
        trainer.run()
        rl = [r for r in read_metrics(trainer.run_dir) if r["phase"] == "rl"]
        assert [r["step"] for r in rl] == [0, 1]
        for record in rl:
            assert record["ray/learners"] == 2.0 and record["rollout/episodes"] == 8.0
            assert record["update/rows"] == 8.0 and record["guard/skipped_step"] == 0.0
            # the inference actor samples from rank 0's gathered weights: sampling and learner agree
            assert record["rollout/logprob_abs_diff"] < 1e-4
        # rank 0 saved the whole (unsharded) state; it loads back into both ranks unchanged
        file = latest_checkpoint(trainer.run_dir)
        assert file is not None and file.name == "iter_00002.pt"
        saved = load_checkpoint(file)["learner"]
        assert all(type(v) is torch.Tensor for v in saved["model"].values())
        assert saved["steps"] == 2 and saved["optimizer"]["state"]
        trainer.learner_group.load_state_dict(saved)
        again = trainer.learner_group.state_dict()
        for key, value in saved["model"].items():
            assert torch.equal(again["model"][key], value), key
    finally:
        trainer.close()
