"""Generate ALFWorld games ourselves: PDDL problems over alfworld's 120 shipped FloorPlan layouts.

alfworld's own generator needs AI2-THOR and its game files need a download, so we write the problems directly
(see README.md). A game is a folder ``<root>/<split>/<task_id>/`` with the three files ``AlfredTWEnv`` reads:
``traj_data.json`` (task type and targets, read by the handcoded expert), ``initial_state.pddl`` and
``game.tw-pddl`` (a JSON file holding alfworld's domain, its grammar with the goal text, the problem, ``solvable``
and the expert's ``walkthrough``).

Every game is checked by playing the handcoded expert on the real engine; games it does not win within
``max_steps`` are dropped and counted, and the next attempt of the same index is drawn. Everything is drawn from
``random.Random(f"{seed}/{split}/{index}/{attempt}")``, so a seed gives the same games on every machine.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import random
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from envs.alfworld.engine import TASK_TYPES, ExpertRandom, make_engine, memoized_translation, quiet
from envs.base import EnvError

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid_seen", "valid_unseen")
# ALFRED's valid_unseen FloorPlans (a kitchen, a living room, a bedroom, a bathroom) plus one more kitchen, bedroom
# and living room so that every task type has unseen scenes. These never appear in train or valid_seen.
UNSEEN_SCENES = frozenset({10, 219, 308, 424, 20, 320, 225})
GENERATOR_VERSION = 1
MAX_ATTEMPTS = 40

# Receptacles that are objects too (Pot, Mug...) are played as objects; the static receptacles come from the layouts.
_LAMPS = ("DeskLamp",)
_LAMP_HOLDERS = ("Desk", "SideTable", "Dresser")
_DOMAIN_TYPES = ("SinkBasin", "Microwave", "Fridge", "Knife", "ButterKnife")
_NEEDS = {3: "SinkBasin", 4: "Microwave", 5: "Fridge"}
_ACTION_FACTS = {
    "Cleanable": "cleanable",
    "Heatable": "heatable",
    "Coolable": "coolable",
    "Sliceable": "sliceable",
    "Toggleable": "toggleable",
}


@dataclass(frozen=True)
class _Alfred:
    """What the alfworld wheel ships: domain, grammar, goal library, object tables, layouts."""

    domain: str
    grammar: str
    goals: dict[str, Any]
    receptacle_objects: dict[str, frozenset[str]]
    action_objects: dict[str, frozenset[str]]
    openable: frozenset[str]
    layouts: Path


@cache
def _alfred() -> _Alfred:
    with quiet():
        import alfworld.gen.constants as constants
        from alfworld.gen.goal_library import gdict
    data = Path(constants.__file__).resolve().parents[1] / "data"
    return _Alfred(
        domain=(data / "alfred.pddl").read_text(),
        grammar=(data / "alfred.twl2").read_text(),
        goals=gdict,
        receptacle_objects={
            r: frozenset(o for o in objs if "Sliced" not in o) for r, objs in constants.VAL_RECEPTACLE_OBJECTS.items()
        },
        action_objects={
            k: frozenset(o for o in objs if "Sliced" not in o) for k, objs in constants.VAL_ACTION_OBJECTS.items()
        },
        openable=frozenset(constants.OPENABLE_CLASS_LIST),
        layouts=Path(constants.__file__).resolve().parent / "layouts",
    )


def escape(name: str) -> str:
    """ALFRED's id escaping for PDDL names (``Cabinet|+00.68|...`` -> ``Cabinet_bar__plus_00_dot_68...``)."""
    for old, new in (("-", "_minus_"), ("|", "_bar_"), ("+", "_plus_"), (".", "_dot_"), (",", "_comma_")):
        name = name.replace(old, new)
    return name


@dataclass(frozen=True)
class Scene:
    number: int
    receptacles: dict[str, tuple[str, str]]  # ALFRED id -> (class, location id)
    object_classes: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"FloorPlan{self.number}"

    def receptacle_classes(self) -> set[str]:
        return {cls for cls, _ in self.receptacles.values()}


def _location(pose: Sequence[float]) -> str:
    x, z, rotation, horizon = pose
    return f"loc|{round(x / 0.25)}|{round(z / 0.25)}|{round(rotation / 90) % 4}|{round(horizon)}"


