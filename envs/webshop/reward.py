"""The original WebShop reward (``get_reward`` of WebShop master), re-implemented without spaCy or thefuzz.

For a purchased product P (its drawn price, the selected options) and a goal G::

    total = r_type * (n_attr_matched + n_opt_matched + r_price) / (len(G.attributes) + len(G.goal_options) + 1)

- ``r_type`` (product type): 1.0, then 0.5 if neither the query, the breadcrumb (>= 2 shared segments) nor the title
  nouns (score > 0.2) match, then 0.1 if the title-noun score < 0.1, then 0.0 if it is 0 (the overrides apply in
  this order, even when the query or category matches). Title nouns are precomputed at catalogue generation
  (``title_nouns``) so no spaCy model is needed.
- attributes: a goal attribute matches if ``token_set_ratio(p_attr, g_attr) > 85`` for some product attribute, or
  else if it is a substring of the lowercased title, bullet points or description.
- options: each value is passed through ``normalize_color``; a goal option matches if some selected value has
  ``token_set_ratio > 85``. Synthetic goals keep the original's quirk: their options are ``(name, value)`` pairs,
  so ``normalize_color`` tests colour *equality* with the name or value, and the fuzzy match sees the text
  ``"name value"`` (selected "x-large" vs goal size "large" scores 83: no match; "large" vs "x-large": 100).
- ``r_price``: 1 if the price is at most ``G.price_upper``.

Success is ``total == 1.0`` exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "COLOR_SET",
    "RewardBreakdown",
    "full_process",
    "get_attribute_reward",
    "get_option_reward",
    "get_reward",
    "get_type_reward",
    "normalize_color",
    "token_set_ratio",
]

# Colour words, alphabetical: normalize_color returns the FIRST word that is a substring of a value, so the order
# decides its (faithfully reproduced) quirks: "navy blue" -> "blue", "dark red" -> "dark", "rose gold" -> "gold",
# "standard" -> "tan", "washable" -> "ash". This is the original's vocabulary (needed for the same behaviour).
COLOR_SET: tuple[str, ...] = tuple(
    sorted(
        {
            # whites, creams, neutrals
            "alabaster",
            "ivory",
            "cream",
            "white",
            "seashell",
            "natural",
            "nude",
            "beige",
            "sand",
            "wheat",
            "khaki",
            "tan",
            "taupe",
            "camel",
            "champagne",
            "mushroom",
            "elephant",
            "stone",
            "stonewash",
            # greys and blacks
            "ash",
            "asphalt",
            "black",
            "charcoal",
            "granite",
            "graphite",
            "gray",
            "grey",
            "heather",
            "pewter",
            "silver",
            "slate",
            "steel",
            "midnight",
            "dark",
            "light",
            "skull",
            # browns and metals
            "bronze",
            "brown",
            "caramel",
            "chestnut",
            "chocolate",
            "coffee",
            "cognac",
            "copper",
            "espresso",
            "gold",
            "mocha",
            "walnut",
            "rust",
            # reds, pinks, purples
            "blush",
            "bordeaux",
            "burgundy",
            "coral",
            "cranberry",
            "fuchsia",
            "magenta",
            "maroon",
            "merlot",
            "pink",
            "red",
            "rose",
            "wine",
            "eggplant",
            "grape",
            "lavender",
            "lilac",
            "mauve",
            "plum",
            "purple",
            "violet",
            # oranges and yellows
            "apricot",
            "banana",
            "lemon",
            "mustard",
            "orange",
            "peach",
            "sunflower",
            "yellow",
            # greens and blues
            "grass",
            "green",
            "ivy",
            "lime",
            "mint",
            "olive",
            "aqua",
            "azure",
            "blue",
            "denim",
            "indigo",
            "navy",
            "royal",
            "sapphire",
            "teal",
            "turquoise",
            # patterns and mixed
            "camo",
            "cheetah",
            "christmas",
            "crystal",
            "leopard",
            "multicolor",
            "rainbow",
            "tiger",
        }
    )
)

_CATEGORY_SEPARATOR = "\u203a"  # "›", the breadcrumb separator of product_category
_MATCH_THRESHOLD = 85


def full_process(value: Any) -> str:
    """thefuzz's ``full_process(force_ascii=True)``: str(), drop chars 128-255, non-alphanumerics -> space, lower."""
    text = value if isinstance(value, str) else str(value)
    text = "".join(ch for ch in text if not 128 <= ord(ch) <= 255)
    return "".join(ch if ch.isalnum() else " " for ch in text).lower().strip()


