"""Generate a WebShop catalogue deterministically from a seed.

Every product carries the fields of the original's loaded products (asin, name/Title, Description,
BulletPoints, Price, pricing, options, Attributes, Reviews, Rating, category, query, product_category) plus
``price`` (the price drawn once from ``pricing``, as the original does at load time), ``title_nouns``
(precomputed title nouns for the type reward) and the synthetic-instruction fields ``instruction`` and
``instruction_attributes`` (a subset of ``Attributes``), as in the original's ``items_ins_v2`` file.

Products of one type share its ``query`` and breadcrumb (distractors); brands, phrases, attribute subsets,
option subsets and prices vary. Attribute words sometimes appear in titles and bullet points only, so the
reward's substring fallback matters.

Run ``python -m envs.webshop.generator OUT.json.gz`` to write a catalogue (the shipped default uses the defaults).
"""

from __future__ import annotations

import gzip
import json
import random
import re
import string
import sys
from pathlib import Path
from typing import Any

from envs.webshop.vocab import BRAND_SYLLABLES, PRODUCT_TYPES, ProductType

__all__ = ["DEFAULT_PRODUCTS_PER_TYPE", "DEFAULT_SEED", "generate_catalogue", "write_catalogue"]

DEFAULT_SEED = 0
DEFAULT_PRODUCTS_PER_TYPE = 80
FORMAT_VERSION = 1

_EXTRA_NOUNS = frozenset({"men", "women", "pack", "inch", "set", "hair", "skin", "steel", "wood", "storage", "case"})
_MODIFIERS = ("", "", "", "Premium", "Upgraded", "Classic", "Original", "Professional", "Deluxe", "Everyday")
_INSTRUCTION_TEMPLATES = (
    "i am looking for {item} that is {attrs}",
    "i need {item} that is {attrs}",
    "i want to buy {item} which is {attrs}",
    "i'm looking for {item}, it should be {attrs}",
    "i would like {item} that is {attrs}",
    "find me {item} that is {attrs}",
)
_FILLERS = (
    "WHAT YOU GET: the product, a user guide and our friendly customer service",
    "SATISFACTION GUARANTEE: contact us with any question and we will reply within 24 hours",
    "GREAT GIFT: a thoughtful present for family and friends",
    "QUALITY CHECKED: every item is inspected before shipping",
)
# Review titles (8) and bodies (7) by sentiment: negative (scores 1-2), mixed (3), positive (4-5).
_REVIEW_TITLES = (
    (
        "Disappointed",
        "Not worth it",
        "Returned it",
        "Poor quality",
        "Broke quickly",
        "Not as described",
        "Would not buy again",
        "Waste of money",
    ),
    (
        "It is okay",
        "Decent for the price",
        "Mixed feelings",
        "Average",
        "Does the job",
        "Could be better",
        "Not bad",
        "Fair enough",
    ),
    (
        "Great product",
        "Love it",
        "Works as described",
        "Good value",
        "Would buy again",
        "Excellent",
        "Highly recommend",
        "Five stars",
    ),
)
_REVIEW_BODIES = (
    (
        "Stopped working after a few weeks.",
        "The color looks different from the photos.",
        "Cheap materials, not what I expected.",
        "It arrived damaged and support was slow.",
        "The size runs small and it feels flimsy.",
        "I had to send it back.",
        "Not comfortable at all.",
    ),
    (
        "It works but the quality is average.",
        "Fine for the price, nothing special.",
        "Some parts are great, others not so much.",
        "Took a while to arrive but it is okay.",
        "Good enough for occasional use.",
        "The color is slightly off but acceptable.",
        "Does what it says.",
    ),
    (
        "Arrived quickly and matches the description.",
        "Quality is better than I expected.",
        "My whole family uses it now.",
        "Exactly what I was looking for.",
        "Good quality for the money, I recommend it.",
        "Looks great and works perfectly.",
        "I bought a second one as a gift.",
    ),
)
_TOKEN_RE = re.compile(r"[A-Za-z0-9]+")


def _brands(rng: random.Random, count: int) -> list[str]:
    brands: set[str] = set()
    while len(brands) < count:
        name = "".join(rng.choice(BRAND_SYLLABLES) for _ in range(rng.randint(2, 3)))
        if 4 <= len(name) <= 10:
            brands.add(name.capitalize())
    return sorted(brands)


def _join_attrs(attrs: list[str]) -> str:
    return attrs[0] if len(attrs) == 1 else ", ".join(attrs[:-1]) + " and " + attrs[-1]


def _asin(rng: random.Random, taken: set[str]) -> str:
    alphabet = string.ascii_uppercase + string.digits
    while True:
        asin = "B0" + "".join(rng.choice(alphabet) for _ in range(8))
        if asin not in taken:
            taken.add(asin)
            return asin


def _title_nouns(title: str, brand: str, ptype: ProductType) -> list[str]:
    nouns = []
    for token in _TOKEN_RE.findall(title):
        lower = token.lower()
        if token == brand or lower in ptype.nouns or lower in _EXTRA_NOUNS:
            nouns.append(lower)
    return nouns