@cache
def load_scene(number: int) -> Scene:
    """One FloorPlan: its static receptacles (with interaction poses) and the object classes found in it."""
    alfred = _alfred()
    poses = json.loads((alfred.layouts / f"FloorPlan{number}-openable.json").read_text())
    objects = json.loads((alfred.layouts / f"FloorPlan{number}-objects.json").read_text())
    receptacles: dict[str, tuple[str, str]] = {}
    for alfred_id, pose in sorted(poses.items()):
        parts = alfred_id.split("|")
        cls = parts[4] if len(parts) > 4 else parts[0]
        # "Bathtub|..|SinkBasin" (one scene) would read as a bathtub but act as a sink: leave it out.
        if cls not in alfred.receptacle_objects or (len(parts) > 4 and not cls.startswith(parts[0])):
            continue
        receptacles[alfred_id] = (cls, _location(pose))
    return Scene(number, receptacles, tuple(sorted(set(objects))))


@cache
def scene_numbers() -> tuple[int, ...]:
    names = {p.name.split("-")[0] for p in _alfred().layouts.glob("FloorPlan*-openable.json")}
    return tuple(sorted(int(n.removeprefix("FloorPlan")) for n in names))


def split_scenes(split: str) -> tuple[int, ...]:
    if split not in SPLITS:
        raise EnvError(f"unknown split {split!r}", hint=f"use one of {list(SPLITS)}")
    unseen = split == "valid_unseen"
    return tuple(n for n in scene_numbers() if (n in UNSEEN_SCENES) == unseen)


def _pickupable_classes() -> frozenset[str]:
    alfred = _alfred()
    every = set().union(*alfred.receptacle_objects.values())
    return frozenset(every - set(_LAMPS))


@dataclass
class GameSpec:
    """One generated game before the expert check."""

    task_id: str
    split: str
    task_type: str
    scene: str
    pddl_params: dict[str, Any]
    goal_text: str
    problem: str
    expert_seed: int = 0

    def traj_data(self) -> dict[str, Any]:
        return {
            "task_type": self.task_type,
            "pddl_params": self.pddl_params,
            "task_id": self.task_id,
            "split": self.split,
            "scene": {"floor_plan": self.scene},
            "expert_seed": self.expert_seed,
            "generator_version": GENERATOR_VERSION,
        }

    def game_data(self, walkthrough: list[str] | None, solvable: bool) -> dict[str, Any]:
        alfred = _alfred()
        return {
            "pddl_domain": alfred.domain,
            "grammar": alfred.grammar.replace("UNKNOWN GOAL", self.goal_text),
            "pddl_problem": self.problem,
            "solvable": solvable,
            "walkthrough": walkthrough,
        }


def _task_targets(rng: random.Random, task: int, scene: Scene, present: Sequence[str]) -> tuple[str, str] | None:
    """(object class, parent or lamp class) for the task, or None if the scene cannot host it."""
    alfred = _alfred()
    rclasses = scene.receptacle_classes()
    if task in _NEEDS and _NEEDS[task] not in rclasses:
        return None
    candidates = list(present)
    if task == 3:
        candidates = [o for o in candidates if o in alfred.action_objects["Cleanable"]]
    elif task == 4:
        candidates = [o for o in candidates if o in alfred.action_objects["Heatable"]]
    elif task == 5:
        candidates = [o for o in candidates if o in alfred.action_objects["Coolable"]]
    if task == 2:
        if "DeskLamp" not in scene.object_classes or not rclasses & set(_LAMP_HOLDERS):
            return None
        return (rng.choice(candidates), "DeskLamp") if candidates else None
    rng.shuffle(candidates)
    for obj in candidates:
        # The parent must be able to hold the object and must not be the appliance the task uses.
        parents = sorted(r for r in rclasses if obj in alfred.receptacle_objects[r] and r != _NEEDS.get(task))
        # A target must have somewhere else to start from.
        sources = [r for r in rclasses if obj in alfred.receptacle_objects[r]]
        if parents and len(sources) > 1:
            return obj, rng.choice(parents)
    return None


