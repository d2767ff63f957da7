"""resrl/BabyAI-v0 on the real minigrid: task ids and splits, observation text, actions, expert, prompts, threads.

The verbatim observations below were derived once by running and checked by hand against minigrid's own grid picture
(``pprint_grid``, asserted alongside: ``>>``/``<<``/``^^``/``VV`` is the agent facing east/west/north/south; a cell is
type letter + colour letter, K key, A ball, B box, D door, W wall; G is green or grey, the text tells which).
``test_positions_match_the_grid`` checks every "You see" line of many states against the absolute grid, independently
of the renderer.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.babyai.actions import ACTIONS, parse_action
from envs.babyai.env import SEED_OFFSETS, BabyAIEnv, describe, levels
from envs.babyai.prompts import EXAMPLES, PROMPTS, SYSTEM, corpus_texts, user_message
from envs.base import EnvError, Parsed, check_info


def expert_episode(
    env: BabyAIEnv, task_id: str, *, detour: Sequence[str] = ()
) -> tuple[list[str], str, dict[str, Any]]:
    """Play ``detour`` then the expert's actions to the end, checking every info: actions, last observation, info."""
    _, info = env.reset(options={"task_id": task_id})
    check_info(info)
    actions: list[str] = []
    done = False
    while not done:
        assert "expert_action" in info, f"{task_id}: no expert action at step {len(actions)}"
        action = detour[len(actions)] if len(actions) < len(detour) else info["expert_action"]
        assert action in ACTIONS
        actions.append(action)
        observation, reward, terminated, truncated, info = env.step(action)
        check_info(info)
        assert reward == (1.0 if info["won"] else 0.0)
        done = terminated or truncated
    return actions, observation, info


# ---------------------------------------------------------------------------------------------------- registration
def test_registered_and_check_env() -> None:
    assert "resrl/BabyAI-v0" in envs.env_ids()
    env = gym.make("resrl/BabyAI-v0")
    check_env(env.unwrapped, skip_render_check=True)
    assert isinstance(env.unwrapped, BabyAIEnv) and env.unwrapped.thread_safe
    env.close()
    assert {"GoToObj", "GoToLocal", "PickupLoc", "PutNextLocal", "GoToObjS6"} <= set(levels())
    assert BabyAIEnv(level="GoToObjS6").env_id == "BabyAI-GoToObjS6-v1"  # a level without a v0


