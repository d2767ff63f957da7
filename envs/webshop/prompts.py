"""Message contents for WebShop (chat rendering happens in resrl_agent.rollout).

Built like verl-agent's WebShop prompt (our wording): the task is the instruction (the third ``[SEP]`` part of the
first observation); each observation is shown without the instruction, every remaining part in single quotes
joined by ``" [SEP] "``; the admissible actions are listed one per line; the model reasons in ``<think>`` and
answers in ``<action>``. With history, the prompt also gives the number of steps taken, the last
``history_window`` (verl-agent: 2) observation/action pairs and the current step number. verl-agent's list also
shows ``click[search]``, which the env ignores; ours lists only actions the page accepts.

Context modes (docs/design.md): ``window`` mode sends :func:`user_message` every turn; ``concat`` mode sends it once and
then :func:`observation_message`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from envs.base import Message, PromptBuilder
from envs.webshop.actions import CLICK_TOOL, SEARCH_TOOL

__all__ = [
    "PROMPTS",
    "SYSTEM",
    "TOOLS",
    "corpus_texts",
    "format_actions",
    "format_observation",
    "observation_message",
    "task_text",
    "user_message",
]

SEP = " [SEP] "

SYSTEM = (
    "You are an expert shopping agent on the WebShop website. Each turn you see the current web page and the "
    "actions it accepts. Find the product that fits the instruction, choose its options and buy it.\n"
    "You may think first inside <think>...</think>. Then give exactly one action inside <action>...</action>, "
    "for example <action>search[red running shoes]</action> or <action>click[buy now]</action>."
)

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": SEARCH_TOOL,
            "description": "Search the shop for products (works on every page).",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string", "description": "Search keywords."}},
                "required": ["query"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": CLICK_TOOL,
            "description": "Click a button, product id or option value shown on the current page.",
            "parameters": {
                "type": "object",
                "properties": {"target": {"type": "string", "description": "e.g. 'buy now', 'next >', 'b0abc12345'."}},
                "required": ["target"],
            },
        },
    },
]


def task_text(observation: str) -> str:
    """The instruction of a ``text``-mode page: the part after ``Instruction:``."""
    parts = observation.split(SEP)
    if "Instruction:" in parts:
        index = parts.index("Instruction:")
        if index + 1 < len(parts):
            return parts[index + 1]
    return ""


def format_observation(observation: str, task: str) -> str:
    """The page without the instruction, each part quoted (verl-agent's ``format_obs``); other text unchanged."""
    parts = observation.split(SEP)
    if task and task in parts:
        return SEP.join(f"'{part}'" for part in parts[parts.index(task) + 1 :])
    return observation


def format_actions(info: dict[str, Any]) -> str:
    actions = info.get("available_actions") or []
    return "[\n" + "".join(f"'{action}',\n" for action in actions) + "]"


def _instructions() -> str:
    return (
        "Now it is your turn to act. First reason step by step about the page and which admissible action best "
        "advances the shopping goal, inside <think> </think>. Then give one admissible action inside "
        "<action> </action>."
    )


def user_message(
    observation: str,
    info: dict[str, Any],
    *,
    task: str | None = None,
    history: Sequence[tuple[str, str]] = (),
    history_window: int = 2,
    actions: Sequence[str] | None = None,
) -> str:
    """The whole prompt of one turn. ``history`` holds (observation, action) pairs of the earlier steps;
    ``actions`` (default: those of ``history``) every action of the episode so far, when ``history`` holds only the
    last steps (their number is the step count shown)."""
    task = task or info.get("task") or task_text(observation)
    taken = len(history) if actions is None else len(actions)
    current = format_observation(observation, task)
    parts = ["You are an expert autonomous agent shopping on the WebShop website.", f"Your task is to: {task}."]
    recent = list(history)[-history_window:] if history_window > 0 else []
    if recent:
        first = taken - len(recent)
        lines = [
            f"[Observation {first + i + 1}: {format_observation(obs, task)}, Action {first + i + 1}: '{action}']"
            for i, (obs, action) in enumerate(recent)
        ]
        parts.append(
            f"You have taken {taken} step(s) so far. Your last {len(recent)} observation(s) and "
            f"action(s):\n" + "\n".join(lines)
        )
        parts.append(f"You are now at step {taken + 1} and your current observation is: {current}.")
    else:
        parts.append(f"Your current observation is: {current}.")
    parts.append(f"Your admissible actions for this page are:\n{format_actions(info)}.")
    parts.append(_instructions())
    return "\n".join(parts)


def observation_message(observation: str, info: dict[str, Any], *, task: str = "") -> str:
    """A later turn's message in ``concat`` mode: the new page and its admissible actions."""
    return (
        f"Observation: {format_observation(observation, task or task_text(observation))}\n"
        f"Admissible actions:\n{format_actions(info)}"
    )


def corpus_texts() -> list[str]:
    """Texts for the tiny model's tokenizer corpus: prompts, pages and actions of expert episodes (< 1 s).

    Uses a small catalogue generated from the same vocabulary (the shipped one takes longer to index).
    """
    from envs.webshop.catalogue import Catalogue
    from envs.webshop.expert import expert_action, expert_query
    from envs.webshop.generator import generate_catalogue
    from envs.webshop.search import SearchEngine
    from envs.webshop.site import Shop

    catalogue = Catalogue.from_products(generate_catalogue(seed=1, products_per_type=3))
    engine = SearchEngine(catalogue.products)
    texts = [SYSTEM]
    for number, goal in enumerate(catalogue.goals[:40]):
        shop = Shop(catalogue, engine, goal)
        query = expert_query(goal, engine, catalogue.index_by_asin[goal["asin"]])
        history: list[tuple[str, str]] = []
        while (action := expert_action(shop, query)) is not None and len(history) < 15:
            observation = shop.observation()
            search = ["search[<your query>]"] if shop.has_search_bar else []
            info = {"available_actions": search + [f"click[{c}]" for c in shop.clickables() if c != "search"]}
            if history:
                texts.append(observation_message(observation, info, task=goal["instruction_text"]))
            else:
                texts.append(user_message(observation, info, task=goal["instruction_text"]))
            if number % 4 == 0:
                texts.append(shop.observation("text_rich"))
            texts.append(f"<think>I should {action} next.</think><action>{action}</action>")
            history.append((observation, action))
            shop.step(action)
        texts.append(shop.observation())
    return texts


class WebShopPrompts(PromptBuilder):
    """WebShop messages for the rollout loop: the verl-agent-style page prompt, then one message per new page."""

    system_prompt = SYSTEM
    window_text = staticmethod(user_message)

    def initial(self, observation: str, info: dict[str, Any]) -> list[Message]:
        return [{"role": "user", "content": user_message(observation, info)}]

    def reply(self, observation: str, info: dict[str, Any]) -> list[Message]:
        return [{"role": "user", "content": observation_message(observation, info, task=info.get("task", ""))}]


PROMPTS = WebShopPrompts()