def sample_game(split: str, index: int, task: int, seed: int, attempt: int = 0) -> GameSpec | None:
    """Draw game ``index`` of ``split`` for task type ``task`` (1-6), or None if this draw found no valid setup."""
    alfred = _alfred()
    rng = random.Random(f"{seed}/{split}/{index}/{attempt}")
    scene = load_scene(rng.choice(split_scenes(split)))
    receptacle_classes = scene.receptacle_classes()
    pickupable = _pickupable_classes()
    present = [
        o
        for o in scene.object_classes
        if o in pickupable and any(o in alfred.receptacle_objects[r] for r in receptacle_classes)
    ]
    if not present:
        return None
    targets = _task_targets(rng, task, scene, present)
    if targets is None:
        return None
    obj, parent = targets
    task_type = TASK_TYPES[task]

    # Objects: the target (2-3 instances for pick_two) plus distractor classes, each placed in a receptacle that can
    # hold it; target instances never start inside the goal's parent class (the game would be won at reset).
    distractors = [o for o in present if o != obj]
    rng.shuffle(distractors)
    classes = [obj, *sorted(distractors[: rng.randint(6, 12)])]
    receptacles_by_class: dict[str, list[str]] = {}
    for rid, (cls, _) in scene.receptacles.items():
        receptacles_by_class.setdefault(cls, []).append(rid)
    placed: list[tuple[str, str, str]] = []  # (object id, class, receptacle id)
    used_ids: set[str] = set()
    for cls in classes:
        count = rng.randint(2, 3) if (cls == obj and task == 6) else rng.randint(1, 2)
        holders = sorted(r for r in receptacle_classes if cls in alfred.receptacle_objects[r])
        if cls == obj and task != 2:
            holders = [r for r in holders if r != parent]
        for _ in range(count):
            rclass = rng.choice(holders)
            rid = rng.choice(receptacles_by_class[rclass])
            while True:
                oid = f"{cls}|{rng.uniform(-4, 4):+06.2f}|{rng.uniform(0, 2):+06.2f}|{rng.uniform(-4, 4):+06.2f}"
                if oid not in used_ids:
                    used_ids.add(oid)
                    break
            placed.append((oid, cls, rid))
    if task == 2:
        holders = sorted(rid for rid, (cls, _) in scene.receptacles.items() if cls in _LAMP_HOLDERS)
        placed.append(
            (
                f"DeskLamp|{rng.uniform(-4, 4):+06.2f}|+00.90|{rng.uniform(-4, 4):+06.2f}",
                "DeskLamp",
                rng.choice(holders),
            )
        )

    locations = {loc for _, loc in scene.receptacles.values()}
    while True:
        start = f"loc|{rng.randint(-20, 20)}|{rng.randint(-20, 20)}|{rng.randint(0, 3)}|30"
        if start not in locations:
            break
    problem = _problem(scene, placed, start, task_type, obj, parent)
    params = {
        "object_target": obj,
        "parent_target": "" if task == 2 else parent,
        "toggle_target": parent if task == 2 else "",
        "mrecep_target": "",
        "object_sliced": False,
    }
    template = rng.choice(alfred.goals[task_type]["templates"])
    goal_text = template.format(obj=obj.lower(), recep=parent.lower(), toggle=parent.lower(), mrecep="")
    task_id = f"{task_type}-{obj}-{parent}-{scene.name}-s{seed}-{split}-{index:05d}"
    return GameSpec(task_id, split, task_type, scene.name, params, goal_text, problem)


