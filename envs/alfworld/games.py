"""Where games live: the shipped set (package data, unpacked into the cache dir), generated trees, and the index.

The cache dir is ``$RESRL_CACHE/alfworld`` or ``~/.cache/resrl-agent/alfworld``. The shipped archive
``data/games.json.gz`` is unpacked once into ``<cache>/shipped-<digest>/`` (the digest of the archive's bytes, so a
new archive never reuses an old tree); :func:`generated_games_dir` generates a larger set on demand.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from envs.alfworld.engine import TASK_TYPE_IDS
from envs.alfworld.generator import SPLITS, generate, unpack
from envs.base import EnvError
from tools.cache import cache_dir as shared_cache_dir

logger = logging.getLogger(__name__)

SHIPPED_ARCHIVE = Path(__file__).resolve().parent / "data" / "games.json.gz"


def cache_dir() -> Path:
    """Where ALFWorld's games and translations are kept: ``tools.cache.cache_dir("alfworld")``."""
    return shared_cache_dir("alfworld")


def shipped_games_dir() -> Path:
    """The shipped games as an AlfredTWEnv tree (unpacked on first use)."""
    if not SHIPPED_ARCHIVE.exists():
        raise EnvError(
            f"the shipped ALFWorld games are missing: {SHIPPED_ARCHIVE}",
            hint="reinstall resrl-agent, or pass data_dir= a tree made by `resrl-agent alfworld generate`",
        )
    digest = hashlib.blake2b(SHIPPED_ARCHIVE.read_bytes(), digest_size=6).hexdigest()
    return unpack(SHIPPED_ARCHIVE, cache_dir() / f"shipped-{digest}")


def generated_games_dir(
    num_train: int,
    num_eval: int,
    *,
    seed: int = 0,
    task_types: tuple[int, ...] = (1, 2, 3, 4, 5, 6),
    max_steps: int = 50,
) -> Path:
    """A generated tree with ``num_train`` train games and ``num_eval`` games per eval split, made once and cached."""
    types = "".join(str(t) for t in sorted(set(task_types)))
    out = cache_dir() / f"generated-s{seed}-t{types}-n{num_train}-e{num_eval}-m{max_steps}"
    if not (out / "generation.json").exists():
        logger.info("generating ALFWorld games into %s (about 3 s per game)", out)
        counts = {"train": num_train, "valid_seen": num_eval, "valid_unseen": num_eval}
        generate(out, counts, task_types=task_types, seed=seed, max_steps=max_steps)
    return out


@dataclass(frozen=True)
class GameRecord:
    task_id: str
    split: str
    task_type: str
    game_file: Path
    pddl_params: dict[str, object]
    expert_seed: int
    walkthrough_len: int


@cache
def index_games(root: Path) -> tuple[GameRecord, ...]:
    """Every solvable game under ``root`` (any depth), in a stable order (sorted by path)."""
    records = []
    for traj_file in sorted(root.rglob("traj_data.json")):
        game_file = traj_file.parent / "game.tw-pddl"
        if not game_file.exists():
            continue
        traj = json.loads(traj_file.read_text())
        # Read only the small keys; the file also holds the domain and the grammar.
        game = json.loads(game_file.read_text())
        if not game.get("solvable") or traj.get("task_type") not in TASK_TYPE_IDS:
            continue
        split = traj.get("split") or next((p for p in traj_file.parts if p in SPLITS), "train")
        task_id = traj.get("task_id") or traj_file.parent.relative_to(root).as_posix()
        records.append(
            GameRecord(
                task_id,
                split,
                traj["task_type"],
                game_file,
                traj["pddl_params"],
                int(traj.get("expert_seed", 0)),
                len(game.get("walkthrough") or []),
            )
        )
    return tuple(records)