def test_bad_configuration_is_an_env_error() -> None:
    with pytest.raises(EnvError, match="unknown BabyAI level 'GoToNowhere'") as error:
        BabyAIEnv(level="GoToNowhere")
    assert "GoToObj" in str(error.value) and "GoToLocal" in str(error.value)
    for kwargs in ({"max_steps": 0}, {"num_train": -1}, {"num_valid": 10**10}, {"max_steps": 2.5}):
        with pytest.raises(EnvError):
            BabyAIEnv(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------- task ids
def test_task_ids_splits_are_disjoint_and_deterministic() -> None:
    env = BabyAIEnv(num_train=50, num_valid=20, num_test=10)
    train, valid, test = env.task_ids(), env.task_ids(split="valid"), env.task_ids(split="test")
    assert train == env.task_ids(split="train") == [f"train-{i}" for i in range(50)]
    assert (len(valid), len(test)) == (20, 10) and valid[3] == "valid-3"
    assert len(BabyAIEnv().task_ids()) == 100_000
    seeds = [{env.task_seed(t) for t in ids} for ids in (train, valid, test)]
    assert len(seeds[0] | seeds[1] | seeds[2]) == 80  # disjoint
    assert env.task_seed("train-7") == 7 and env.task_seed("valid-7") == 1_000_000_007
    assert env.task_seed("test-7") == 2_000_000_007 == SEED_OFFSETS["test"] + 7
    with pytest.raises(EnvError, match="unknown split"):
        env.task_ids(split="eval")


@pytest.mark.parametrize("bad", ["train-50", "train-01", "train--1", "valid-20", "foo", "train", "Train-1", 3, None])
def test_bad_task_ids_are_env_errors_with_a_hint(bad: Any) -> None:
    env = BabyAIEnv(num_train=50, num_valid=20, num_test=10)
    with pytest.raises(EnvError) as error:
        env.task_seed(bad)
    assert error.value.hint and "train-0..train-49" in error.value.hint
    if bad is not None:  # None is "no task id": a train task is drawn
        with pytest.raises(EnvError):
            env.reset(options={"task_id": bad})
    with pytest.raises(EnvError, match="unknown reset options"):
        env.reset(options={"level": "GoToLocal"})


def test_the_task_id_determines_the_layout() -> None:
    a, b = BabyAIEnv(level="GoToLocal"), BabyAIEnv(level="GoToLocal")
    first = a.reset(options={"task_id": "valid-5"})
    a.reset(options={"task_id": "train-9"})
    assert b.reset(options={"task_id": "valid-5"}) == first == a.reset(options={"task_id": "valid-5"})
    assert a.minigrid_env.pprint_grid() == b.minigrid_env.pprint_grid()
    layouts = {
        a.reset(options={"task_id": t})[0] + a.minigrid_env.pprint_grid() for t in ("train-5", "valid-5", "test-5")
    }
    assert len(layouts) == 3
    # Without a task id: a task of the split, drawn with the env's RNG (so reset(seed) is reproducible).
    drawn = [a.reset(seed=s)[1]["task_id"] for s in (1, 2, 1)]
    assert drawn[0] == drawn[2] and all(t.startswith("train-") for t in drawn)
    assert a.reset(seed=3, options={"split": "test"})[1]["task_id"].startswith("test-")


# ---------------------------------------------------------------------------------------------------- observations
GOTOLOCAL_TRAIN_0 = """\
Mission: go to the green ball
You see a yellow key 1 step forward and 1 step left.
You see a grey ball 1 step forward and 1 step right.
You see a green ball 3 steps forward.
You see a purple key 2 steps forward and 1 step left.
You see a green key 2 steps forward and 1 step right.
You see a red box 2 steps forward and 2 steps right.
You see a grey ball 5 steps forward and 1 step right.
You see a green key 4 steps forward and 2 steps right.
You see a wall 6 steps forward.
You see a wall 2 steps left.
You carry nothing."""

# The agent at (6, 5) facing west (<<): forward is -x, right is north (-y), left is south (+y). E.g. the yellow key
# at (5, 6): 1 forward, 1 left; the green ball at (3, 5): 3 forward; the wall x = 0: 6 forward; y = 7: 2 left; the
# north wall (5 right) is outside the 7x7 view (3 cells either side).
GOTOLOCAL_TRAIN_0_GRID = """\
WGWGWGWGWGWGWGWG
WG            WG
WG            WG
WG  KG  BR    WG
WGAG    KGAG  WG
WG    AG    <<WG
WG      KPKY  WG
WGWGWGWGWGWGWGWG"""


def test_known_layout_verbatim() -> None:
    env = BabyAIEnv(level="GoToLocal")
    observation, info = env.reset(options={"task_id": "train-0"})
    assert observation == GOTOLOCAL_TRAIN_0
    assert env.minigrid_env.pprint_grid() == GOTOLOCAL_TRAIN_0_GRID
    assert env.render() is None
    assert info["mission"] == "go to the green ball" and info["level"] == "GoToLocal" and info["seed"] == 0
    assert info["available_actions"] == list(ACTIONS) and info["expert_action"] == "go forward"
    assert (info["task_id"], info["step"], info["won"], info["action_valid"]) == ("train-0", 0, False, True)


def test_fixed_action_sequence_gives_known_observations_and_rewards() -> None:
    """GoToObj train-0: agent (6, 5) facing west, the green key at (4, 4)."""
    env = BabyAIEnv(level="GoToObj", render_mode="ansi")
    observation, _ = env.reset(options={"task_id": "train-0"})
    assert observation == (
        "Mission: go to the green key\nYou see a green key 2 steps forward and 1 step right.\n"
        "You see a wall 6 steps forward.\nYou see a wall 2 steps left.\nYou carry nothing."
    )
    key, wall = "You see a green key", "You see a wall"
    ahead = [f"{wall} 5 steps forward.", f"{wall} 2 steps left."]
    expected = [  # action, the lines between the mission and "You carry nothing.", reward, terminated
        ("turn left", [f"{wall} 2 steps forward.", f"{wall} 1 step left."], 0.0, False),  # facing south: left is east
        ("turn right", [f"{key} 2 steps forward and 1 step right.", f"{wall} 6 steps forward.", ahead[1]], 0.0, False),
        ("Go   FORWARD", [f"{key} 1 step forward and 1 step right.", *ahead], 0.0, False),
        ("pick up", [f"{key} 1 step forward and 1 step right.", *ahead], 0.0, False),  # nothing in front: no change
        ("go forward", [f"{key} 1 step right.", f"{wall} 4 steps forward.", f"{wall} 2 steps left."], 0.0, False),
        ("turn right", [f"{key} 1 step forward.", f"{wall} 5 steps forward.", f"{wall} 3 steps right."], 1.0, True),
    ]  # fmt: skip
    for step, (action, lines, reward, terminated) in enumerate(expected, start=1):
        observation, r, term, trunc, info = env.step(action)
        assert observation == "\n".join(["Mission: go to the green key", *lines, "You carry nothing."]), action
        assert (r, term, trunc, info["won"]) == (reward, terminated, False, terminated)
        assert info["action_valid"] and info["step"] == step
        assert env.render() == observation
    assert "expert_action" not in info  # the episode is over
    with pytest.raises(EnvError, match="finished episode"):
        env.step("go forward")


def test_carrying_and_doors_are_described() -> None:
    env = BabyAIEnv(level="PickupLoc")
    actions, observation, info = expert_episode(env, "train-0")
    carried = env.minigrid_env.carrying
    assert actions[-1] == "pick up" and info["won"] and info["mission"] == f"pick up the {carried.color} {carried.type}"
    assert observation.endswith(f"You carry a {carried.color} {carried.type}.")
    assert observation == describe(env.minigrid_env)
    opened = BabyAIEnv(level="OpenDoor")
    observation, _ = opened.reset(options={"task_id": "train-0"})
    assert "You see a closed red door 1 step left." in observation
    actions, observation, info = expert_episode(opened, "train-0")
    assert actions[-1] == "toggle" and info["won"] and "You see an open yellow door 1 step forward." in observation
    locked = BabyAIEnv(level="UnlockLocal")
    observation, _ = locked.reset(options={"task_id": "train-6"})
    assert "You see a locked red door 2 steps forward and 2 steps right." in observation


_SEE_RE = re.compile(r"You see (?:a|an) (?:(open|closed|locked) )?(\w+) (ball|box|key|door) (.+)\.")
_WALL_RE = re.compile(r"You see a wall (.+)\.")
_WHERE_RE = re.compile(r"(?:(\d+) steps? forward)?(?: and )?(?:(\d+) steps? (left|right))?")


def test_positions_match_the_grid() -> None:
    """Every "You see" line names what the absolute grid holds at agent + forward * dir + lateral * right."""
    rng = random.Random(0)
    checked = 0
    for level in ("GoToLocal", "PutNextLocal", "OpenDoor"):
        env = BabyAIEnv(level=level, max_steps=12)
        for k in range(8):
            observation, info = env.reset(options={"task_id": f"train-{k}"})
            done = False
            while True:
                base = env.minigrid_env
                lines = observation.split("\n")
                assert lines[0] == f"Mission: {base.mission}" and lines[-1].startswith("You carry ")
                for line in lines[1:-1]:
                    wall = _WALL_RE.fullmatch(line)
                    state, color, kind, where = (
                        ("", "grey", "wall", wall.group(1)) if wall else _SEE_RE.fullmatch(line).groups()
                    )  # type: ignore[union-attr]
                    forward, lateral, side = _WHERE_RE.fullmatch(where).groups()  # type: ignore[union-attr]
                    f, s = int(forward or 0), int(lateral or 0) * (1 if side == "right" else -1)
                    assert (f, s) != (0, 0) and 0 <= f <= 6 and abs(s) <= 3
                    assert not wall or f == 0 or s == 0  # walls only straight ahead, left or right
                    cell = base.grid.get(*(np.array(base.agent_pos) + f * base.dir_vec + s * base.right_vec))
                    assert (cell.color, cell.type) == (color, kind), (level, k, line)
                    if kind == "door":
                        assert state == ("open" if cell.is_open else "locked" if cell.is_locked else "closed")
                    checked += 1
                if done:
                    break
                action = rng.choice(ACTIONS) if rng.random() < 0.5 else info["expert_action"]
                observation, _, terminated, truncated, info = env.step(action)
                done = terminated or truncated
    assert checked > 300


def test_walls_are_the_nearest_visible_in_each_line() -> None:
    env = BabyAIEnv(level="GoToLocal")
    rng = random.Random(1)
    env.reset(options={"task_id": "train-2"})
    for _ in range(40):
        base = env.minigrid_env
        observation = describe(base)
        for name, vec, reach in (
            ("forward", base.dir_vec, 6),
            ("left", -base.right_vec, 3),
            ("right", base.right_vec, 3),
        ):
            nearest = None  # the first cell in the line that hides what is behind it, if it is a wall
            for d in range(1, reach + 1):
                cell = base.grid.get(*(np.array(base.agent_pos) + d * vec))  # boundary walls come before the edge
                if cell is not None and not cell.see_behind():
                    nearest = d if cell.type == "wall" else None
                    break
            said = re.search(rf"You see a wall (\d+) steps? {name}\.", observation)
            assert (int(said.group(1)) if said else None) == nearest, (name, observation)
        if any(env.step(rng.choice(ACTIONS[:3]))[2:4]):
            env.reset(options={"task_id": "train-3"})


def test_anchor_equal_for_equal_states_different_for_different() -> None:
    env = BabyAIEnv(level="GoToObj", max_steps=50)
    _, info0 = env.reset(options={"task_id": "train-3"})
    anchors = [info0["anchor"]]
    for _ in range(4):
        anchors.append(env.step("turn left")[4]["anchor"])
    assert anchors[4] == anchors[0] and len(set(anchors[:4])) == 4  # four headings, then back where it started
    other = BabyAIEnv(level="GoToObj")
    assert other.reset(options={"task_id": "train-3"})[1]["anchor"] == info0["anchor"]  # across instances
    assert other.reset(options={"task_id": "train-4"})[1]["anchor"] != info0["anchor"]


# ---------------------------------------------------------------------------------------------------- actions
def test_unknown_action_changes_nothing_but_counts_as_a_step() -> None:
    env = BabyAIEnv(level="GoToLocal", max_steps=3)
    observation, info = env.reset(options={"task_id": "train-0"})
    grid = env.minigrid_env.pprint_grid()
    for step, action in enumerate(["done", "jump", ""], start=1):
        result = env.step(action)
        assert result[:3] == (observation, 0.0, False)
        assert result[4]["action_valid"] is False and result[4]["anchor"] == info["anchor"]
        assert result[4]["expert_action"] == info["expert_action"] and result[4]["step"] == step
        assert env.minigrid_env.pprint_grid() == grid
        assert result[3] is (step == 3)  # truncated at max_steps, invalid steps included
    env.reset(options={"task_id": "train-0"})
    with pytest.raises(EnvError, match="must be a str"):
        env.step(2)  # type: ignore[arg-type]


def test_truncation_at_our_max_steps_not_minigrids() -> None:
    env = BabyAIEnv(level="GoToObj", max_steps=100)  # minigrid's own limit for GoToObj is 64 steps
    env.reset(options={"task_id": "train-0"})
    for step in range(1, 101):
        _, reward, terminated, truncated, info = env.step("turn left")
        assert (reward, terminated, truncated) == (0.0, False, step == 100)
        assert "expert_action" in info
    # A win after minigrid's 64 steps still pays 1.0 (minigrid's reward would be 1 - 0.9 * steps / max_steps).
    actions, _, info = expert_episode(BabyAIEnv(level="GoToObj", max_steps=100), "train-0", detour=["turn left"] * 68)
    assert info["won"] and len(actions) == 68 + 3


@pytest.mark.parametrize(
    ("text", "action"),
    [
        ("<action>go forward</action>", "go forward"),
        ("<think>the key is left</think> <action> Turn   LEFT </action>", "turn left"),
        ('<tool_call>{"name": "act", "arguments": {"action": "pick up"}}</tool_call>', "pick up"),
        ('{"tool_calls": [{"function": {"name": "act", "arguments": "{\\"action\\": \\"toggle\\"}"}}]}', "toggle"),
        ("<action>fly to the moon</action>", "fly to the moon"),  # format-valid; the env says action_valid False
    ],
)
def test_parse_action_valid(text: str, action: str) -> None:
    assert parse_action(text) == Parsed(action, True)


@pytest.mark.parametrize(
    "text",
    [
        "go forward",
        "<action>go forward",
        "<action>go forward</action><action>drop</action>",
        "<action>   </action>",
        "<think>hmm <action>drop</action>",
        '<tool_call>{"name": "act", "arguments": {"action": 3}}</tool_call>',
        '<tool_call>{"name": "move", "arguments": {"action": "drop"}}</tool_call>',
        "<tool_call>{not json</tool_call>",
        '{"tool_calls": 5}',
        "<action>" + "x" * 500 + "</action>",
        None,
        42,
        ["<action>drop</action>"],
        {"action": "drop"},
        "",
        "\x00\uffff",
    ],
)
def test_parse_action_invalid_never_raises(text: Any) -> None:
    parsed = parse_action(text)
    assert parsed.action is None and parsed.format_valid is False
    assert parsed.feedback.startswith("Invalid response:") and "<action>go forward</action>" in parsed.feedback


# ---------------------------------------------------------------------------------------------------- expert
@pytest.mark.parametrize(
    ("level", "steps"),
    [("GoToObj", [3, 6, 7, 5, 3, 3, 2, 6, 7, 2]), ("GoToLocal", [2, 2, 6, 6, 5, 5, 7, 1, 3, 2])],
)
def test_expert_wins_known_layouts_in_known_steps(level: str, steps: list[int]) -> None:
    env = BabyAIEnv(level=level)
    assert [len(expert_episode(env, f"train-{k}")[0]) for k in range(10)] == steps


@pytest.mark.parametrize("level", ["GoToObj", "GoToLocal", "PickupLoc", "PutNextLocal"])
def test_expert_wins_after_random_detours(level: str) -> None:
    """5 random actions, then the expert: a bot per episode told each action plans back (README: 200/200)."""
    env = BabyAIEnv(level=level, max_steps=64)
    rng = random.Random(0)
    for k in range(15):
        detour = [rng.choice(ACTIONS) for _ in range(5)]
        if "toggle" in detour and level.startswith("Pickup"):
            continue  # toggling a box the mission names makes the task unsolvable (tested below)
        _, _, info = expert_episode(env, f"valid-{k}", detour=detour)
        assert info["won"], (level, k, detour)


def test_no_expert_once_the_mission_box_is_opened() -> None:
    """PickupLoc train-2 ("pick up the yellow box"): the expert walks to the box; toggling it opens it (it is gone)."""
    env = BabyAIEnv(level="PickupLoc", max_steps=30)
    _, info = env.reset(options={"task_id": "train-2"})
    assert info["mission"] == "pick up the yellow box"
    while info["expert_action"] != "pick up":
        _, _, _, _, info = env.step(info["expert_action"])
    _, reward, terminated, truncated, info = env.step("toggle")
    assert (reward, terminated, info["action_valid"]) == (0.0, False, True) and "expert_action" not in info
    while not (terminated or truncated):  # the rest of the episode: no expert, no exception
        _, reward, terminated, truncated, info = env.step("go forward")
        assert "expert_action" not in info


# ---------------------------------------------------------------------------------------------------- prompts
def test_prompts_window_and_concat() -> None:
    for action in ACTIONS:
        assert action in SYSTEM
    assert "<action>go forward</action>" in SYSTEM
    env = BabyAIEnv(level="GoToLocal")
    observation, info = env.reset(options={"task_id": "train-0"})
    assert PROMPTS.system(info) == SYSTEM
    assert PROMPTS.initial(observation, info) == [{"role": "user", "content": observation}]
    assert PROMPTS.reply(observation, info) == [{"role": "user", "content": observation}]
    assert PROMPTS.window(observation, info, []) == [{"role": "user", "content": observation}]
    history = [("o1", "turn left"), ("o2", "go forward")]
    (message,) = PROMPTS.window(observation, info, history, actions=["drop", "turn left", "go forward"])
    assert message["content"] == observation + "\nYour last actions: turn left, go forward."
    (message,) = PROMPTS.window(observation, info, history[-1:])
    assert message["content"] == observation + "\nYour last action: go forward."
    assert user_message(observation, info) == observation


def test_corpus_texts_are_static_and_import_no_minigrid() -> None:
    code = (
        "import sys, envs, envs.babyai.prompts as p, envs.babyai.actions\n"
        "texts = p.corpus_texts()\n"
        "assert 'minigrid' not in sys.modules, 'minigrid imported'\n"
        "print(len(texts))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) >= 8
    texts = corpus_texts()
    assert SYSTEM in texts and "<action>pick up</action>" in texts
    assert "Mission: go to the purple box\n" in texts[2] and texts[-2].endswith(
        "Your last actions: turn left, go forward."
    )


@pytest.mark.parametrize(("level", "task_id", "steps", "text"), EXAMPLES)
def test_the_corpus_examples_are_what_the_env_renders(level: str, task_id: str, steps: int, text: str) -> None:
    env = BabyAIEnv(level=level)
    observation, info = env.reset(options={"task_id": task_id})
    for _ in range(steps):
        observation, *_, info = env.step(info["expert_action"])
    assert observation == text


# ---------------------------------------------------------------------------------------------------- threads, stdout
def _trajectory(level: str, task_ids: list[str], seed: int) -> list[Any]:
    env = BabyAIEnv(level=level, max_steps=15)
    rng = random.Random(seed)
    out: list[Any] = []
    for task_id in task_ids:
        observation, info = env.reset(options={"task_id": task_id})
        out.append((observation, info.get("expert_action")))
        done = False
        while not done:
            action = rng.choice(ACTIONS) if rng.random() < 0.3 else info.get("expert_action", "drop")
            observation, reward, terminated, truncated, info = env.step(action)
            out.append((action, observation, reward, info.get("expert_action"), info["anchor"]))
            done = terminated or truncated
    return out


def test_envs_in_threads_play_exactly_as_serial_ones() -> None:
    jobs = [("PutNextLocal", [f"train-{i}" for i in range(4 * k, 4 * k + 4)], k) for k in range(6)]
    serial = [_trajectory(*job) for job in jobs]
    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(lambda job: _trajectory(*job), jobs)) == serial


def test_reset_prints_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    env = BabyAIEnv(level="PutNextLocal")
    for task_id in ("train-4", "train-13", "train-14"):  # minigrid rejects samples here ("Sampling rejected: ...")
        env.reset(options={"task_id": task_id})
    assert capfd.readouterr() == ("", "")