def _product(rng: random.Random, ptype: ProductType, brand: str, asin: str) -> dict[str, Any]:
    phrase = rng.choice(ptype.phrases)
    attrs = rng.sample(ptype.attributes, k=rng.randint(2, min(4, len(ptype.attributes))))
    modifier = rng.choice(_MODIFIERS)
    title = " ".join(part for part in (brand, modifier, phrase) if part)
    title_attrs = [a for a in attrs if rng.random() < 0.35]
    if title_attrs:
        title += ", " + ", ".join(string.capwords(a) for a in title_attrs)

    option_names = list(ptype.options)
    num_options = min(len(option_names), rng.choices((0, 1, 2), weights=(15, 45, 40))[0])
    chosen = set(rng.sample(option_names, k=num_options))
    options: dict[str, list[str]] = {}
    for name in option_names:  # the type's order is the page order
        if name in chosen:
            pool = ptype.options[name]
            picked = set(rng.sample(pool, k=rng.randint(2, min(5, len(pool)))))
            options[name] = [value for value in pool if value in picked]

    low, high = ptype.price
    base = round(rng.uniform(low, high), 2)
    if rng.random() < 0.2:
        pricing = [base, round(base * rng.uniform(1.1, 1.5), 2)]
        price_text = f"${pricing[0]:.2f} to ${pricing[1]:.2f}"
        price = round(rng.uniform(pricing[0], pricing[1]), 2)
    else:
        pricing = [base]
        price_text = f"${base:.2f}"
        price = base

    details = list(ptype.details)
    rng.shuffle(details)
    bullets = [f"{attr.upper()}: {details[i % len(details)]}" for i, attr in enumerate(attrs)]
    decoys = [a for a in ptype.attributes if a not in attrs]
    if decoys and rng.random() < 0.4:
        bullets.append(f"{rng.choice(decoys).upper()}: {details[-1]}")
    if rng.random() < 0.5:
        bullets.append(rng.choice(_FILLERS))
    described = rng.sample(attrs, k=min(2, len(attrs)))
    description = (
        f"The {brand} {phrase.lower()} {details[0]}. It is {_join_attrs(described)}. "
        f"{details[1].capitalize()}, and {details[2]}."
    )

    reviews: list[dict[str, Any]] = []
    scores: list[int] = []
    for _ in range(rng.choices((0, 1, 2, 3), weights=(30, 30, 25, 15))[0]):
        score = rng.choices((1, 2, 3, 4, 5), weights=(1, 1, 2, 4, 6))[0]
        scores.append(score)
        sentiment = 0 if score <= 2 else 1 if score == 3 else 2
        reviews.append(
            {
                "title": rng.choice(_REVIEW_TITLES[sentiment]),
                "score": score,
                "body": rng.choice(_REVIEW_BODIES[sentiment]),
            }
        )
    rating: str | float = round(sum(scores) / len(scores), 1) if scores else "N.A."

    instruction_attributes = rng.sample(attrs, k=rng.randint(1, min(3, len(attrs))))
    item = rng.choice(ptype.instruction_phrases)
    instruction = rng.choice(_INSTRUCTION_TEMPLATES).format(item=item, attrs=_join_attrs(instruction_attributes))
    return {
        "asin": asin,
        "name": title,
        "Title": title,
        "Description": description,
        "BulletPoints": bullets,
        "Price": price_text,
        "pricing": pricing,
        "price": price,
        "options": options,
        "Attributes": attrs,
        "Reviews": reviews,
        "Rating": rating,
        "category": ptype.category,
        "query": ptype.query,
        "product_category": " \u203a ".join(ptype.breadcrumb),
        "title_nouns": _title_nouns(title, brand, ptype),
        "instruction": instruction,
        "instruction_attributes": instruction_attributes,
    }


def generate_catalogue(
    seed: int = DEFAULT_SEED, products_per_type: int = DEFAULT_PRODUCTS_PER_TYPE
) -> list[dict[str, Any]]:
    """``products_per_type`` products for each of the 30 product types, interleaved by type, deterministic."""
    rng = random.Random(seed)
    brands = _brands(rng, 240)
    taken: set[str] = set()
    per_type = [
        [_product(rng, ptype, rng.choice(brands), _asin(rng, taken)) for _ in range(products_per_type)]
        for ptype in PRODUCT_TYPES
    ]
    # Interleave types so that any prefix of the catalogue (num_products) covers every category.
    return [products[i] for i in range(products_per_type) for products in per_type]


def write_catalogue(path: str | Path, products: list[dict[str, Any]], *, seed: int = DEFAULT_SEED) -> None:
    """Write ``{"format_version", "seed", "products"}`` as (gzipped if ``.gz``) JSON, byte-stable."""
    payload = {"format_version": FORMAT_VERSION, "seed": seed, "products": products}
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    path = Path(path)
    if path.suffix == ".gz":
        with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as handle:
            handle.write(data)
    else:
        path.write_bytes(data)


if __name__ == "__main__":  # pragma: no cover - maintenance entry point
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("data") / "catalogue.json.gz"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_catalogue(out, generate_catalogue())
