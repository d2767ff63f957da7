"""Message contents for BabyAI (chat rendering happens in resrl_agent.rollout). Static text: no minigrid import.

``concat`` mode: each user message is the observation (:class:`envs.base.PromptBuilder`'s default). ``window`` mode:
every turn is one :func:`user_message`, the current observation and the actions of the window (the last
``rollout.window_turns`` actions, 2 by default), e.g. "Your last actions: turn left, go forward.".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from envs.babyai.actions import ACTIONS
from envs.base import PromptBuilder

SYSTEM = (
    "You are an agent in a grid world, played as a text game. Each turn you see your mission, the objects and walls "
    "in front of you with how many steps away they are, and what you carry. Complete the mission in as few steps as "
    "you can.\n"
    "Actions: turn left, turn right, go forward, pick up, drop, toggle (toggle opens or closes the door in front of "
    "you).\n"
    "Reply with exactly one action inside <action>...</action>, for example <action>go forward</action>."
)


def last_actions_line(actions: Sequence[str]) -> str:
    """ "Your last actions: turn left, go forward." ("Your last action: ..." for one; "" for none)."""
    if not actions:
        return ""
    noun = "actions" if len(actions) != 1 else "action"
    return f"Your last {noun}: {', '.join(actions)}."


def user_message(
    observation: str,
    info: dict[str, Any],
    *,
    history: Sequence[tuple[str, str]] = (),
    history_window: int = 0,
    actions: Sequence[str] | None = None,
) -> str:
    """The whole window-mode prompt of one turn: the observation, then the window's actions (oldest first).

    ``history`` holds the window's (observation acted on, action) pairs; only their actions are shown, since the
    observation already says where everything is. ``actions`` (every action of the episode) supplies the same last
    ``history_window`` actions when given.
    """
    taken = [a for _, a in history] if actions is None else list(actions)
    shown = taken[-history_window:] if history_window > 0 else []
    line = last_actions_line(shown)
    return f"{observation}\n{line}" if line else observation


class BabyAIPrompts(PromptBuilder):
    """BabyAI messages for the rollout loop: the observation (concat), or observation + last actions (window)."""

    system_prompt = SYSTEM
    window_text = staticmethod(user_message)


PROMPTS = BabyAIPrompts()

#: Real observations, as static text: (level, task id, expert steps from reset, observation). tests/envs/test_babyai.py
#: replays each and checks the text is still what the env renders.
EXAMPLES: tuple[tuple[str, str, int, str], ...] = (
    (
        "GoToObj",
        "train-0",
        0,
        "Mission: go to the green key\n"
        "You see a green key 2 steps forward and 1 step right.\n"
        "You see a wall 6 steps forward.\n"
        "You see a wall 2 steps left.\n"
        "You carry nothing.",
    ),
    (
        "GoToLocal",
        "train-1",
        0,
        "Mission: go to the purple box\n"
        "You see a purple box 1 step forward and 1 step left.\n"
        "You see a grey box 2 steps left.\n"
        "You see a red key 1 step forward and 2 steps left.\n"
        "You see a green key 2 steps forward and 2 steps right.\n"
        "You see a grey key 2 steps forward and 3 steps right.\n"
        "You see a wall 4 steps forward.\n"
        "You see a wall 3 steps left.\n"
        "You carry nothing.",
    ),
    (
        "OpenDoor",
        "train-0",
        0,
        "Mission: open the door in front of you\n"
        "You see a closed red door 1 step left.\n"
        "You see a wall 2 steps forward.\n"
        "You carry nothing.",
    ),
    (
        "OpenDoor",
        "train-0",
        9,
        "Mission: open the door in front of you\n"
        "You see an open yellow door 1 step forward.\n"
        "You see a wall 1 step right.\n"
        "You carry nothing.",
    ),
    (
        "UnlockLocal",
        "train-6",
        0,
        "Mission: open the door\n"
        "You see a locked red door 2 steps forward and 2 steps right.\n"
        "You see a wall 2 steps forward.\n"
        "You see a wall 2 steps left.\n"
        "You carry nothing.",
    ),
    (
        "PickupLoc",
        "train-0",
        4,
        "Mission: pick up the grey key\n"
        "You see a red ball 1 step left.\n"
        "You see a yellow key 1 step right.\n"
        "You see a red key 2 steps left.\n"
        "You see a purple box 1 step forward and 2 steps left.\n"
        "You see a purple key 2 steps forward and 2 steps left.\n"
        "You see a wall 3 steps forward.\n"
        "You see a wall 3 steps left.\n"
        "You carry a grey key.",
    ),
    (
        "PutNextLocal",
        "train-0",
        0,
        "Mission: put the green ball next to the green key\n"
        "You see a yellow key 1 step forward and 1 step left.\n"
        "You see a grey ball 1 step forward and 1 step right.\n"
        "You see a green ball 3 steps forward.\n"
        "You see a green key 2 steps forward and 1 step right.\n"
        "You see a red box 2 steps forward and 2 steps right.\n"
        "You see a purple box 3 steps forward and 2 steps right.\n"
        "You see a yellow box 5 steps forward and 1 step right.\n"
        "You see a purple key 4 steps forward and 2 steps right.\n"
        "You see a wall 6 steps forward.\n"
        "You see a wall 2 steps left.\n"
        "You carry nothing.",
    ),
)


def corpus_texts() -> list[str]:
    """Texts for the tiny model's tokenizer corpus: the system prompt, observations, the actions and their replies."""
    observations = [text for _, _, _, text in EXAMPLES]
    texts = [SYSTEM, *observations]
    texts += [f"<action>{action}</action>" for action in ACTIONS]
    texts.append(user_message(observations[0], {}, actions=["turn left", "go forward"], history_window=2))
    texts.append(last_actions_line(["toggle"]))
    return texts
