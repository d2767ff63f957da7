"""resrl/ALFWorld-v0 on the real alfworld engine with the shipped generated games (no mocks)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.alfworld import actions, prompts
from envs.alfworld.engine import TASK_TYPES, fact_strings
from envs.alfworld.env import AlfworldEnv
from envs.alfworld.games import SHIPPED_ARCHIVE, index_games
from envs.alfworld.generator import UNSEEN_SCENES, generate, sample_game
from envs.alfworld.vector import AlfworldVectorEnv
from envs.base import EnvError, check_info


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("alfworld-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RESRL_CACHE", str(path))
        mp.setenv("ALFWORLD_DATA", str(path / "alfworld-data"))
        yield path


@pytest.fixture(scope="module")
def env(cache: Path) -> AlfworldEnv:
    made = gym.make("resrl/ALFWorld-v0")
    yield made.unwrapped
    made.close()


def first_game(env: AlfworldEnv, split: str, task_type: str) -> str:
    return env.task_ids(split=split, task_type=task_type)[0]


def test_shipped_set_covers_every_split_and_task_type(env: AlfworldEnv) -> None:
    assert "resrl/ALFWorld-v0" in envs.env_ids()
    assert SHIPPED_ARCHIVE.stat().st_size < 2_000_000
    counts = {split: len(env.task_ids(split=split)) for split in ("train", "valid_seen", "valid_unseen")}
    assert counts == {"train": 600, "valid_seen": 20, "valid_unseen": 20}
    for split in counts:
        assert {g.task_type for g in env.games if g.split == split} == set(TASK_TYPES.values())
    scenes = {
        split: {int(g.task_id.split("FloorPlan")[1].split("-")[0]) for g in env.games if g.split == split}
        for split in counts
    }
    assert scenes["valid_unseen"] <= UNSEEN_SCENES
    assert not (scenes["train"] | scenes["valid_seen"]) & UNSEEN_SCENES


@pytest.mark.parametrize("task_type", list(TASK_TYPES.values()))
def test_expert_wins_each_task_type_through_gym_api(env: AlfworldEnv, task_type: str) -> None:
    task_id = first_game(env, "train", task_type)
    observation, info = env.reset(options={"task_id": task_id})
    check_info(info)
    assert observation.startswith("-= Welcome to TextWorld, ALFRED! =-")
    assert f"Your task is to: {info['task']}." in observation
    assert info["task_type"] == task_type and info["task_id"] == task_id and not info["won"]
    assert info["goal_condition_success"] < 1.0
    walkthrough = json.loads(env.game.game_file.read_text())["walkthrough"]
    played, rewards = [], []
    terminated = truncated = False
    while not (terminated or truncated):
        action = info["expert_action"]
        assert action in info["available_actions"] or action == "look"
        _, reward, terminated, truncated, info = env.step(action)
        check_info(info)
        played.append(action)
        rewards.append(reward)
    assert terminated and not truncated and info["won"]
    assert info["goal_condition_success"] == 1.0
    assert played == walkthrough  # the expert's stream is seeded per game: it replays the stored walkthrough
    assert rewards == [0.0] * (len(played) - 1) + [10.0]
    assert len(played) <= 50
    with pytest.raises(EnvError):
        env.step("look")


def test_random_admissible_play_is_truncated_at_50_steps(env: AlfworldEnv) -> None:
    task_id = first_game(env, "valid_unseen", "pick_two_obj_and_place")
    rng = random.Random(0)
    _, info = env.reset(options={"task_id": task_id})
    steps, total = 0, 0.0
    terminated = truncated = False
    while not (terminated or truncated):
        _, reward, terminated, truncated, info = env.step(rng.choice(info["available_actions"]))
        steps += 1
        total += reward
        assert info["action_valid"] and 0.0 <= info["goal_condition_success"] <= 0.5
    assert (steps, truncated, terminated, total, info["won"]) == (50, True, False, 0.0, False)


def test_invalid_action_changes_nothing(env: AlfworldEnv) -> None:
    task_id = first_game(env, "valid_seen", "pick_heat_then_place_in_recep")
    _, info0 = env.reset(options={"task_id": task_id})
    observation, reward, terminated, truncated, info = env.step("fly to the moon")
    assert observation == "Nothing happens."
    assert (reward, terminated, truncated, info["action_valid"], info["won"]) == (0.0, False, False, False, False)
    assert info["available_actions"] == info0["available_actions"]
    _, _, _, _, info = env.step("  Go   TO  " + info0["available_actions"][0].split("go to ", 1)[-1])
    assert info["action_valid"]  # commands are case- and space-normalised like alfworld does


def test_reset_options_and_determinism(env: AlfworldEnv) -> None:
    observation1, info1 = env.reset(seed=7, options={"split": "valid_unseen", "task_type": 4})
    assert info1["task_type"] == "pick_heat_then_place_in_recep" and env.game.split == "valid_unseen"
    observation2, info2 = env.reset(
        seed=7, options={"split": "valid_unseen", "task_type": "pick_heat_then_place_in_recep"}
    )
    assert (observation1, info1["anchor"], info1["task_id"]) == (observation2, info2["anchor"], info2["task_id"])
    _, info3 = env.reset(options={"task_id": info1["task_id"]})
    assert info3["anchor"] == info1["anchor"]
    for bad in ({"task_id": "nope"}, {"split": "test"}, {"task_type": 9}, {"colour": "red"}):
        with pytest.raises(EnvError):
            env.reset(options=bad)


def test_check_env(env: AlfworldEnv) -> None:
    check_env(env, skip_render_check=True)


def test_same_engine_as_alfred_tw_env(env: AlfworldEnv, tmp_path: Path) -> None:
    """alfworld's own AlfredTWEnv (dagger config) plays our game files identically to our env."""
    from alfworld.agents.environment.alfred_tw_env import AlfredTWEnv

    task_id = first_game(env, "train", "pick_cool_then_place_in_recep")
    record = next(g for g in env.games if g.task_id == task_id)
    shutil.copytree(record.game_file.parent, tmp_path / "train" / task_id)
    config = {
        "env": {
            "task_types": [1, 2, 3, 4, 5, 6],
            "goal_desc_human_anns_prob": 0.0,
            "domain_randomization": False,
            "expert_type": "handcoded",
        },
        "general": {"training_method": "dagger"},
        "dagger": {"training": {"max_nb_steps_per_episode": 50}},
        "dataset": {"data_path": str(tmp_path), "num_train_games": -1, "num_eval_games": -1},
    }
    alfred = AlfredTWEnv(config, train_eval="train")
    assert alfred.num_games == 1
    batch = alfred.init_env(batch_size=1)
    try:
        theirs, their_infos = batch.reset()
        ours, info = env.reset(options={"task_id": task_id})
        assert theirs[0] == ours and their_infos["admissible_commands"][0] == info["available_actions"]
        for command in json.loads(record.game_file.read_text())["walkthrough"]:
            theirs, _, _, their_infos = batch.step([command])
            ours, _, _, _, info = env.step(command)
            assert theirs[0] == ours and their_infos["admissible_commands"][0] == info["available_actions"]
        assert their_infos["won"][0] and info["won"]
    finally:
        batch.close()


