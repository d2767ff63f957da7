"""Message contents for the Math env (chat rendering happens in resrl_agent.rollout)."""

from __future__ import annotations

from envs.base import PromptBuilder

__all__ = ["PROMPTS", "SYSTEM", "corpus_texts"]

SYSTEM = "Solve the math problem. Reason step by step, then give the final answer inside \\boxed{}."


class MathPrompts(PromptBuilder):
    system_prompt = SYSTEM


PROMPTS = MathPrompts()


def corpus_texts() -> list[str]:
    """Texts for the tiny model's tokenizer corpus: generated problems with boxed answers."""
    from envs.math.actions import FEEDBACK
    from envs.math.tasks import generated_task

    texts = [SYSTEM, FEEDBACK]
    for index in range(300):
        task = generated_task("train", index)
        texts.append(f"{task.problem}\nThe answer is \\boxed{{{task.answer}}}.")
    return texts
