"""The shop's pages, their text observations and the ``search[...]`` / ``click[...]`` transitions.

Pages (as in the original's web app): the search page, results (10 per page, ``< Prev`` from page 2, ``Next >``
always, even past the last page), an item page (option groups, title, price, rating, Description / Features /
Reviews sub-pages, Buy Now) and the done page after Buy Now.

Observation modes (the original's ``WebAgentTextEnv``):

- ``text``: every visible text node, stripped, joined with ``" [SEP] "``.
- ``text_rich``: one line per node; buttons ``[button] X [button_]``, option values ``  [button] v [button_]``
  or ``  [clicked button] v [clicked button_]`` when selected (then ``You have clicked v.`` lines go in front),
  product links ``\\n[button] ASIN [button_]`` (``[clicked button]`` once visited in this session). Text nodes
  are stripped (the original keeps its templates' indentation, which carries no information).

Clickables are the lowercased button and product-link texts in page order, then the option values; ``search``
(the search page's button) is never a valid click. ``search[q]`` works on every page when ``q`` is not empty.
Anything else changes nothing. As in the original, the Reviews page is empty and the rating is ``N.A.`` unless
``show_reviews`` is set (the original's master branch has review loading commented out).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from envs.webshop.catalogue import Catalogue
from envs.webshop.reward import RewardBreakdown, get_reward
from envs.webshop.search import SearchEngine, page_of

__all__ = ["ObservationMode", "PageKind", "Shop", "ShopState", "parse_action"]

ObservationMode = Literal["text", "text_rich"]
PageKind = Literal["search", "results", "item", "description", "features", "reviews", "done"]
SUB_PAGES = ("description", "features", "reviews")
SEP = " [SEP] "
_ACTION_RE = re.compile(r"(.+)\[(.+)\]")

# Node kinds: plain text, a button, a product link (ASIN), an option value.
_TEXT, _BUTTON, _LINK, _OPTION = "text", "button", "link", "option"


def parse_action(action: str) -> tuple[str, str | None]:
    """The original's ``parse_action``: ``name[arg]`` (greedy, first line) -> (name, lowercased arg) or (text, None)."""
    match = _ACTION_RE.match(action.strip())
    if match is None:
        return action.strip(), None
    return match.group(1), match.group(2).lower()


@dataclass
class ShopState:
    """One session's browser state (the original keeps it in the URL and the session dict)."""

    page: PageKind = "search"
    keywords: str = ""
    hits: list[int] = field(default_factory=list)
    page_num: int = 1
    asin: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    visited: set[str] = field(default_factory=set)
    reward: RewardBreakdown | None = None


