"""The multi-host test's driver: runs in the head namespace, joins the Ray cluster, trains with the Ray driver.

``python netns_driver.py RAY_ADDRESS NODE_IP RECORD_JSONL CONFIG [overrides...]``. Every rollout phase appends one
JSON line to RECORD_JSONL: the iteration, its tasks and the episodes that came back (group, sample index, seed,
stop reason, env re-runs). The first line says in which network namespace each actor process runs.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import ray

from resrl_agent.config import load_config
from resrl_agent.trainer.ray_driver import RayTrainer


def _netns(pid: int | str) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")


def main() -> None:
    address, node_ip, record, config_path, *overrides = sys.argv[1:]
    ray.init(address=address, _node_ip_address=node_ip, log_to_driver=False)

    def write(line: dict[str, Any]) -> None:
        with open(record, "a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")

    class RecordingTrainer(RayTrainer):
        def rollout(self, tasks: list[Any], *, iteration: int, evaluation: bool = False, **kw: Any) -> list[Any]:
            episodes = super().rollout(tasks, iteration=iteration, evaluation=evaluation, **kw)
            write(
                {
                    "iteration": iteration,
                    "tasks": [[t.group_id, t.sample_idx, t.seed] for t in tasks],
                    "episodes": [
                        [e.group_id, e.sample_idx, e.seed, e.stop_reason, e.metrics.get("env_reruns", 0.0)]
                        for e in episodes
                    ],
                }
            )
            return episodes

    trainer = RecordingTrainer(load_config(config_path, overrides))
    try:
        pids = ray.get([w.pid.remote() for w in trainer.workers])
        write({"driver_netns": _netns("self"), "worker_netns": [_netns(p) for p in pids]})
        trainer.run()
    finally:
        trainer.close()
    write({"done": True, "replaced_workers": trainer.replaced_workers})


if __name__ == "__main__":
    main()
