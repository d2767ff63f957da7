"""Answer checking with math-verify: symbolic and numeric equivalence of two LaTeX answers.

math-verify guards parsing with ``signal.alarm``, which works only in the main thread. Off the main thread (env
steps in worker threads) it runs without its own timeout; the rollout loop's step timeout bounds the time then.
"""

from __future__ import annotations

import logging
import threading
from functools import lru_cache
from typing import Any

__all__ = ["answers_match"]

logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout disabled" notes off the main thread


def _timeout() -> int | None:
    return 5 if threading.current_thread() is threading.main_thread() else None


@lru_cache(maxsize=4096)
def _parse_reference(answer: str) -> Any:
    from math_verify import parse

    return parse(f"\\boxed{{{answer}}}", parsing_timeout=_timeout())  # type: ignore[arg-type]


def answers_match(reference: str, predicted: str) -> bool:
    """Whether ``predicted`` (the content of the model's \\boxed{}) equals ``reference`` (LaTeX)."""
    from math_verify import parse, verify

    if not predicted.strip():
        return False
    timeout = _timeout()
    gold = _parse_reference(reference)
    guess = parse(f"\\boxed{{{predicted}}}", parsing_timeout=timeout)  # type: ignore[arg-type]
    if not gold or not guess:
        return reference.strip() == predicted.strip()
    return bool(verify(gold, guess, timeout_seconds=timeout))