def test_parsing_caches_change_nothing(cache: Path) -> None:
    """The memoized template/query parses and shallow contexts (engine.memoized_translation) give the same game.

    Random admissible play (with some inadmissible commands) on one game of each task type, once with the caches
    and once without: every observation, admissible list, expert action, fact list and goal progress is equal.
    """
    plain = AlfworldEnv(cache_translations=False, max_steps=100)
    cached = AlfworldEnv(cache_translations=True, max_steps=100)
    try:
        for n, task_type in enumerate(TASK_TYPES.values()):
            task_id = plain.task_ids(split="train", task_type=task_type)[0]
            rng = random.Random(n)
            runs = []
            for env in (plain, cached):
                rng.seed(n)
                obs, info = env.reset(options={"task_id": task_id})
                trace = [
                    (obs, info["available_actions"], info["expert_action"], sorted(fact_strings(env._state["facts"])))
                ]
                for _ in range(20):
                    command = rng.choice([*info["available_actions"], "take the moon"])
                    obs, reward, terminated, _, info = env.step(command)
                    trace.append(
                        (
                            obs,
                            info["available_actions"],
                            info["expert_action"],
                            sorted(fact_strings(env._state["facts"])),
                            reward,
                            info["won"],
                        )
                    )
                    trace.append(info["goal_condition_success"])
                    if terminated:
                        break
                runs.append(trace)
            assert runs[0] == runs[1], task_type
    finally:
        plain.close()
        cached.close()