class Shop:
    """The site for one goal: renders pages and applies actions to a :class:`ShopState`."""

    def __init__(
        self, catalogue: Catalogue, engine: SearchEngine, goal: dict[str, Any], *, show_reviews: bool = False
    ) -> None:
        self.catalogue = catalogue
        self.engine = engine
        self.goal = goal
        self.show_reviews = show_reviews
        self.state = ShopState()

    # ------------------------------------------------------------------ rendering
    def _nodes(self) -> list[tuple[str, str]]:
        state, instruction = self.state, self.goal["instruction_text"]
        head = [(_TEXT, "Instruction:"), (_TEXT, instruction)]
        if state.page == "search":
            return [(_TEXT, "WebShop"), *head, (_BUTTON, "Search")]
        if state.page == "done":
            score = state.reward.total if state.reward is not None else 0.0
            return [
                (_TEXT, "Thank you for shopping with us!"),
                (_TEXT, "Your score (min 0.0, max 1.0)"),
                (_TEXT, f"{score}"),
            ]
        nodes = [*head, (_BUTTON, "Back to Search")]
        if state.page == "results":
            nodes.append((_TEXT, f"Page {state.page_num} (Total results: {len(state.hits)})"))
            if state.page_num > 1:
                nodes.append((_BUTTON, "< Prev"))
            nodes.append((_BUTTON, "Next >"))
            for index in page_of(state.hits, state.page_num):
                product = self.catalogue.products[index]
                nodes += [(_LINK, product["asin"]), (_TEXT, product["Title"]), (_TEXT, product["Price"])]
            return nodes
        product = self.catalogue.product(state.asin or "")
        nodes.append((_BUTTON, "< Prev"))
        if state.page == "item":
            for name, values in product["options"].items():
                nodes.append((_TEXT, name))
                nodes += [(_OPTION, value) for value in values]
            rating = product["Rating"] if self.show_reviews else "N.A."
            nodes += [
                (_TEXT, product["Title"]),
                (_TEXT, f"Price: {product['Price']}"),
                (_TEXT, f"Rating: {rating}"),
                (_BUTTON, "Description"),
                (_BUTTON, "Features"),
                (_BUTTON, "Reviews"),
                (_BUTTON, "Buy Now"),
            ]
        elif state.page == "description":
            nodes.append((_TEXT, product["Description"]))
        elif state.page == "features":
            nodes += [(_TEXT, bullet) for bullet in product["BulletPoints"]]
        elif state.page == "reviews" and self.show_reviews:
            for review in product["Reviews"]:
                nodes += [(_TEXT, f'"{review["title"]}"'), (_TEXT, str(review["score"])), (_TEXT, review["body"])]
        return nodes

    def observation(self, mode: ObservationMode = "text") -> str:
        nodes = self._nodes()
        if mode == "text":
            return SEP.join(text for _, text in nodes)
        selected = set(self.state.options.values())
        prefix, lines = "", []
        for kind, text in nodes:
            if kind == _BUTTON:
                lines.append(f"[button] {text} [button_]")
            elif kind == _OPTION and text in selected:
                lines.append(f"  [clicked button] {text} [clicked button_]")
                prefix = f"You have clicked {text}.\n" + prefix
            elif kind == _OPTION:
                lines.append(f"  [button] {text} [button_]")
            elif kind == _LINK:
                tag = "clicked button" if text in self.state.visited else "button"
                lines.append(f"\n[{tag}] {text} [{tag}_]")
            else:
                lines.append(text)
        return prefix + "".join(line + "\n" for line in lines)

    def anchor_text(self) -> str:
        """The text observation without the instruction (GiGPO's anchor state; the task id is hashed with it)."""
        nodes = [
            node
            for node in self._nodes()
            if node[0] != _TEXT or node[1] not in ("Instruction:", self.goal["instruction_text"])
        ]
        return f"{self.state.page}|" + SEP.join(text for _, text in nodes)

    def clickables(self) -> list[str]:
        """Lowercased button and link texts in page order, then option values; duplicates collapse."""
        nodes = self._nodes()
        names = [text.lower() for kind, text in nodes if kind in (_BUTTON, _LINK)]
        names += [text for kind, text in nodes if kind == _OPTION]
        return list(dict.fromkeys(names))

    @property
    def has_search_bar(self) -> bool:
        return self.state.page == "search"

    # ------------------------------------------------------------------ transitions
    def step(self, action: str) -> bool:
        """Apply ``action``; returns whether it was valid (an invalid action changes nothing)."""
        if self.state.page == "done":
            return False
        name, arg = parse_action(action)
        if name == "search" and arg:
            self._search(arg)
            return True
        if name != "click" or arg is None or arg == "search" or arg not in self.clickables():
            return False
        self._click(arg)
        return True

    def _search(self, query: str) -> None:
        state = self.state
        state.page, state.keywords, state.page_num = "results", query, 1
        state.hits = self.engine.search(query)
        state.asin, state.options = None, {}

    def _click(self, target: str) -> None:
        state = self.state
        if target == "back to search":
            self.state = ShopState()
        elif state.page == "results":
            if target == "next >":
                state.page_num += 1
            elif target == "< prev":
                state.page_num -= 1
            else:
                state.asin = target.upper()
                state.page, state.options = "item", {}
                state.visited.add(state.asin)
        elif state.page == "item":
            product = self.catalogue.product(state.asin or "")
            if target == "< prev":
                state.page, state.asin, state.options = "results", None, {}
            elif target in SUB_PAGES:
                state.page = target  # type: ignore[assignment]
            elif target == "buy now":
                state.reward = get_reward(product, self.goal, product["price"], dict(state.options))
                state.page = "done"
            else:
                for name, values in product["options"].items():
                    if target in values:
                        state.options[name] = target
        elif target == "< prev":  # a sub-page
            state.page = "item"
