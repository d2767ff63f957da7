"""Model text -> Math action: the content of the last ``\\boxed{...}`` in the reply."""

from __future__ import annotations

from envs.base import Parsed
from envs.math.tasks import last_boxed

FEEDBACK = "No final answer found. Put your final answer inside \\boxed{}, for example \\boxed{42}."


def parse_action(text: str) -> Parsed:
    answer = last_boxed(text)
    if answer is None or not answer:
        return Parsed(None, False, FEEDBACK)
    return Parsed(answer, True)
