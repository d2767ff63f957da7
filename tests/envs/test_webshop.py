"""resrl/WebShop-v0: search engine, pages and observations, transitions, rewards, expert, actions and prompts.

The shipped catalogue and its BM25 index are built once per process (``shared_engine``), so every env here shares
them. Reward components are tested by hand in tests/envs/webshop/test_webshop_reward.py.
"""

from __future__ import annotations

import math
import random

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.base import check_info
from envs.webshop.actions import parse_action
from envs.webshop.env import WebShopEnv
from envs.webshop.prompts import PROMPTS, corpus_texts, format_observation, task_text, user_message
from envs.webshop.search import SearchEngine, analyze, page_of, product_document

GOAL0 = "find me counter height stools that is adjustable height with color: black, and price lower than 100.00 dollars"


@pytest.fixture(scope="module")
def env() -> WebShopEnv:
    return WebShopEnv()


def play(env: WebShopEnv, actions: list[str]) -> tuple[str, float, bool, bool, dict]:
    result = None
    for action in actions:
        result = env.step(action)
        check_info(result[4])
    assert result is not None
    return result


# ---------------------------------------------------------------------------------------------------- search
def test_analyzer_is_lucene_english_like() -> None:
    assert analyze("Men's 3.5oz T-Shirts, 1,000 pieces; the USB-C running shoes") == [
        "men",
        "3.5oz",
        "t",
        "shirt",
        "1,000",
        "piec",
        "usb",
        "c",
        "run",
        "shoe",
    ]
    assert analyze("the and of with") == []


def _tiny(titles: list[str]) -> list[dict]:
    return [{"Title": t, "Description": "", "BulletPoints": [], "options": {}} for t in titles]


def test_bm25_scores_match_lucene_formula() -> None:
    docs = _tiny(["Red running shoes", "Blue shoes", "hat"])
    docs[1].update(Description="shoes for running fast", BulletPoints=["x"], options={"color": ["red", "blue"]})
    assert product_document(docs[1]) == "blue shoes shoes for running fast x color: red, blue"
    engine = SearchEngine(docs)
    # Lucene BM25, k1 0.9, b 0.4: idf = ln(1 + (N - df + .5)/(df + .5)); tf / (tf + k1 (1 - b + b dl/avgdl)).
    tokens = [analyze(product_document(d)) for d in docs]  # lengths 3, 9, 1; avgdl 13/3
    avgdl = sum(map(len, tokens)) / 3
    idf = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))  # "run" and "shoe" are in 2 of 3 documents

    def bm25(tf: int, dl: int) -> float:
        return idf * tf / (tf + 0.9 * (1 - 0.4 + 0.4 * dl / avgdl))

    expected = [bm25(1, 3) + bm25(1, 3), bm25(1, 9) + bm25(2, 9), 0.0]
    np.testing.assert_allclose(engine.scores("running shoes"), expected, rtol=1e-5)
    assert engine.search("running shoes") == [0, 1]  # the hat scores 0: not a hit
    assert engine.search("zebra") == [] and engine.search("the") == []


def test_ties_keep_catalogue_order_and_top_50() -> None:
    # 30 "green lamp" documents (every 4th) and 90 "lamp <i>" ones, all of length 2: equal scores within each kind.
    engine = SearchEngine(_tiny(["green lamp" if i % 4 == 0 else f"lamp {i}" for i in range(120)]))
    hits = engine.search("green lamp")
    assert len(hits) == 50
    assert hits == list(range(0, 120, 4)) + [i for i in range(120) if i % 4][:20]
    assert page_of(hits, 1) == hits[:10] and page_of(hits, 5) == hits[40:] and page_of(hits, 6) == []


# ---------------------------------------------------------------------------------------------------- pages
def test_expert_episode_on_goal_0(env: WebShopEnv) -> None:
    observation, info = env.reset(options={"task_id": "webshop-0"})
    check_info(info)
    assert observation == f"WebShop [SEP] Instruction: [SEP] {GOAL0} [SEP] Search"
    assert info["available_actions"] == ["search[<your query>]"] and info["clickables"] == ["search"]
    assert info["has_search_bar"] and info["task_id"] == "webshop-0"
    actions = []
    while True:
        action = info["expert_action"]
        actions.append(action)
        observation, reward, terminated, truncated, info = env.step(action)
        check_info(info)
        if terminated or truncated:
            break
    assert actions == [
        "search[find me counter height stools that is adjustable height with color: black]",
        "click[b0xseja6c0]",
        "click[black]",
        "click[buy now]",
    ]
    assert (reward, terminated, truncated, info["won"], info["score"]) == (10.0, True, False, True, 1.0)
    assert info["reward_info"]["total"] == 1.0 and info["asin"] == "B0XSEJA6C0"
    assert info["expert_action"] is None and info["available_actions"] == []
    assert observation == "Thank you for shopping with us! [SEP] Your score (min 0.0, max 1.0) [SEP] 1.0"
    with pytest.raises(envs.EnvError):
        env.step("click[buy now]")


