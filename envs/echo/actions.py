"""Model text -> Echo action: the text inside ``<action>...</action>``, or the whole stripped text."""

from __future__ import annotations

import re

from envs.base import Parsed

_ACTION_RE = re.compile(r"<action>(.*?)</action>", re.DOTALL)


def parse_action(text: str) -> Parsed:
    match = _ACTION_RE.search(text)
    action = (match.group(1) if match else text).strip()
    if not action:
        return Parsed(None, False, "Your reply was empty. Reply with one word, e.g. <action>apple</action>.")
    return Parsed(action, True)
