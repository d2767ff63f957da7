"""The WebShop expert: search for the goal, page to the target, open it, pick the goal's options, buy.

It knows the goal's ASIN. Its query is the instruction without the price clause when the target is among its
top-50 hits, else the target's title. Buying the target with exactly the goal's options always scores 1.0
(the catalogue generator checks it), so the expert wins whenever it reaches the target within the step limit.
"""

from __future__ import annotations

import re
from typing import Any

from envs.webshop.search import PRODUCT_WINDOW, SearchEngine
from envs.webshop.site import Shop

__all__ = ["expert_action", "expert_query"]

_PRICE_CLAUSE = re.compile(r", and price lower than [0-9.]+ dollars$")


def expert_query(goal: dict[str, Any], engine: SearchEngine, target_index: int) -> str:
    """The expert's search query for ``goal`` (lowercase, as actions are)."""
    query = _PRICE_CLAUSE.sub("", goal["instruction_text"]).lower()
    if target_index in engine.search(query):
        return query
    return str(goal["name"]).lower()


def expert_action(shop: Shop, query: str) -> str | None:
    """The expert's next action in ``shop``'s current state (None once the episode is over)."""
    state, goal = shop.state, shop.goal
    target = goal["asin"]
    if state.page == "done":
        return None
    if state.page == "search":
        return f"search[{query}]"
    if state.page == "results":
        target_index = shop.catalogue.index_by_asin[target]
        if target_index not in state.hits:
            return f"search[{query}]"
        target_page = state.hits.index(target_index) // PRODUCT_WINDOW + 1
        if target_page == state.page_num:
            return f"click[{target.lower()}]"
        return "click[next >]" if target_page > state.page_num else "click[< prev]"
    if state.page == "item" and state.asin == target:
        for name in sorted(goal["goal_options"]):
            value = goal["goal_options"][name]
            if state.options.get(name) != value:
                return f"click[{value}]"
        return "click[buy now]"
    return "click[< prev]"  # another product's page, or a sub-page