def test_results_item_and_sub_pages() -> None:
    env = WebShopEnv(max_steps=50)  # this tour takes more than 15 steps
    env.reset(options={"task_id": 0})
    observation, reward, _, _, info = env.step("search[counter height stools]")
    head = f"Instruction: [SEP] {GOAL0} [SEP] Back to Search"
    assert observation.startswith(
        f"{head} [SEP] Page 1 (Total results: 50) [SEP] Next > [SEP] B03BTDH48B [SEP] Lytalgro Counter Height Bar "
        "Stools [SEP] $71.05 [SEP] B03NSL8Z60 [SEP] Movor Classic Counter Height Bar Stools, Adjustable Height "
        "[SEP] $148.19 to $199.58"
    )
    assert observation.count(" [SEP] B0") == 10 and reward == 0.0
    assert info["clickables"][:3] == ["back to search", "next >", "b03btdh48b"] and len(info["clickables"]) == 12
    observation, *_, info = env.step("click[next >]")
    assert "Page 2 (Total results: 50) [SEP] < Prev [SEP] Next >" in observation
    assert info["clickables"][:3] == ["back to search", "< prev", "next >"]
    observation, *_ = play(env, ["click[next >]"] * 4)  # page 6: past the end, Next > still shown, no items
    assert observation == f"{head} [SEP] Page 6 (Total results: 50) [SEP] < Prev [SEP] Next >"
    play(env, ["click[< prev]"] * 5)
    observation, *_, info = env.step("click[b0gjdy5xd2]")
    assert observation == (
        f"{head} [SEP] < Prev [SEP] color [SEP] black [SEP] grey [SEP] brown [SEP] Toelpex Deluxe Counter Height Bar "
        "Stools, Adjustable Height [SEP] Price: $219.00 [SEP] Rating: N.A. [SEP] Description [SEP] Features [SEP] "
        "Reviews [SEP] Buy Now"
    )
    assert info["clickables"] == [
        "back to search",
        "< prev",
        "description",
        "features",
        "reviews",
        "buy now",
        "black",
        "grey",
        "brown",
    ]
    observation, *_ = play(env, ["click[grey]", "click[features]"])
    assert observation == (
        f"{head} [SEP] < Prev [SEP] ADJUSTABLE HEIGHT: gas lift adjusts seat height [SEP] "
        "SWIVEL: comfortable padded seat [SEP] QUALITY CHECKED: every item is inspected before shipping"
    )
    observation, *_ = play(env, ["click[< prev]", "click[reviews]"])
    assert observation == f"{head} [SEP] < Prev"  # reviews are hidden, as on the original's master
    play(env, ["click[< prev]"])
    assert env.shop.state.options == {"color": "grey"}  # options survive a sub-page
    observation, *_ = play(env, ["click[< prev]"])  # back to the same results page, options cleared
    assert "Page 1 (Total results: 50)" in observation and env.shop.state.options == {}
    observation, *_, info = env.step("click[back to search]")
    assert observation == f"WebShop [SEP] Instruction: [SEP] {GOAL0} [SEP] Search" and info["has_search_bar"]


def test_search_works_on_every_page_and_buying_scores(env: WebShopEnv) -> None:
    env.reset(options={"task_id": 0})
    play(env, ["search[bar stools]", "click[b0gjdy5xd2]", "click[description]"])
    observation, *_, info = env.step("search[counter height stools]")  # from a sub-page
    assert info["action_valid"] and info["page"] == "results" and "Page 1 (Total results: 50)" in observation
    # Wrong colour and over the price limit: (1 attribute + 0 options + 0 price) / 3.
    _, reward, terminated, _, info = play(env, ["click[b0gjdy5xd2]", "click[grey]", "click[buy now]"])
    assert terminated and reward == 0.0 and not info["won"]
    assert info["score"] == pytest.approx(1 / 3) and info["reward_info"]["r_price"] is False
    scored = WebShopEnv(reward_mode="score")
    scored.reset(options={"task_id": 0})
    _, reward, *_ = play(
        scored, ["search[counter height stools]", "click[b0gjdy5xd2]", "click[black]", "click[buy now]"]
    )
    assert reward == pytest.approx(2 / 3)  # the right colour now, still over price