def _problem(
    scene: Scene, placed: list[tuple[str, str, str]], start: str, task_type: str, obj: str, parent: str
) -> str:
    alfred = _alfred()
    otypes = sorted({cls for _, cls, _ in placed} | {obj, "Knife", "ButterKnife"})
    rtypes = sorted(scene.receptacle_classes() | {"SinkBasin", "Microwave", "Fridge"})
    locations = sorted({loc for _, loc in scene.receptacles.values()} | {start})
    objects = ["agent1 - agent"]
    objects += [f"{t}Type - otype" for t in otypes]
    objects += [f"{t}Type - rtype" for t in rtypes]
    objects += [f"{escape(oid)} - object" for oid, _, _ in placed]
    objects += [f"{escape(rid)} - receptacle" for rid in scene.receptacles]
    objects += [f"{escape(loc)} - location" for loc in locations]
    init = [f"(atLocation agent1 {escape(start)})"]
    for rid, (cls, loc) in scene.receptacles.items():
        init.append(f"(receptacleType {escape(rid)} {cls}Type)")
        init.append(f"(receptacleAtLocation {escape(rid)} {escape(loc)})")
        if cls in alfred.openable:
            init.append(f"(openable {escape(rid)})")
    for rtype in rtypes:
        holds = alfred.receptacle_objects.get(rtype, frozenset())
        init += [f"(canContain {rtype}Type {ot}Type)" for ot in otypes if ot in holds]
    for oid, cls, rid in placed:
        name = escape(oid)
        init.append(f"(objectType {name} {cls}Type)")
        init.append(f"(inReceptacle {name} {escape(rid)})")
        init.append(f"(objectAtLocation {name} {escape(scene.receptacles[rid][1])})")
        if cls not in _LAMPS:
            init.append(f"(pickupable {name})")
        init += [f"({fact} {name})" for key, fact in _ACTION_FACTS.items() if cls in alfred.action_objects[key]]
    goal = str(alfred.goals[task_type]["pddl"]).replace("#", "-")
    goal = goal.format(obj=obj, recep=parent, toggle=parent, mrecep="")
    return (
        "(define (problem plan_resrl)\n(:domain alfred)\n(:objects\n  "
        + "\n  ".join(objects)
        + "\n)\n(:init\n  "
        + "\n  ".join(init)
        + "\n)\n"
        + goal.strip()
        + "\n"
    )


def write_game(spec: GameSpec, game_dir: Path, walkthrough: list[str] | None, solvable: bool) -> Path:
    """Write the three files of one game; returns the path of ``game.tw-pddl``."""
    game_dir.mkdir(parents=True, exist_ok=True)
    (game_dir / "traj_data.json").write_text(json.dumps(spec.traj_data(), indent=1))
    (game_dir / "initial_state.pddl").write_text(spec.problem)
    game_file = game_dir / "game.tw-pddl"
    game_file.write_text(json.dumps(spec.game_data(walkthrough, solvable)))
    return game_file


def expert_stream_seed(task_id: str, expert_seed: int) -> str:
    """The seed of the expert's random stream for a game (the env uses the same one, so it replays the walkthrough)."""
    return f"{task_id}/expert/{expert_seed}"


def expert_walkthrough(engine: Any, game_file: Path, *, max_steps: int, seed: str) -> list[str] | None:
    """Play the handcoded expert on the real engine; its commands if it wins within ``max_steps``, else None."""
    expert_random = ExpertRandom(seed)
    with expert_random.active(), quiet(), memoized_translation():
        engine.load(str(game_file))
        state = engine.reset()
        commands: list[str] = []
        while len(commands) < max_steps:
            command = state["extra.expert_plan"][0]
            state, _, _ = engine.step(command)
            commands.append(command)
            if state["won"]:
                return commands
    return None


def _verified(game_dir: Path, spec: GameSpec) -> bool:
    try:
        game = json.loads((game_dir / "game.tw-pddl").read_text())
    except (OSError, ValueError):
        return False
    return bool(game.get("solvable")) and game.get("pddl_problem") == spec.problem


@dataclass
class GenerationReport:
    kept: Counter[str] = field(default_factory=Counter)  # "split/task_type" -> games kept
    dropped_expert: Counter[str] = field(default_factory=Counter)  # the expert did not win in max_steps
    no_setup: int = 0  # draws whose scene could not host the task type

    def as_dict(self) -> dict[str, Any]:
        return {"kept": dict(self.kept), "dropped_expert": dict(self.dropped_expert), "no_setup": self.no_setup}


