"""The original WebShop reward, component by component, on hand-computed cases (numbers worked in comments)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from envs.webshop.reward import (
    full_process,
    get_attribute_reward,
    get_option_reward,
    get_reward,
    get_type_reward,
    normalize_color,
    token_set_ratio,
)

CATEGORY = "Beauty & Personal Care \u203a Hair Care \u203a Hair Extensions, Wigs & Accessories \u203a Extensions"


def product(**changes: Any) -> dict[str, Any]:
    base = {
        "asin": "B0TEST0001",
        "Title": "Velora Clip in Hair Extensions, Natural Looking",
        "name": "Velora Clip in Hair Extensions, Natural Looking",
        "title_nouns": ["velora", "hair", "extensions"],
        "query": "hair extensions",
        "product_category": CATEGORY,
        "Attributes": ["natural looking", "long lasting"],
        "BulletPoints": ["HEAT RESISTANT: can be curled and straightened", "SOFT: smooth to the touch"],
        "Description": "Soft and tangle free hair for daily wear.",
    }
    base.update(changes)
    return base


def goal(**changes: Any) -> dict[str, Any]:
    base = {
        "query": "hair extensions",
        "product_category": CATEGORY,
        "name_nouns": ["velora", "hair", "extensions"],
        "attributes": ["natural looking", "heat resistant"],
        "goal_options": {"color": "dark brown", "size": "18 inch"},
        "price_upper": 50.0,
    }
    base.update(changes)
    return base


EXACT = {"color": "dark brown", "size": "18 inch"}


# ---------------------------------------------------------------- fuzzy matching and colour normalisation
@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("large", "large", 100),
        ("x-large", ("size", "large"), 83),  # {x, large} vs {size, large}: "large" vs "large x" = 1 - 2/12 -> 83
        ("large", ("size", "x-large"), 100),  # {large} is contained in {size, x, large}
        ("12 pack", "24 pack", 86),  # "12" vs "24": Indel 2 over "pack 12" + "pack 24" (14) -> 85.7
        ("red", "dark red", 100),
        ("small", "x-small", 100),
        ("22 inch", ("size", "18 inch"), 73),  # "inch" vs "inch 22": 1 - 3/11 -> 72.7
        ("Black", "BLACK!", 100),  # case and punctuation are processed away
        ("", "black", 0),
        ("32gb", "64gb", 50),  # no shared token: Indel("32gb", "64gb") = 4 over 8 -> 50
    ],
)
def test_token_set_ratio(a: Any, b: Any, expected: int) -> None:
    assert token_set_ratio(a, b) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("navy blue", "blue"),
        ("dark red", "dark"),
        ("light pink", "light"),
        ("rose gold", "gold"),
        ("standard", "tan"),
        ("washable", "ash"),
        ("black forest", "black"),
        ("webshop", "webshop"),
        ("", ""),
    ],
)
def test_normalize_color_takes_the_first_colour_substring(value: str, expected: str) -> None:
    assert normalize_color(value) == expected


def test_normalize_color_on_a_goal_pair_tests_equality() -> None:
    assert normalize_color(("color", "black")) == "black"
    assert normalize_color(("color", "navy blue")) == ("color", "navy blue")  # "blue" is not an element


# ---------------------------------------------------------------- components
def test_type_reward_rules() -> None:
    same = get_type_reward(product(), goal())
    assert same == {"r_type": 1.0, "query_match": True, "category_match": True, "title_score": 1.0}
    # Other query, one shared breadcrumb segment, 1 of 5 goal nouns: 0.2 is not > 0.2 -> 0.5 (and 0.2 >= 0.1).
    other = product(
        query="hair dryer",
        product_category="Beauty & Personal Care \u203a Tools \u203a Dryers",
        title_nouns=["hair", "dryer"],
    )
    five = goal(name_nouns=["velora", "hair", "extensions", "clip", "set"])
    assert get_type_reward(other, five)["r_type"] == 0.5
    assert get_type_reward(other, five)["title_score"] == pytest.approx(0.2)
    # 1 of 4 nouns (0.25 > 0.2) matches by title alone -> 1.0.
    assert get_type_reward(other, goal(name_nouns=["velora", "hair", "extensions", "clip"]))["r_type"] == 1.0
    # 1 of 11 nouns (0.09 < 0.1) -> 0.1 even though the query matches.
    eleven = goal(name_nouns=["hair", *[f"n{i}" for i in range(10)]])
    assert get_type_reward(product(), eleven)["r_type"] == 0.1
    # No shared noun -> 0.0 even with query and category matches.
    assert get_type_reward(product(title_nouns=["shampoo"]), goal())["r_type"] == 0.0
    # A goal without nouns scores 0.2: 1.0 with a query match, 0.5 without any match.
    assert get_type_reward(product(), goal(name_nouns=[]))["r_type"] == 1.0
    assert get_type_reward(other, goal(name_nouns=[]))["r_type"] == 0.5
    # Repeated goal nouns count in the denominator: {hair} / [hair, hair, extensions] = 1/3.
    score = get_type_reward(product(title_nouns=["hair"]), goal(name_nouns=["hair", "hair", "extensions"]))
    assert score["title_score"] == pytest.approx(1 / 3)


def test_attribute_reward_fuzzy_then_text_fallback() -> None:
    # "natural looking" is an attribute; "heat resistant" only appears in a bullet point.
    assert get_attribute_reward(product(), goal()) == (1.0, 2)
    assert get_attribute_reward(product(BulletPoints=[]), goal()) == (0.5, 1)
    # Fuzzy: "long lasting wear" contains every token of "long lasting" -> 100.
    fuzzy = product(Attributes=["long lasting wear"])
    assert get_attribute_reward(fuzzy, goal(attributes=["long lasting"])) == (1.0, 1)
    # Title and description fallbacks are case-insensitive substrings.
    text_only = product(Attributes=[])
    assert get_attribute_reward(text_only, goal(attributes=["natural looking", "tangle free"])) == (1.0, 2)


def test_option_reward() -> None:
    # Human-goal style (a list of values): 3/3, then "blue" misses "grey".
    assert get_option_reward(["pack of 12", "grey", "XL"], ["grey", "XL", "pack of 12"]) == (1.0, 3)
    assert get_option_reward(["pack of 12", "blue", "XL"], ["grey", "XL", "pack of 12"]) == (2 / 3, 2)
    # Synthetic goals are (name, value) pairs: "x-large" misses size "large" (83), "large" hits "x-large" (100).
    assert get_option_reward(["x-large"], [("size", "large")]) == (0.0, 0)
    assert get_option_reward(["large"], [("size", "x-large")]) == (1.0, 1)
    # "navy blue" normalises to "blue", contained in "color navy blue".
    assert get_option_reward(["navy blue"], [("color", "navy blue")]) == (1.0, 1)
    assert get_option_reward([], [("color", "black")]) == (0.0, 0)
    assert get_option_reward(["black"], []) == (None, 0)


# ---------------------------------------------------------------- the combined reward
def test_buying_the_target_with_the_goal_options_scores_exactly_one() -> None:
    result = get_reward(product(), goal(), price=40.0, options=EXACT)
    assert result.total == 1.0  # (2 attrs + 2 options + price) / (2 + 2 + 1)
    assert result.r_price and result.r_type == 1.0 and result.num_option_matches == 2


@pytest.mark.parametrize(
    ("case", "total"),
    [
        ("wrong_size", 4 / 5),  # "22 inch" vs "size 18 inch" = 73: (2 + 1 + 1) / 5
        ("no_options", 3 / 5),  # nothing selected: (2 + 0 + 1) / 5
        ("missing_attribute", 4 / 5),  # "heat resistant" nowhere: (1 + 2 + 1) / 5
        ("over_price", 4 / 5),  # 55 > 50: (2 + 2 + 0) / 5
        ("price_at_limit", 1.0),  # 50 <= 50
        ("wrong_type", 0.0),  # no shared title noun: r_type 0
        ("half_type", 0.5 * 2 / 5),  # r_type 0.5; wrong size, over price, one attribute: 0.5 * (1 + 1 + 0) / 5
        ("tenth_type", 0.1),  # 1 of 11 nouns: r_type 0.1 * (2 + 2 + 1) / 5
        ("x_large_for_large", 2 / 3),  # goal size "large", bought "x-large": 83, no match: (1 + 0 + 1) / 3
    ],
)
def test_reward_combinations(case: str, total: float) -> None:
    p, g, price, options = product(), goal(), 40.0, dict(EXACT)
    if case == "wrong_size":
        options["size"] = "22 inch"
    elif case == "no_options":
        options = {}
    elif case == "missing_attribute":
        p["BulletPoints"] = []
    elif case == "over_price":
        price = 55.0
    elif case == "price_at_limit":
        price = 50.0
    elif case == "wrong_type":
        p["title_nouns"] = ["lumo", "shampoo"]
    elif case == "half_type":
        p.update(
            query="hair dryer",
            product_category="Beauty & Personal Care \u203a Tools",
            title_nouns=["hair"],
            BulletPoints=[],
        )
        g["name_nouns"] = ["velora", "hair", "extensions", "clip", "set"]
        options["size"], price = "22 inch", 60.0
    elif case == "tenth_type":
        g["name_nouns"] = ["hair", *[f"n{i}" for i in range(10)]]
    elif case == "x_large_for_large":
        g.update(attributes=["natural looking"], goal_options={"size": "large"})
        options = {"size": "x-large"}
    assert get_reward(p, g, price, options).total == pytest.approx(total)


def test_reward_does_not_mutate_its_inputs() -> None:
    p, g = product(), goal()
    before = copy.deepcopy((p, g))
    get_reward(p, g, 40.0, dict(EXACT))
    assert (p, g) == before


_WORDS = st.sampled_from(["x", "large", "size", "red", "dark", "12", "pack", "24", "blue", "navy", "x-large", "64gb"])
_PHRASES = st.lists(_WORDS, max_size=4).map(" ".join)


@given(_PHRASES, _PHRASES)
def test_token_set_ratio_properties(a: str, b: str) -> None:
    score = token_set_ratio(a, b)
    assert 0 <= score <= 100 and score == token_set_ratio(b, a)
    tokens_a, tokens_b = set(full_process(a).split()), set(full_process(b).split())
    if tokens_a and tokens_b and (tokens_a <= tokens_b or tokens_b <= tokens_a):
        assert score == 100
