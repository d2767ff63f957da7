"""Load a catalogue and build its goals the way the original builds synthetic instructions.

Goals (``get_synthetic_goals`` of the original): one goal per combination of a product's option values
(cartesian product over sorted option names); text = ``instruction + " with " + ", and ".join("name: value")``
plus ``", and price lower than {price_upper:.2f} dollars"`` when at least two of the first four
``PRICE_RANGE`` thresholds above the price exist (two are sampled, the larger is ``price_upper``), else
``price_upper = 1000000``. ``weight`` = mean over the goal's attributes of 1 / (goals having that attribute).
Goals are then shuffled with seed 233. Task ``webshop-<i>`` is ``goals[i]``; ``test`` = goals 0-499 (verl-agent's
eval ids), ``train`` = goals 500+.
"""

from __future__ import annotations

import gzip
import itertools
import json
import random
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from envs.base import EnvError

__all__ = [
    "DEFAULT_CATALOGUE",
    "GOAL_SEED",
    "NUM_TEST_GOALS",
    "PRICE_RANGE",
    "Catalogue",
    "build_goals",
    "load_catalogue",
    "read_products",
]

DEFAULT_CATALOGUE = Path(__file__).with_name("data") / "catalogue.json.gz"
PRICE_RANGE = tuple(float(10 * i) for i in range(1, 100))  # 10, 20, ..., 990
NO_PRICE_LIMIT = 1_000_000.0
GOAL_SEED = 233
NUM_TEST_GOALS = 500


def read_products(path: str | Path) -> list[dict[str, Any]]:
    """The ``products`` list of a catalogue file written by :func:`envs.webshop.generator.write_catalogue`."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        payload = json.loads(raw)
    except (OSError, ValueError) as error:
        raise EnvError(
            f"cannot read WebShop catalogue {str(path)!r}: {error}",
            hint="regenerate it with `python -m envs.webshop.generator PATH`",
        ) from error
    products = payload.get("products") if isinstance(payload, dict) else None
    if not isinstance(products, list) or not products:
        raise EnvError(f"WebShop catalogue {str(path)!r} holds no 'products' list")
    return products


def build_goals(products: list[dict[str, Any]], seed: int = GOAL_SEED) -> list[dict[str, Any]]:
    """Synthetic goals of ``products``, shuffled with ``seed`` (deterministic)."""
    rng = random.Random(seed)
    goals: list[dict[str, Any]] = []
    attribute_counts: dict[str, int] = defaultdict(int)
    for product in products:
        attributes = product["instruction_attributes"]
        if not attributes:
            continue
        thresholds = [p for p in PRICE_RANGE if p > product["price"]][:4]
        if len(thresholds) >= 2:
            price_upper = max(rng.sample(thresholds, 2))
            price_text = f", and price lower than {price_upper:.2f} dollars"
        else:
            price_upper, price_text = NO_PRICE_LIMIT, ""
        option_names = sorted(product["options"])
        for combination in itertools.product(*(product["options"][name] for name in option_names)):
            goal_options = dict(zip(option_names, combination, strict=True))
            option_text = ", and ".join(f"{name}: {value}" for name, value in goal_options.items())
            option_text = f" with {option_text}" if option_text else ""
            goals.append(
                {
                    "asin": product["asin"],
                    "category": product["category"],
                    "query": product["query"],
                    "name": product["Title"],
                    "name_nouns": product["title_nouns"],
                    "product_category": product["product_category"],
                    "instruction_text": f"{product['instruction']}{option_text}{price_text}",
                    "attributes": attributes,
                    "price_upper": price_upper,
                    "goal_options": goal_options,
                }
            )
            for attribute in attributes:
                attribute_counts[attribute] += 1
    for goal in goals:
        goal["weight"] = sum(1.0 / attribute_counts[a] for a in goal["attributes"]) / len(goal["attributes"])
    random.Random(seed).shuffle(goals)
    return goals


@dataclass(frozen=True)
class Catalogue:
    """Products (in catalogue order), an ASIN index and the goals."""

    products: tuple[dict[str, Any], ...]
    goals: tuple[dict[str, Any], ...]
    index_by_asin: dict[str, int]

    @classmethod
    def from_products(cls, products: list[dict[str, Any]]) -> Catalogue:
        return cls(
            tuple(products), tuple(build_goals(products)), {product["asin"]: i for i, product in enumerate(products)}
        )

    def product(self, asin: str) -> dict[str, Any]:
        return self.products[self.index_by_asin[asin]]

    def split_range(self, split: str) -> range:
        """Goal indices of ``split``: ``test`` (0-499), ``train`` (500+) or ``all``."""
        num_test = min(NUM_TEST_GOALS, len(self.goals) // 2)
        if split == "test":
            return range(num_test)
        if split == "train":
            return range(num_test, len(self.goals))
        if split == "all":
            return range(len(self.goals))
        raise EnvError(f"unknown WebShop split {split!r}", hint="use 'train', 'test' or 'all'")


@lru_cache(maxsize=4)
def load_catalogue(path: str | None = None, num_products: int | None = None) -> Catalogue:
    """The catalogue at ``path`` (default: the shipped one), optionally cut to its first ``num_products``."""
    products = read_products(path or DEFAULT_CATALOGUE)
    if num_products is not None:
        if num_products < 1:
            raise EnvError(f"num_products={num_products} must be >= 1")
        products = products[:num_products]
    return Catalogue.from_products(products)