def _pddl_env(engine: object) -> Any:
    """The textworld ``PddlEnv`` at the bottom of an engine's wrapper stack."""
    while not hasattr(engine, "_pddl_state"):
        engine = engine._wrapped_env  # type: ignore[attr-defined]
    return engine


def test_one_translation_per_state_and_its_replanning_task_still_plans(
    env: AlfworldEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under memoized_translation a state costs one translation: the plain task, which also stands in for the
    optimized replanning task (optimized_replan=True keeps both). A plan the planner finds for it wins the game."""
    import fast_downward

    from envs.alfworld.engine import clear_memory_caches, make_engine, memoized_translation, quiet

    record = next(g for g in env.games if g.task_type == "pick_and_place_simple" and g.split == "valid_seen")
    calls: list[bool] = []
    original = fast_downward.pddl2sas

    def counting(domain: str, problem: str, **kwargs: Any) -> Any:
        calls.append(bool(kwargs.get("optimize")))
        return original(domain, problem, **kwargs)

    monkeypatch.setattr(fast_downward, "pddl2sas", counting)
    for optimized in (False, True):
        clear_memory_caches()
        calls.clear()
        with quiet(), memoized_translation(disk=False, optimized_replan=optimized):
            engine = make_engine()
            engine.load(str(record.game_file))
            engine.reset()
            pddl = _pddl_env(engine)
            state = pddl._pddl_state
            assert calls == ([False, True] if optimized else [False])  # load and reset share the translations
            assert (state.sas_replan == state.sas) is not optimized
            plan = state.replan(pddl._entity_infos)
            assert plan, "the planner found no plan"
            for command in plan:
                game_state, _, done = engine.step(command)
            assert done and game_state["won"], (optimized, plan)
        engine.close()
    # the env's option reaches the context: a game reset with it translates both tasks
    from envs.alfworld.engine import DISK_CACHE_ENV

    monkeypatch.setenv(DISK_CACHE_ENV, "0")  # every reset translates (nothing read from an earlier one's entries)
    for optimized, expected in ((True, [False, True]), (False, [False])):
        clear_memory_caches()
        calls.clear()
        played = AlfworldEnv(data_dir=str(env.games_root), optimized_replan=optimized)
        played.reset(options={"task_id": record.task_id})
        played.close()
        assert sorted(calls) == expected


def test_empty_games_dir_is_refused(cache: Path, tmp_path: Path) -> None:
    with pytest.raises(EnvError, match="no solvable ALFWorld games"):
        AlfworldEnv(data_dir=str(tmp_path))


@pytest.mark.parametrize(
    ("text", "action", "valid"),
    [
        ("<action>go to countertop 1</action>", "go to countertop 1", True),
        ("<think>the egg may be in the fridge</think>\n<action> Open  Fridge 1 </action>", "open fridge 1", True),
        (
            '<tool_call>{"name": "act", "arguments": {"action": "take egg 1 from fridge 1"}}</tool_call>',
            "take egg 1 from fridge 1",
            True,
        ),
        ('{"tool_calls": [{"name": "act", "arguments": "{\\"action\\": \\"look\\"}"}]}', "look", True),
        ("go to countertop 1", None, False),
        ("<action></action>", None, False),
        ("<action>look</action><action>inventory</action>", None, False),
        ("<think>never closed <action>look</action>", None, False),
        ("<action>look", None, False),
        ('<tool_call>{"name": "act", "arguments": </tool_call>', None, False),
        ('<tool_call>{"name": "search", "arguments": {"action": "look"}}</tool_call>', None, False),
        ('<tool_call>{"name": "act", "arguments": {"command": "look"}}</tool_call>', None, False),
        ("<action>" + "x" * 300 + "</action>", None, False),
        ("", None, False),
    ],
)
def test_parse_action(text: str, action: str | None, valid: bool) -> None:
    parsed = actions.parse_action(text)
    assert (parsed.action, parsed.format_valid) == (action, valid)
    if not valid:
        assert parsed.feedback.startswith("Invalid response:") and "<action>" in parsed.feedback
    assert envs.action_parser("resrl/ALFWorld-v0")(text) == parsed


def test_prompts_window_and_corpus(env: AlfworldEnv) -> None:
    observation, info = env.reset(options={"task_id": first_game(env, "train", "pick_and_place_simple")})
    first = prompts.user_message(observation, info)
    assert f"Your task is to: {info['task']}." in first and "'go to " in first and "'help'" not in first
    history = [(observation, "go to shelf 1"), ("You arrive at shelf 1.", "look"), ("Nothing happens.", "inventory")]
    windowed = prompts.user_message("You are carrying nothing.", info, history=history, history_window=2)
    assert "[Step 2] Observation: You arrive at shelf 1.\nAction: look\n" in windowed
    assert "[Step 3] Observation: Nothing happens.\nAction: inventory\n" in windowed
    assert "[Step 1]" not in windowed and "You have taken 3 steps. Now you see:\nYou are carrying nothing." in windowed
    # the window a rollout builds shows each observation once: the last action's outcome only as the current one
    message = prompts.PROMPTS.window("You arrive at shelf 1.", info, [(observation, "go to shelf 1")])[0]["content"]
    assert isinstance(message, str) and message.count("You arrive at shelf 1.") == 1
    assert "Your earlier actions: go to shelf 1.\n" in windowed
    taken = ["look", "go to desk 1", "open drawer 1", "go to bed 1", "go to shelf 2", "look", "inventory"]
    late = prompts.PROMPTS.window("Nothing happens.", info, history[-2:], actions=taken)[0]["content"]
    assert "[Step 6] Observation: You arrive at shelf 1." in late and "[Step 7] Observation: Nothing happens." in late
    assert "You have taken 7 steps." in late and "[Step 2]" not in late
    assert "Your earlier actions: look, go to desk 1, open drawer 1, go to bed 1, go to shelf 2.\n" in late
    assert "earlier actions" not in prompts.PROMPTS.window("Nothing happens.", info, history[-2:])[0]["content"]
    start = time.perf_counter()
    corpus = prompts.corpus_texts()
    assert time.perf_counter() - start < 1.0 and len(corpus) > 200
    assert prompts.TOOLS[0]["function"]["name"] == actions.TOOL_NAME


def test_generator_is_deterministic_and_expert_checked(cache: Path, tmp_path: Path) -> None:
    draws = [sample_game("valid_unseen", 3, 4, seed=5, attempt=a) for a in range(40)]
    attempt, spec1 = next((a, s) for a, s in enumerate(draws) if s is not None)
    assert spec1 == sample_game("valid_unseen", 3, 4, seed=5, attempt=attempt)
    assert spec1.task_type == "pick_heat_then_place_in_recep" and spec1.scene in {
        f"FloorPlan{n}" for n in UNSEEN_SCENES
    }
    assert "(isHot ?o)" in spec1.problem and spec1.goal_text.split()[1] in ("a", "some")
    assert sample_game("valid_unseen", 3, 4, seed=6, attempt=attempt) != spec1
    report = generate(tmp_path / "a", {"train": 1, "valid_unseen": 1}, task_types=[1], seed=3)
    assert sum(report.kept.values()) == 2
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    assert len(files) == 7  # 2 games x 3 files + generation.json
    game = json.loads(next((tmp_path / "a" / "train").glob("*/game.tw-pddl")).read_text())
    assert game["solvable"] and 1 <= len(game["walkthrough"]) <= 50
    games = index_games((tmp_path / "a").resolve())
    assert [g.split for g in games] == ["train", "valid_unseen"]


@pytest.mark.slow
def test_vector_env_survives_a_worker_crash_and_leaks_nothing(cache: Path, tmp_path: Path) -> None:
    tmpdir = tmp_path / "worker-tmp"
    tmpdir.mkdir()
    probe = AlfworldEnv()
    task_ids = [first_game(probe, "train", "pick_and_place_simple"), first_game(probe, "train", "look_at_obj_in_light")]
    walkthroughs = [
        json.loads(next(g for g in probe.games if g.task_id == t).game_file.read_text())["walkthrough"]
        for t in task_ids
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TMPDIR", str(tmpdir))  # inherited by the workers: every temp dir they make must be gone after
        vector = AlfworldVectorEnv(2)
        results = vector.reset([{"task_id": t} for t in task_ids])
    pids = vector.worker_pids()
    assert [r.info["task_id"] for r in results] == task_ids and all(r.error is None for r in results)
    # Play env 1's walkthrough to the end; kill env 0's worker after two steps.
    step = 0
    while not results[1].done:
        if step == 2:
            os.kill(pids[0], signal.SIGKILL)
            time.sleep(0.2)
        indices = [i for i in (0, 1) if not results[i].done]
        moves = [walkthroughs[i][step] for i in indices]
        for i, result in zip(indices, vector.step(moves, indices=indices), strict=True):
            results[i] = result
        step += 1
    assert results[0].error is not None and "worker" in results[0].error
    assert results[1].error is None and results[1].info["won"] and results[1].reward == 10.0
    assert step == len(walkthroughs[1])
    # The crashed env reports an error until reset; a reset restarts its worker and replays the task.
    assert vector.step(["look"], indices=[0])[0].error is not None
    again = vector.reset([{"task_id": task_ids[0]}], indices=[0])[0]
    assert again.error is None and again.info["task_id"] == task_ids[0] and vector.restarts == 1
    new_pid = vector.worker_pids()[0]
    assert new_pid != pids[0]
    # A worker that died between calls is replaced by the next reset of its env, which then succeeds.
    os.kill(pids[1], signal.SIGKILL)
    time.sleep(0.2)
    again = vector.reset([{"task_id": task_ids[1]}], indices=[1])[0]
    assert again.error is None and vector.restarts == 2
    newer_pid = vector.worker_pids()[1]
    vector.close()
    for pid in (new_pid, newer_pid, pids[1]):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert list(tmpdir.iterdir()) == []
    with pytest.raises(EnvError, match="closed"):
        vector.step(["look", "look"])


def test_cli_generate_pack_unpack_and_play(cache: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from envs.alfworld.cli import app
    from envs.alfworld.generator import unpack

    archive = tmp_path / "games.json.gz"
    argv = [
        "generate",
        "--out",
        str(tmp_path / "out"),
        "--n",
        "1",
        "--n-eval",
        "0",
        "--task-types",
        "5",
        "--seed",
        "2",
        "--archive",
        str(archive),
    ]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    assert "packed 1 games" in result.output
    tree = unpack(archive, tmp_path / "unpacked")
    assert (tree / ".complete").read_text() == "1"
    env = AlfworldEnv(data_dir=str(tree))
    _, info = env.reset()
    assert info["task_type"] == "pick_cool_then_place_in_recep"
    terminated = False
    while not terminated:
        _, reward, terminated, truncated, info = env.step(info["expert_action"])
        assert not truncated
    assert reward == 10.0 and info["goal_condition_success"] == 1.0


def test_generate_on_demand_into_the_cache(cache: Path) -> None:
    env = AlfworldEnv(num_train_games=1, num_eval_games=0, task_types=(2,), generate_seed=4)
    assert env.games_root.parent == (cache / "alfworld").resolve()
    assert [g.task_type for g in env.games] == ["look_at_obj_in_light"]
    again = AlfworldEnv(num_train_games=1, num_eval_games=0, task_types=(2,), generate_seed=4)
    assert again.games_root == env.games_root  # generated once, then read from the cache


def test_shipped_games_are_reproduced_by_the_generator(env: AlfworldEnv) -> None:
    for record in env.games[::17]:
        index = int(record.task_id.rsplit("-", 1)[1])
        problem = (record.game_file.parent / "initial_state.pddl").read_text()
        task = next(number for number, name in TASK_TYPES.items() if name == record.task_type)
        draws = (sample_game(record.split, index, task, seed=0, attempt=a) for a in range(40))
        assert any(spec is not None and spec.problem == problem and spec.task_id == record.task_id for spec in draws)


# --- the translation cache on disk (engine.TranslationDiskCache) ------------------------------------------------------


def disk_trace(env: AlfworldEnv, task_ids: list[str]) -> list[list[object]]:
    """Play each game: mostly the expert's command, every 5th an inadmissible one, every 5th a random admissible one.

    Returns, per reset and step, the observation, admissible list, expert action, facts, reward, won flag, action
    validity and goal progress, as JSON-able lists (a subprocess returns the same thing as JSON).
    """
    trace: list[list[object]] = []
    for n, task_id in enumerate(task_ids):
        rng = random.Random(n)
        obs, info = env.reset(options={"task_id": task_id})
        trace.append([task_id, obs, info["available_actions"], info["expert_action"], info["won"]])
        for i in range(30):
            if i % 5 == 2:
                command = "take the moon from fridge 1"
            elif i % 5 == 4:
                command = rng.choice(info["available_actions"])
            else:
                command = info["expert_action"]
            obs, reward, terminated, truncated, info = env.step(command)
            trace.append(
                [
                    command,
                    obs,
                    info["available_actions"],
                    info["expert_action"],
                    sorted(fact_strings(env._state["facts"])),
                    reward,
                    info["won"],
                    info["action_valid"],
                    info["goal_condition_success"],
                    terminated,
                    truncated,
                ]
            )
            if terminated or truncated:
                break
    return trace


def disk_stats_since(before: dict[str, int]) -> dict[str, int]:
    from envs.alfworld.engine import DISK_STATS

    return {key: DISK_STATS[key] - before[key] for key in DISK_STATS}


def test_disk_translation_cache_cold_then_warm_in_a_fresh_process(
    env: AlfworldEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A game played with the disk cache empty, then in a new process with it filled, plays identically."""
    import subprocess
    import sys

    from envs.alfworld.engine import DISK_CACHE_ENV, DISK_STATS, clear_memory_caches, default_translation_dir

    monkeypatch.setenv("RESRL_CACHE", str(tmp_path))  # an empty translation cache; the games stay where they are
    monkeypatch.setenv(DISK_CACHE_ENV, "1")
    task_ids = [env.task_ids(split="valid_seen", task_type=task_type)[1] for task_type in TASK_TYPES.values()]
    clear_memory_caches()
    before = dict(DISK_STATS)
    cold_env = AlfworldEnv(data_dir=str(env.games_root))
    cold = disk_trace(cold_env, task_ids)
    cold_env.close()
    assert disk_stats_since(before) == {"hits": 0, "misses": 6, "corrupt": 0, "write_errors": 0}
    directory = default_translation_dir()
    assert directory.is_relative_to(tmp_path) and len(list(directory.iterdir())) == 6  # 1 per game, no temp files
    assert any(step[6] for step in cold if len(step) > 5), "no game was won"
    assert any(not step[7] for step in cold if len(step) > 5), "no inadmissible command was played"

    script = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_alfworld import disk_trace\n"
        "from envs.alfworld.engine import DISK_STATS\n"
        "from envs.alfworld.env import AlfworldEnv\n"
        "trace = disk_trace(AlfworldEnv(data_dir=sys.argv[1]), sys.argv[2:])\n"
        "print(json.dumps({'trace': trace, 'stats': DISK_STATS}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(env.games_root), *task_ids],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=Path(__file__).parents[2],
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    warm = json.loads(done.stdout.strip().splitlines()[-1])
    assert warm["stats"] == {"hits": 6, "misses": 0, "corrupt": 0, "write_errors": 0}
    assert warm["trace"] == json.loads(json.dumps(cold))


def test_corrupt_translation_cache_entry_is_recomputed(
    env: AlfworldEnv, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging
    import pickle

    from fast_downward.interface import pddl2sas

    from envs.alfworld.engine import (
        DISK_CACHE_ENV,
        DISK_STATS,
        TranslationDiskCache,
        clear_memory_caches,
        default_translation_dir,
    )

    record = next(g for g in env.games if g.task_type == "pick_two_obj_and_place")
    game = json.loads(record.game_file.read_text())
    domain, problem = game["pddl_domain"], game["pddl_problem"]
    calls = []

    def translate(domain: str, problem: str, **kwargs: object) -> object:
        calls.append(kwargs)
        return pddl2sas(domain, problem, **kwargs)

    cache = TranslationDiskCache(tmp_path / "translations")
    names = set()
    for optimize in (False, True):  # one folder for both: an entry is the translation of its own options
        reference_task, reference_sas = pddl2sas(domain, problem, optimize=optimize)
        kwargs = {"verbose": False, "optimize": optimize}
        calls.clear()
        cache.translate(translate, domain, problem, **kwargs)
        path = cache.path(cache.key(domain, problem, kwargs))
        good = path.read_bytes()
        flipped = bytearray(good)
        flipped[len(good) // 2] ^= 1
        for bad in (good[: len(good) // 2], b"", bytes(flipped), b"not a cache file", good[:40]):
            path.write_bytes(bad)
            caplog.clear()
            with caplog.at_level(logging.DEBUG, logger="envs.alfworld.engine"):
                task, sas = cache.translate(translate, domain, problem, **kwargs)
            assert "ignoring corrupt ALFWorld translation cache entry" in caplog.text
            assert sas == reference_sas and pickle.dumps(task) == pickle.dumps(reference_task)
            assert path.read_bytes() == good  # recomputed and overwritten
        assert len(calls) == 6
        # A hit never calls the translator, and its task (parsed again) is the translator's object graph.
        task, sas = cache.translate(lambda *a, **k: pytest.fail("translated on a hit"), domain, problem, **kwargs)
        assert sas == reference_sas and pickle.dumps(task) == pickle.dumps(reference_task)
        names.add(path.name)
        assert {p.name for p in path.parent.iterdir()} == names  # no temp file left behind

    # Through the env: every entry of a game truncated, the game still plays as before and the entries are rewritten.
    monkeypatch.setenv("RESRL_CACHE", str(tmp_path / "root"))
    monkeypatch.setenv(DISK_CACHE_ENV, "1")
    clear_memory_caches()
    first = AlfworldEnv(data_dir=str(env.games_root))
    expected = disk_trace(first, [record.task_id])
    files = sorted(default_translation_dir().iterdir())
    assert len(files) == 1  # the plain translation (it also stands in for the replanning task)
    good = [f.read_bytes() for f in files]
    for f in files:
        f.write_bytes(f.read_bytes()[:100])
    clear_memory_caches()
    before = dict(DISK_STATS)
    again = AlfworldEnv(data_dir=str(env.games_root))
    assert disk_trace(again, [record.task_id]) == expected
    assert disk_stats_since(before) == {"hits": 0, "misses": 1, "corrupt": 1, "write_errors": 0}
    assert [f.read_bytes() for f in files] == good


def test_disk_translation_cache_opt_out_and_unwritable_dir(
    env: AlfworldEnv, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    from envs.alfworld.engine import DISK_CACHE_ENV, clear_memory_caches, default_translation_dir

    task_id = first_game(env, "valid_unseen", "pick_clean_then_place_in_recep")
    monkeypatch.setenv("RESRL_CACHE", str(tmp_path))
    monkeypatch.setenv(DISK_CACHE_ENV, "0")
    clear_memory_caches()
    plain = AlfworldEnv(data_dir=str(env.games_root))
    observation, _ = plain.reset(options={"task_id": task_id})
    assert not default_translation_dir().exists()  # nothing written
    # A cache folder that cannot be made: a warning, and the game plays as without the cache.
    monkeypatch.setenv(DISK_CACHE_ENV, "1")
    default_translation_dir().parent.mkdir(parents=True)
    default_translation_dir().write_text("a file where the folder should be")
    clear_memory_caches()
    with caplog.at_level(logging.WARNING, logger="envs.alfworld.engine"):
        assert AlfworldEnv(data_dir=str(env.games_root)).reset(options={"task_id": task_id})[0] == observation
    assert "cannot write the ALFWorld translation cache" in caplog.text


def test_concurrent_writers_of_one_translation_cache_entry(tmp_path: Path) -> None:
    """Writers racing on one entry (os.replace of whole temp files): a reader sees the whole entry or none."""
    import threading

    from envs.alfworld.engine import TranslationDiskCache

    cache = TranslationDiskCache(tmp_path)
    text = "begin_version\n3\nend_version\n" + "x" * 300_000
    stop = threading.Event()
    seen: list[str | None] = []

    def write() -> None:
        for _ in range(60):
            cache.write("k", text)

    def read() -> None:
        while not stop.is_set():
            seen.append(cache.read("k"))

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write) for _ in range(3)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    reader.join()
    assert seen and {value for value in seen if value is not None} == {text}
    assert cache.read("k") == text and [p.name for p in tmp_path.iterdir()] == ["k.sas.z"]


def test_warm_cache_fills_the_entries_later_resets_read(
    env: AlfworldEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`resrl-agent alfworld warm-cache` translates each game once (in worker processes), skips cached ones, and a
    fresh env then resets those games from the disk cache alone, playing them as before."""
    from typer.testing import CliRunner

    from envs.alfworld.cli import app
    from envs.alfworld.engine import DISK_CACHE_ENV, DISK_STATS, clear_memory_caches, warm_translation_cache

    monkeypatch.setenv("RESRL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(DISK_CACHE_ENV, "1")
    games = [next(g for g in env.games if g.task_type == t and g.split == "valid_seen") for t in TASK_TYPES.values()]
    tree = tmp_path / "games"
    for game in games[:3]:  # a tree of its own for the command: three of the six games
        shutil.copytree(game.game_file.parent, tree / "valid_seen" / game.game_file.parent.name)
    result = CliRunner().invoke(app, ["warm-cache", "--data-dir", str(tree), "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "3 games: 3 translated, 0 already cached" in result.output
    seen: list[bool] = []
    counts = warm_translation_cache([g.game_file for g in games], workers=1, on_game=seen.append)
    assert counts == {"games": 6, "computed": 3, "cached": 3} and sorted(seen) == [False] * 3 + [True] * 3

    task_ids = [g.task_id for g in games]
    clear_memory_caches()
    before = dict(DISK_STATS)
    warm = disk_trace(AlfworldEnv(data_dir=str(env.games_root)), task_ids)
    assert disk_stats_since(before) == {"hits": 6, "misses": 0, "corrupt": 0, "write_errors": 0}
    monkeypatch.setenv(DISK_CACHE_ENV, "0")
    clear_memory_caches()
    assert warm == disk_trace(AlfworldEnv(data_dir=str(env.games_root)), task_ids)  # the same play as translating

    result = CliRunner().invoke(app, ["warm-cache", "--data-dir", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "no ALFWorld games" in result.output
