"""The Ray driver on one local Ray (2 CPUs): a 2-iteration training on Math, and a killed rollout worker."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from resrl_agent.config import load_config
from resrl_agent.run.settings import rollout_settings
from resrl_agent.run.tasks import train_tasks
from resrl_agent.trainer.metrics import read_metrics

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def ray_trainer(ray_session: Any, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from resrl_agent.trainer.ray_driver import RayTrainer

    run_dir = tmp_path_factory.mktemp("ray-run")
    config = load_config(
        "configs/math_tiny.yaml",
        [
            f"run_dir={run_dir}",
            "trainer.driver=ray",
            "trainer.iterations=2",
            "trainer.sft_epochs=0",
            "trainer.rollout_workers=2",
            "rollout.tasks_per_iteration=3",
            "rollout.max_new_tokens=12",
        ],
    )
    trainer = RayTrainer(config)
    yield trainer
    trainer.close()


def test_killed_rollout_worker_is_replaced_and_no_group_is_lost(ray_trainer: Any) -> None:
    import ray

    tasks = train_tasks(ray_trainer.config, 7, 4, 4)
    pids = ray.get([w.pid.remote() for w in ray_trainer.workers])
    assert len(set(pids)) == 2 and os.getpid() not in pids

    def kill_first(_workers: list[Any]) -> None:
        os.kill(pids[0], signal.SIGKILL)  # a real process kill while its group is in flight

    settings = rollout_settings(ray_trainer.config)
    episodes = ray_trainer.generator.play(tasks, settings, policy_version=7, on_submitted=kill_first)
    assert ray_trainer.replaced_workers == 1
    assert len(episodes) == 16
    per_group = Counter(e.group_id for e in episodes)
    assert sorted(per_group.values()) == [4, 4, 4, 4] and set(per_group) == {t.group_id for t in tasks}
    for group in per_group:
        assert sorted(e.sample_idx for e in episodes if e.group_id == group) == [0, 1, 2, 3]
    new_pids = ray.get([w.pid.remote() for w in ray_trainer.workers])
    assert new_pids[0] != pids[0] and new_pids[1] == pids[1]


def test_two_iterations_with_ray_on_math(ray_trainer: Any) -> None:
    ray_trainer.run()
    rl = [r for r in read_metrics(ray_trainer.run_dir) if r["phase"] == "rl"]
    assert [r["step"] for r in rl] == [0, 1]
    for record in rl:
        assert record["rollout/episodes"] == 12.0 and record["rollout/groups"] == 3.0
        assert record["rollout/logprob_abs_diff"] < 1e-4  # the inference actor samples from the pushed weights
        assert record["update/rows"] + 0 >= 0 and record["guard/skipped_step"] == 0.0
    assert (ray_trainer.run_dir / "checkpoints" / "iter_00002.pt").is_file()
