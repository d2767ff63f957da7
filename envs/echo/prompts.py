"""Message contents for the Echo env (chat rendering happens in resrl_agent.rollout)."""

from __future__ import annotations

from envs.base import PromptBuilder

SYSTEM = "You are a helpful agent. Reply with exactly one word inside <action>...</action>."


class EchoPrompts(PromptBuilder):
    system_prompt = SYSTEM


PROMPTS = EchoPrompts()


def corpus_texts() -> list[str]:
    """Texts for the tiny model's tokenizer corpus."""
    from envs.echo.env import WORDS

    return [f"Say the word: {w}\nYou said: {w}\n<action>{w}</action>" for w in WORDS] + [SYSTEM]