@pytest.mark.parametrize(
    "action",
    [
        "click[search]",
        "search[]",
        "click[]",
        "click[b0xseja6c0]",
        "buy now",
        "click[next >]",
        "Search[shoes]",
        "",
        "go north",
    ],
)
def test_invalid_actions_change_nothing(env: WebShopEnv, action: str) -> None:
    observation, info = env.reset(options={"task_id": 0})
    state = (env.shop.state.page, env.shop.state.hits)
    after, reward, terminated, truncated, step_info = env.step(action)
    assert (after, reward, terminated, truncated) == (observation, 0.0, False, False)
    assert not step_info["action_valid"] and step_info["anchor"] == info["anchor"]
    assert (env.shop.state.page, env.shop.state.hits) == state


def test_truncated_after_15_steps(env: WebShopEnv) -> None:
    env.reset(options={"task_id": 1})
    for step in range(1, 16):
        _, reward, terminated, truncated, info = env.step("click[nothing]")
        assert (reward, terminated, truncated) == (0.0, False, step == 15) and info["step"] == step


def test_text_rich_mode() -> None:
    rich = WebShopEnv(observation_mode="text_rich")
    observation, _ = rich.reset(options={"task_id": 0})
    assert observation == f"WebShop\nInstruction:\n{GOAL0}\n[button] Search [button_]\n"
    observation, *_ = play(rich, ["search[counter height stools]", "click[b03btdh48b]", "click[< prev]"])
    lines = observation.split("\n")
    assert lines[:5] == [
        "Instruction:",
        GOAL0,
        "[button] Back to Search [button_]",
        "Page 1 (Total results: 50)",
        "[button] Next > [button_]",
    ]
    assert lines[5:9] == [
        "",
        "[clicked button] B03BTDH48B [clicked button_]",
        "Lytalgro Counter Height Bar Stools",
        "$71.05",
    ]
    assert "\n[button] B03NSL8Z60 [button_]\n" in observation
    observation, *_ = play(rich, ["click[b0gjdy5xd2]", "click[grey]"])
    assert observation.startswith(f"You have clicked grey.\nInstruction:\n{GOAL0}\n")
    assert "color\n  [button] black [button_]\n  [clicked button] grey [clicked button_]\n" in observation


def test_anchors_are_history_free_within_a_task(env: WebShopEnv) -> None:
    _, first = env.reset(options={"task_id": 0})
    _, _, _, _, searched = env.step("search[stools]")
    _, _, _, _, back = env.step("click[back to search]")
    assert back["anchor"] == first["anchor"] != searched["anchor"]
    _, other = env.reset(options={"task_id": 1})
    assert other["anchor"] != first["anchor"]  # the task identity is hashed in


def test_reset_draws_and_task_ids(env: WebShopEnv) -> None:
    assert env.reset(seed=3)[1]["task_id"] == env.reset(seed=3)[1]["task_id"]
    drawn = {env.reset(options={"split": "test"})[1]["task_id"] for _ in range(20)}
    assert all(int(t.split("-")[1]) < 500 for t in drawn)
    assert len(env.task_ids("test")) == 500 and len(env.task_ids()) == 9907
    for bad in ("webshop-99999", "alfworld-1", -1):
        with pytest.raises(envs.EnvError):
            env.reset(options={"task_id": bad})
    with pytest.raises(envs.EnvError):
        WebShopEnv(max_steps=0)


def test_check_env_and_gym_make() -> None:
    made = gym.make("resrl/WebShop-v0", observation_mode="text", num_products=300)
    assert isinstance(made.unwrapped, WebShopEnv) and len(made.unwrapped.catalogue.products) == 300
    check_env(made.unwrapped, skip_render_check=True)
    made.close()


