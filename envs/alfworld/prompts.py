"""Message contents for ALFWorld (chat rendering happens in resrl_agent.rollout).

Two context modes (docs/design.md): in ``concat`` mode the first user message is :func:`user_message` at reset and each
later one is :func:`observation_message`; in ``window`` mode every turn is one :func:`user_message` holding the task,
the last ``k`` steps (``history``), the current observation and the admissible commands.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from functools import cache
from typing import Any

from envs.alfworld.actions import TOOL_NAME
from envs.base import Message, PromptBuilder

SYSTEM = (
    "You are an agent in a household, played as a text game. Each turn you see what happened and the list of "
    "admissible commands. Reach the goal in as few steps as you can.\n"
    "You may think first inside <think>...</think>. Then give exactly one command, copied from the admissible "
    "commands, inside <action>...</action>, for example <action>go to countertop 1</action>."
)

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": TOOL_NAME,
            "description": "Send one command to the household game.",
            "parameters": {
                "type": "object",
                "properties": {
                    "action": {"type": "string", "description": "One admissible command, e.g. 'go to fridge 1'."},
                },
                "required": ["action"],
            },
        },
    }
]


def format_history(history: Sequence[tuple[str, str]], k: int, *, steps_taken: int | None = None) -> str:
    """The last ``k`` (observation, action) steps, numbered from the episode's start.

    ``steps_taken`` (default ``len(history)``) is the episode's step count when ``history`` holds only its last steps.

    Each step shows the observation the action was taken on, then the action; what the last action led to is the
    current observation, which the prompt shows once, after the history (not also as the last step's outcome).
    """
    if k <= 0 or not history:
        return ""
    recent = list(history)[-k:]
    first = (len(history) if steps_taken is None else steps_taken) - len(recent) + 1
    lines = [
        f"[Step {first + i}] Observation: {observation}\nAction: {action}"
        for i, (observation, action) in enumerate(recent)
    ]
    return "\n".join(lines)


def user_message(
    observation: str,
    info: dict[str, Any],
    *,
    history: Sequence[tuple[str, str]] = (),
    history_window: int = 0,
    actions: Sequence[str] | None = None,
) -> str:
    """The whole prompt of one turn: task, earlier actions, recent history, current observation, admissible commands.

    ``history`` holds the earlier steps as (observation acted on, action) pairs, oldest first; ``actions`` (default:
    those of ``history``) every action of the episode so far, when ``history`` holds only the last steps. The
    actions before the shown steps are listed on one line, so the policy remembers where it has been (ALFWorld's
    observations do not say) at a few tokens a step.
    """
    actions = [a for _, a in history] if actions is None else list(actions)
    taken = len(actions)
    parts = []
    task = info.get("task")
    if task:
        parts.append(f"Your task is to: {task}.")
    past = format_history(history, history_window, steps_taken=taken)
    if past:
        shown = min(len(history), history_window)
        if taken > shown:
            parts.append("Your earlier actions: " + ", ".join(actions[: taken - shown]) + ".")
        parts.append(f"Your last {shown} step{'s' if shown != 1 else ''}:\n{past}")
        parts.append(f"You have taken {taken} step{'s' if taken != 1 else ''}. Now you see:\n{observation}")
    else:
        parts.append(f"You see:\n{observation}")
    parts.append(_admissible(info))
    return "\n\n".join(parts)


def observation_message(observation: str, info: dict[str, Any]) -> str:
    """A later turn's message in ``concat`` mode: the new observation and the admissible commands."""
    return f"{observation}\n\n{_admissible(info)}"


def _admissible(info: dict[str, Any]) -> str:
    commands = info.get("available_actions") or []
    return "Admissible commands: " + ", ".join(f"'{c}'" for c in commands if c != "help") + "."


@cache
def _shipped_games() -> list[dict[str, Any]]:
    from envs.alfworld.games import SHIPPED_ARCHIVE

    if not SHIPPED_ARCHIVE.exists():
        return []
    with gzip.open(SHIPPED_ARCHIVE, "rt", encoding="utf-8") as f:
        games: list[dict[str, Any]] = json.load(f)["games"]
    return games


def _corpus_games() -> list[dict[str, Any]]:
    """The games whose texts go into the tokenizer corpus: the first 60 train and 20 per eval split (seed 0).

    Pinned to the set the project first shipped, so shipping more games never changes the tiny model's tokenizer.
    """
    limits = {"train": 60, "valid_seen": 20, "valid_unseen": 20}
    return [
        game
        for game in _shipped_games()
        if int(game["traj_data"]["task_id"].rsplit("-", 1)[1]) < limits.get(game["traj_data"]["split"], 0)
    ]


def corpus_texts() -> list[str]:
    """Texts for the tiny model's tokenizer corpus: prompts, goals, commands and observation sentences."""
    texts = [
        SYSTEM,
        "Nothing happens.",
        "You are not carrying anything.",
        "-= Welcome to TextWorld, ALFRED! =-\n\nYou are in the middle of a room. "
        "Looking quickly around you, you see a cabinet 1, a countertop 1, a drawer 1, a fridge 1, "
        "a microwave 1, and a sinkbasin 1.",
    ]
    for game in _corpus_games():
        texts.append(f"Your task is to: {game['goal_text']}.")
        for command in game["walkthrough"]:
            texts.append(f"<think>I should {command} next.</think><action>{command}</action>")
            words = command.split()
            if words[:2] == ["go", "to"]:
                place = " ".join(words[2:])
                texts.append(f"You arrive at {place}. On the {place}, you see nothing.")
            elif words[0] == "take" and "from" in words:
                thing, place = command[5:].split(" from ", 1)
                texts.append(f"You pick up the {thing} from the {place}.")
            elif words[0] == "move" and " to " in command:
                thing, place = command[5:].split(" to ", 1)
                texts.append(f"You move the {thing} to the {place}.")
            elif words[0] in ("heat", "cool", "clean") and " with " in command:
                thing, tool = command.split(" ", 1)[1].split(" with ", 1)
                texts.append(f"You {words[0]} the {thing} using the {tool}.")
    return texts


class AlfworldPrompts(PromptBuilder):
    """ALFWorld messages for the rollout loop: the task prompt at reset, then observation + admissible commands."""

    system_prompt = SYSTEM
    window_text = staticmethod(user_message)

    def initial(self, observation: str, info: dict[str, Any]) -> list[Message]:
        return [{"role": "user", "content": user_message(observation, info)}]

    def reply(self, observation: str, info: dict[str, Any]) -> list[Message]:
        return [{"role": "user", "content": observation_message(observation, info)}]


PROMPTS = AlfworldPrompts()
