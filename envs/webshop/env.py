"""``resrl/WebShop-v0``: the WebShop text environment on the shipped catalogue, with the original reward.

``reset(seed, options)`` picks a goal: ``options={"task_id": "webshop-12"}`` (goal 12), or
``{"split": "train" | "test" | "all"}`` to draw one uniformly with the env's RNG (verl-agent's way; ``test`` is
goals 0-499, ``train`` the rest). The first observation is the search page. ``step(action)`` takes
``search[query]`` (any page) or ``click[target]`` (a clickable of the page); anything else is invalid: nothing
changes, reward 0, ``action_valid=False``. The episode terminates on Buy Now and is truncated after ``max_steps``
(15) steps.

Reward: on Buy Now, ``info["score"]`` is the original's reward in [0, 1] and ``won`` is ``score == 1.0``. The step
reward is ``success_reward`` (10) on a win and 0 otherwise (``reward_mode="success"``, verl-agent's), or the raw
score (``reward_mode="score"``). Every other step gives 0.

Info keys: ``anchor`` (hash of the page text without the instruction, within the task), ``action_valid``, ``won``,
``task_id``, ``available_actions`` (``search[<your query>]`` on the search page, then ``click[c]`` for every
clickable), ``expert_action`` (None once done), ``score``, ``clickables``, ``has_search_bar``, ``page``, ``step``,
and on Buy Now ``reward_info`` (every reward component) and ``asin`` (the product bought).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from envs.base import INFO_AVAILABLE_ACTIONS, INFO_EXPERT_ACTION, EnvError, TextEnv
from envs.webshop.catalogue import Catalogue, load_catalogue
from envs.webshop.expert import expert_action, expert_query
from envs.webshop.search import SearchEngine
from envs.webshop.site import Shop

__all__ = ["SEARCH_PLACEHOLDER", "WebShopConfig", "WebShopEnv", "shared_engine", "task_index"]

SEARCH_PLACEHOLDER = "search[<your query>]"
_TASK_PREFIX = "webshop-"


class WebShopConfig(BaseModel):
    """Keyword arguments of :class:`WebShopEnv` (validated at ``make``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    observation_mode: Literal["text", "text_rich"] = Field("text", description="The original's observation modes.")
    max_steps: int = Field(15, ge=1, description="Steps before truncation (verl-agent's env.max_steps).")
    reward_mode: Literal["success", "score"] = Field(
        "success", description="'success': success_reward on a win, else 0 (verl-agent); 'score': the raw score."
    )
    success_reward: float = Field(10.0, description="Step reward of a won purchase in 'success' mode.")
    split: Literal["train", "test", "all"] = Field("train", description="Goals drawn by resets without a task_id.")
    catalogue_path: str | None = Field(None, description="A generated catalogue file; None uses the shipped one.")
    num_products: int | None = Field(None, ge=1, description="Use only the first N products (and their goals).")
    show_reviews: bool = Field(False, description="Show reviews and ratings (the original's master hides them).")


@lru_cache(maxsize=4)
def shared_engine(catalogue_path: str | None, num_products: int | None) -> tuple[Catalogue, SearchEngine]:
    """The catalogue and its BM25 index, built once per process and shared by every env instance."""
    catalogue = load_catalogue(catalogue_path, num_products)
    return catalogue, SearchEngine(catalogue.products)


def task_index(task_id: Any, num_goals: int) -> int:
    """Goal index of ``task_id`` (``"webshop-12"``, ``"12"`` or ``12``)."""
    text = str(task_id)
    number = text[len(_TASK_PREFIX) :] if text.startswith(_TASK_PREFIX) else text
    if not number.isdigit() or int(number) >= num_goals:
        raise EnvError(
            f"unknown task_id {task_id!r} for resrl/WebShop-v0",
            hint=f"task ids are 'webshop-0' to 'webshop-{num_goals - 1}'",
        )
    return int(number)


class WebShopEnv(TextEnv):
    """WebShop on the shipped catalogue; see the module docstring for the contract."""

    # kwargs a client of the env server may set: never catalogue_path (a path on the server)
    remote_kwargs: ClassVar[frozenset[str]] = frozenset(
        {"observation_mode", "max_steps", "reward_mode", "success_reward", "split", "num_products", "show_reviews"}
    )

    def __init__(self, *, render_mode: str | None = None, **kwargs: Any) -> None:
        super().__init__(render_mode=render_mode)
        try:
            self.config = WebShopConfig(**kwargs)
        except ValueError as error:
            raise EnvError(f"invalid resrl/WebShop-v0 kwargs: {error}") from None
        self.catalogue, self.engine = shared_engine(self.config.catalogue_path, self.config.num_products)
        self.shop: Shop | None = None
        self._task_id = ""
        self._expert_query = ""
        self._steps = 0
        self._done = True

    def task_ids(self, split: str = "all") -> list[str]:
        return [f"{_TASK_PREFIX}{i}" for i in self.catalogue.split_range(split)]

    @property
    def goal(self) -> dict[str, Any]:
        if self.shop is None:
            raise EnvError("no goal yet; call reset() first")
        return self.shop.goal

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        options = dict(options or {})
        task_id = options.pop("task_id", None)
        split = options.pop("split", self.config.split)
        if options:
            raise EnvError(f"unknown reset options {sorted(options)}", hint="use task_id or split")
        if task_id is not None:
            index = task_index(task_id, len(self.catalogue.goals))
        else:
            choices = self.catalogue.split_range(str(split))
            index = choices[int(self.np_random.integers(len(choices)))]
        goal = self.catalogue.goals[index]
        self._task_id = f"{_TASK_PREFIX}{index}"
        self.shop = Shop(self.catalogue, self.engine, goal, show_reviews=self.config.show_reviews)
        self._expert_query = expert_query(goal, self.engine, self.catalogue.index_by_asin[goal["asin"]])
        self._steps = 0
        self._done = False
        return self._observe(self.shop.observation(self.config.observation_mode)), self._info(action_valid=True)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._done or self.shop is None:
            raise EnvError("step() called on a finished episode; call reset() first")
        if not isinstance(action, str):
            raise EnvError(f"action must be a str, got {type(action).__name__}")
        self._steps += 1
        action_valid = self.shop.step(action)
        outcome = self.shop.state.reward
        terminated = outcome is not None
        truncated = not terminated and self._steps >= self.config.max_steps
        self._done = terminated or truncated
        reward = 0.0
        if outcome is not None:
            won = outcome.total == 1.0
            reward = outcome.total if self.config.reward_mode == "score" else self.config.success_reward * won
        observation = self._observe(self.shop.observation(self.config.observation_mode))
        return observation, float(reward), terminated, truncated, self._info(action_valid=action_valid)

    def _info(self, *, action_valid: bool) -> dict[str, Any]:
        shop = self.shop
        assert shop is not None  # only called after reset
        outcome = shop.state.reward
        score = outcome.total if outcome is not None else 0.0
        clickables = shop.clickables() if outcome is None else []
        available = ([SEARCH_PLACEHOLDER] if shop.has_search_bar else []) + [
            f"click[{c}]" for c in clickables if c != "search"
        ]
        extra: dict[str, Any] = {
            INFO_AVAILABLE_ACTIONS: available,
            INFO_EXPERT_ACTION: expert_action(shop, self._expert_query),
            "score": score,
            "clickables": clickables,
            "has_search_bar": shop.has_search_bar,
            "page": shop.state.page,
            "step": self._steps,
        }
        if outcome is not None:
            extra["reward_info"] = outcome.as_dict()
            extra["asin"] = shop.state.asin
        return self.make_info(
            task_id=self._task_id,
            anchor_text=shop.anchor_text(),
            action_valid=action_valid,
            won=outcome is not None and outcome.total == 1.0,
            **extra,
        )