def test_expert_wins_on_sampled_goals(env: WebShopEnv) -> None:
    rng = random.Random(0)
    task_ids = rng.sample(range(len(env.catalogue.goals)), 200)
    wins, steps = 0, []
    for task_id in task_ids:
        _, info = env.reset(options={"task_id": task_id})
        for step in range(1, 16):  # noqa: B007 - the step count is used after the loop
            *_, terminated, truncated, info = env.step(info["expert_action"])
            if terminated or truncated:
                break
        wins += info["won"]
        steps.append(step)
    assert wins / len(task_ids) >= 0.95
    assert wins == 200 and max(steps) <= 9


def test_random_policy_scores_low(env: WebShopEnv) -> None:
    rng = random.Random(0)
    scores = []
    for task_id in range(100):
        _, info = env.reset(options={"task_id": task_id})
        while True:
            action = rng.choice(info["available_actions"]).replace("<your query>", "stools")
            *_, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        scores.append(info["score"])
    assert 0.0 < float(np.mean(scores)) < 0.2


# ---------------------------------------------------------------------------------------------------- agent layer
@pytest.mark.parametrize(
    ("text", "action"),
    [
        ("<action>search[Red Running  Shoes]</action>", "search[red running shoes]"),
        ("<think>the target is on page 1</think>\n<action> click[B0XSEJA6C0] </action>", "click[b0xseja6c0]"),
        ("<action>click[< prev]</action>", "click[< prev]"),
        ('<tool_call>{"name": "click", "arguments": {"target": "Buy Now"}}</tool_call>', "click[buy now]"),
        ('{"tool_calls": [{"name": "search", "arguments": "{\\"query\\": \\"stools\\"}"}]}', "search[stools]"),
        ('{"tool_calls": [{"function": {"name": "search", "arguments": {"query": "lamp"}}}]}', "search[lamp]"),
    ],
)
def test_parse_action_accepts(text: str, action: str) -> None:
    assert parse_action(text) == envs.Parsed(action, True)


@pytest.mark.parametrize(
    "text",
    [
        "click[buy now]",
        "<action></action>",
        "<action>buy now</action>",
        "<action>click[]</action>",
        "<action>click[a]</action><action>click[b]</action>",
        "<think>unclosed <action>click[a]</action>",
        "<action>click[a]",
        '<tool_call>{"name": "buy"}</tool_call>',
        "<tool_call>{not json}</tool_call>",
        '<tool_call>{"name": "click", "arguments": {"query": "x"}}</tool_call>',
        "",
    ],
)
def test_parse_action_rejects_with_feedback(text: str) -> None:
    parsed = parse_action(text)
    assert parsed.action is None and not parsed.format_valid
    assert parsed.feedback.startswith("Invalid response:") and "<action>" in parsed.feedback


def test_prompts(env: WebShopEnv) -> None:
    observation, info = env.reset(options={"task_id": 0})
    assert task_text(observation) == GOAL0
    message = user_message(observation, info)
    assert f"Your task is to: {GOAL0}." in message and "Your current observation is: 'Search'." in message
    assert "'search[<your query>]',\n]" in message
    history = [(observation, "search[stools]")]
    later, *_, later_info = env.step("search[stools]")
    assert format_observation(later, GOAL0).startswith("'Back to Search' [SEP] 'Page 1 (Total results: 50)'")
    message = user_message(later, later_info, task=GOAL0, history=history)
    assert "You have taken 1 step(s) so far." in message and "You are now at step 2" in message
    assert "[Observation 1: 'Search', Action 1: 'search[stools]']" in message
    windowed = PROMPTS.window(
        later, later_info, history, actions=["click[x]", "click[y]", "click[z]", "search[stools]"]
    )[0]["content"]
    assert "You have taken 4 step(s) so far." in windowed and "You are now at step 5" in windowed
    assert "[Observation 4: 'Search', Action 4: 'search[stools]']" in windowed
    texts = corpus_texts()
    assert 200 <= len(texts) <= 1000 and all(isinstance(t, str) and t for t in texts)
    assert envs.action_parser("resrl/WebShop-v0") is parse_action


def test_show_reviews() -> None:
    env = WebShopEnv(show_reviews=True)
    _, info = env.reset(options={"task_id": 0})
    play(env, [info["expert_action"], "click[b0xseja6c0]"])
    observation, *_ = env.step("click[reviews]")
    assert observation.endswith(
        '< Prev [SEP] "Would buy again" [SEP] 4 [SEP] My whole family uses it now. [SEP] "It is okay" [SEP] 3 [SEP] '
        "The color is slightly off but acceptable."
    )
    env.step("click[< prev]")
    assert "[SEP] Rating: 3.5 [SEP]" in env.shop.observation()