def _lcs_length(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for ch_a in a:
        current = [0]
        for j, ch_b in enumerate(b):
            current.append(previous[j] + 1 if ch_a == ch_b else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def _indel_distance(a: str, b: str) -> int:
    return len(a) + len(b) - 2 * _lcs_length(a, b)


def _norm_similarity(distance: int, length_sum: int) -> float:
    return 100.0 if length_sum == 0 else 100.0 - 100.0 * distance / length_sum


def token_set_ratio(s1: Any, s2: Any) -> int:
    """``thefuzz.fuzz.token_set_ratio`` (0.22, rapidfuzz's Indel ratio), rounded to an int like thefuzz.

    100 whenever one token set contains the other; otherwise the best Indel similarity of the sorted
    intersection + differences.
    """
    p1, p2 = full_process(s1), full_process(s2)
    if not p1 or not p2:
        return 0
    tokens_a, tokens_b = set(p1.split()), set(p2.split())
    if not tokens_a or not tokens_b:
        return 0
    intersection = tokens_a & tokens_b
    diff_ab, diff_ba = tokens_a - tokens_b, tokens_b - tokens_a
    if intersection and (not diff_ab or not diff_ba):
        return 100
    diff_ab_joined = " ".join(sorted(diff_ab))
    diff_ba_joined = " ".join(sorted(diff_ba))
    sect_len = len(" ".join(intersection))
    sect_ab_len = sect_len + (sect_len != 0) + len(diff_ab_joined)
    sect_ba_len = sect_len + (sect_len != 0) + len(diff_ba_joined)
    result = _norm_similarity(_indel_distance(diff_ab_joined, diff_ba_joined), sect_ab_len + sect_ba_len)
    if sect_len:
        # "sect" vs "sect diff": only the appended difference (and its space) has to be inserted.
        result = max(
            result,
            _norm_similarity((sect_len != 0) + len(diff_ab_joined), sect_len + sect_ab_len),
            _norm_similarity((sect_len != 0) + len(diff_ba_joined), sect_len + sect_ba_len),
        )
    return round(result)  # Python's round, as thefuzz's int(round(x))


def normalize_color(value: Any) -> Any:
    """The first colour word "in" ``value``: a substring test for a str, an equality test for a tuple."""
    for color in COLOR_SET:
        if color in value:
            return color
    return value


@dataclass(frozen=True, slots=True)
class RewardBreakdown:
    """Every component of one purchase's reward (``total`` is the score; success iff it equals 1.0)."""

    total: float
    r_type: float
    query_match: bool
    category_match: bool
    title_score: float
    r_att: float
    num_attr_matches: int
    r_option: float | None
    num_option_matches: int
    r_price: bool

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def get_type_reward(product: Mapping[str, Any], goal: Mapping[str, Any]) -> dict[str, Any]:
    """r_type from query, breadcrumb and title-noun overlap (``title_nouns`` of P vs ``name_nouns`` of G)."""
    query_match = product["query"] == goal["query"]
    product_category = {part.strip() for part in product["product_category"].split(_CATEGORY_SEPARATOR)}
    goal_category = {part.strip() for part in goal["product_category"].split(_CATEGORY_SEPARATOR)}
    category_match = len(product_category & goal_category) >= 2
    desired: Sequence[str] = goal["name_nouns"]
    # The denominator counts the goal's noun tokens with repeats, the numerator distinct shared nouns (as spaCy's
    # token list and the set intersection do in the original).
    title_score = 0.2 if not desired else len(set(product["title_nouns"]) & set(desired)) / len(desired)
    r_type = 1.0
    if not (query_match or category_match or title_score > 0.2):
        r_type = 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return {"r_type": r_type, "query_match": query_match, "category_match": category_match, "title_score": title_score}


def get_attribute_reward(product: Mapping[str, Any], goal: Mapping[str, Any]) -> tuple[float, int]:
    """(fraction, count) of goal attributes found in P's attributes (fuzzy) or its title/bullets/description."""
    goal_attrs: Sequence[str] = goal["attributes"]
    title = product["Title"].lower()
    bullets = " ".join(product["BulletPoints"]).lower()
    description = product["Description"].lower()
    matches = 0
    for g_attr in goal_attrs:
        fuzzy = any(token_set_ratio(p_attr, g_attr) > _MATCH_THRESHOLD for p_attr in product["Attributes"])
        if fuzzy or g_attr in title or g_attr in bullets or g_attr in description:
            matches += 1
    return (matches / len(goal_attrs) if goal_attrs else 0.0), matches


def get_option_reward(purchased_options: Iterable[Any], goal_options: Iterable[Any]) -> tuple[float | None, int]:
    """(fraction or None, count) of goal options matched by some selected option value."""
    purchased = [normalize_color(o) for o in purchased_options]
    goals = [normalize_color(o) for o in goal_options]
    matches = sum(1 for g_option in goals if any(token_set_ratio(p, g_option) > _MATCH_THRESHOLD for p in purchased))
    return (matches / len(goals) if goals else None), matches


def get_reward(
    product: Mapping[str, Any], goal: Mapping[str, Any], price: float, options: Mapping[str, str]
) -> RewardBreakdown:
    """The score of buying ``product`` at ``price`` with ``options`` ({option name: value}) for ``goal``."""
    type_reward = get_type_reward(product, goal)
    r_price = price <= goal["price_upper"]
    r_att, num_attr_matches = get_attribute_reward(product, goal)
    goal_options = goal["goal_options"]
    # Synthetic goals hold a dict: the original scores its (name, value) items; human goals hold a list of values.
    goal_items = list(goal_options.items()) if isinstance(goal_options, Mapping) else list(goal_options)
    r_option, num_option_matches = get_option_reward(list(options.values()), goal_items)
    total = (num_attr_matches + num_option_matches + r_price) / (len(goal["attributes"]) + len(goal_items) + 1)
    total *= type_reward["r_type"]
    return RewardBreakdown(
        total=total,
        r_type=type_reward["r_type"],
        query_match=type_reward["query_match"],
        category_match=type_reward["category_match"],
        title_score=type_reward["title_score"],
        r_att=r_att,
        num_attr_matches=num_attr_matches,
        r_option=r_option,
        num_option_matches=num_option_matches,
        r_price=bool(r_price),
    )