def generate(
    out: Path | str,
    counts: dict[str, int],
    *,
    task_types: Iterable[int] = tuple(TASK_TYPES),
    seed: int = 0,
    max_steps: int = 50,
    expert_tries: int = 3,
    engine: Any = None,
) -> GenerationReport:
    """Generate ``counts[split]`` expert-verified games per split under ``out/<split>/<task_id>/``.

    Task types cycle over the indices so each split holds them in equal shares.
    """
    types = sorted(set(task_types))
    if not types or any(t not in TASK_TYPES for t in types):
        raise EnvError(f"task_types={types} must be a non-empty subset of 1-6", hint=str(TASK_TYPES))
    for split in counts:
        split_scenes(split)
    out = Path(out)
    engine = engine if engine is not None else make_engine()
    report = GenerationReport()
    for split, count in counts.items():
        for index in range(count):
            task = types[index % len(types)]
            for attempt in range(MAX_ATTEMPTS):
                spec = sample_game(split, index, task, seed, attempt)
                if spec is None:
                    report.no_setup += 1
                    continue
                game_dir = out / split / spec.task_id
                key = f"{split}/{spec.task_type}"
                if _verified(game_dir, spec):  # resume an interrupted run: this exact game is already checked
                    report.kept[key] += 1
                    break
                game_file = write_game(spec, game_dir, None, solvable=False)
                # The handcoded expert falls back to random admissible commands when it is stuck (often in
                # pick_two games): a few expert streams per game find a win where one stream would loop.
                walkthrough = None
                for expert_seed in range(expert_tries):
                    walkthrough = expert_walkthrough(
                        engine, game_file, max_steps=max_steps, seed=expert_stream_seed(spec.task_id, expert_seed)
                    )
                    if walkthrough is not None:
                        spec.expert_seed = expert_seed
                        break
                if walkthrough is None:
                    report.dropped_expert[key] += 1
                    shutil.rmtree(game_dir)
                    continue
                write_game(spec, game_dir, walkthrough, solvable=True)
                report.kept[key] += 1
                break
            else:
                raise EnvError(f"no valid {TASK_TYPES[task]} game for {split} index {index} in {MAX_ATTEMPTS} draws")
    (out / "generation.json").write_text(
        json.dumps(
            {
                "seed": seed,
                "counts": counts,
                "task_types": types,
                "max_steps": max_steps,
                "generator_version": GENERATOR_VERSION,
                **report.as_dict(),
            },
            indent=1,
            sort_keys=True,
        )
    )
    return report


# --- packed game sets (package data) -------------------------------------------------------------------------------


def pack(root: Path | str, archive: Path | str) -> int:
    """Pack a generated tree into one gzipped JSON (domain and grammar are left out: the wheel has them)."""
    root = Path(root)
    games = []
    for traj_file in sorted(root.glob("*/*/traj_data.json")):
        game = json.loads((traj_file.parent / "game.tw-pddl").read_text())
        if not game.get("solvable"):
            continue
        traj = json.loads(traj_file.read_text())
        goal_line = next(line for line in game["grammar"].splitlines() if "Your task is to: " in line)
        goal_text = goal_line.split("Your task is to: ", 1)[1].split('."', 1)[0]
        games.append(
            {
                "traj_data": traj,
                "problem": game["pddl_problem"],
                "goal_text": goal_text,
                "walkthrough": game["walkthrough"],
            }
        )
    payload: dict[str, Any] = {"generator_version": GENERATOR_VERSION, "games": games}
    meta = root / "generation.json"
    if meta.exists():
        payload["generation"] = json.loads(meta.read_text())
    # mtime=0 and sorted keys: the archive's bytes depend only on the games.
    data = json.dumps(payload, sort_keys=True).encode("utf-8")
    with open(archive, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=9, mtime=0) as f:
        f.write(data)
    return len(games)


def unpack(archive: Path | str, out: Path | str) -> Path:
    """Write a packed game set as an AlfredTWEnv tree under ``out``; safe when several processes race to do it."""
    out = Path(out)
    if (out / ".complete").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(archive, "rt", encoding="utf-8") as f:
        payload = json.load(f)
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=out.parent))
    try:
        for game in payload["games"]:
            traj = game["traj_data"]
            spec = GameSpec(
                traj["task_id"],
                traj["split"],
                traj["task_type"],
                traj["scene"]["floor_plan"],
                traj["pddl_params"],
                game["goal_text"],
                game["problem"],
                traj.get("expert_seed", 0),
            )
            write_game(spec, staging / spec.split / spec.task_id, game["walkthrough"], solvable=True)
        (staging / ".complete").write_text(str(len(payload["games"])))
        try:
            os.rename(staging, out)
        except OSError:  # another process won the race; its tree is identical
            if not (out / ".complete").exists():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return out
