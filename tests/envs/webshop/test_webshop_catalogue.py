"""The catalogue generator, the shipped default catalogue and the synthetic goals."""

from __future__ import annotations

import collections
import itertools
import re

import pytest

from envs.webshop.catalogue import DEFAULT_CATALOGUE, PRICE_RANGE, build_goals, load_catalogue, read_products
from envs.webshop.generator import generate_catalogue, write_catalogue
from envs.webshop.reward import get_reward

FIELDS = {
    "asin",
    "name",
    "Title",
    "Description",
    "BulletPoints",
    "Price",
    "pricing",
    "price",
    "options",
    "Attributes",
    "Reviews",
    "Rating",
    "category",
    "query",
    "product_category",
    "title_nouns",
    "instruction",
    "instruction_attributes",
}


def test_shipped_catalogue_is_the_default_generation() -> None:
    assert read_products(DEFAULT_CATALOGUE) == generate_catalogue()
    assert DEFAULT_CATALOGUE.stat().st_size < 2_000_000


def test_generation_is_deterministic_by_seed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    small = generate_catalogue(seed=5, products_per_type=3)
    assert small == generate_catalogue(seed=5, products_per_type=3)
    assert small != generate_catalogue(seed=6, products_per_type=3)
    path = tmp_path / "small.json.gz"
    write_catalogue(path, small, seed=5)
    first = path.read_bytes()
    write_catalogue(path, small, seed=5)
    assert path.read_bytes() == first  # byte-stable (gzip mtime 0)
    assert read_products(path) == small


def test_catalogue_shape() -> None:
    products = load_catalogue().products
    assert len(products) == 2400
    assert all(set(p) == FIELDS for p in products)
    assert len({p["asin"] for p in products}) == 2400
    assert all(re.fullmatch(r"B0[A-Z0-9]{8}", p["asin"]) for p in products)
    assert collections.Counter(p["category"] for p in products) == {
        "beauty": 480,
        "electronics": 480,
        "fashion": 480,
        "furniture": 480,
        "grocery": 480,
    }
    queries = collections.Counter(p["query"] for p in products)
    assert len(queries) == 30 and set(queries.values()) == {80}  # every query is shared by 80 distractors
    assert all(3 <= len(p["product_category"].split(" \u203a ")) <= 6 for p in products)
    assert sum(bool(p["options"]) for p in products) == 2035
    assert len({int(p["price"] // 10) for p in products}) > 30  # prices spread over many $10 buckets
    for p in products:
        assert set(p["instruction_attributes"]) <= set(p["Attributes"])
        assert p["Price"] == " to ".join(f"${v:.2f}" for v in p["pricing"])
        assert p["pricing"][0] <= p["price"] <= p["pricing"][-1]
        values = list(itertools.chain.from_iterable(p["options"].values()))
        assert len(values) == len(set(values))  # an option value names one option
    # Attribute words sometimes sit in bullet points only, so the reward's text fallback matters.
    bullets_only = sum(
        1
        for p in products
        for b in p["BulletPoints"]
        if b.split(":")[0].lower() not in p["Attributes"]
        and not b.startswith(("WHAT", "SATISFACTION", "GREAT GIFT", "QUALITY CHECKED"))
    )
    assert bullets_only > 500


def test_goals_follow_the_original_construction() -> None:
    catalogue = load_catalogue()
    goals = catalogue.goals
    # One goal per option combination of every product.
    expected = sum(max(1, len(list(itertools.product(*p["options"].values())))) for p in catalogue.products)
    assert len(goals) == expected == 9907
    first = goals[0]
    assert first["asin"] == "B0XSEJA6C0"
    assert first["instruction_text"] == (
        "find me counter height stools that is adjustable height with color: black, and price lower than 100.00 dollars"
    )
    assert first["goal_options"] == {"color": "black"} and first["price_upper"] == 100.0
    # weight = mean over attributes of 1 / count(attribute over all goals)
    counts = collections.Counter(a for g in goals for a in g["attributes"])
    assert first["weight"] == pytest.approx(1 / counts["adjustable height"])
    for goal in goals:
        product = catalogue.product(goal["asin"])
        thresholds = [p for p in PRICE_RANGE if p > product["price"]][:4]
        assert goal["price_upper"] in thresholds[1:]  # the larger of two sampled thresholds
        assert goal["instruction_text"].startswith(product["instruction"])
        assert goal["instruction_text"].endswith(f", and price lower than {goal['price_upper']:.2f} dollars")
    assert build_goals(list(catalogue.products)) == list(goals)


def test_every_goal_target_with_its_options_scores_one() -> None:
    catalogue = load_catalogue()
    for goal in catalogue.goals:
        product = catalogue.product(goal["asin"])
        assert get_reward(product, goal, product["price"], goal["goal_options"]).total == 1.0, goal


def test_splits_and_num_products() -> None:
    catalogue = load_catalogue()
    assert catalogue.split_range("test") == range(500)
    assert catalogue.split_range("train") == range(500, 9907)
    small = load_catalogue(None, 300)
    assert len(small.products) == 300
    assert {p["category"] for p in small.products} == {"beauty", "electronics", "fashion", "furniture", "grocery"}
