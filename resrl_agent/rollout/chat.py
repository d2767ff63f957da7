"""Chat formatting with token-exact bookkeeping: render messages once, append env replies as delta tokens.

The model's sampled ids are kept verbatim; only the env's messages are rendered and tokenized. A delta is found by
rendering a fixed short conversation with and without the new messages and taking the suffix after the last eos;
the chat template must be prefix-stable for that to be exact, which :meth:`ChatFormatter.check_prefix_stable` checks
once at start-up (a template that is not gets a clear error, with window mode as the way out).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from resrl_agent.errors import RolloutError

__all__ = ["ChatFormatter"]

Message = dict[str, Any]
_PROBE_BASE: list[Message] = [
    {"role": "system", "content": "s"},
    {"role": "user", "content": "u"},
    {"role": "assistant", "content": "a"},
]


class ChatFormatter:
    """Renders env messages with the tokenizer's chat template and tokenizes them."""

    def __init__(self, tokenizer: Any) -> None:
        if getattr(tokenizer, "chat_template", None) is None:
            raise RolloutError(
                "the tokenizer has no chat_template; use an instruct checkpoint or `resrl-agent "
                "make-model`, which writes one"
            )
        self.tokenizer = tokenizer
        self.eos_token: str = tokenizer.eos_token
        self.eos_token_id: int = int(tokenizer.eos_token_id)

    def render(
        self,
        messages: Sequence[Message],
        *,
        tools: list[dict[str, Any]] | None = None,
        add_generation_prompt: bool = False,
    ) -> str:
        text = self.tokenizer.apply_chat_template(
            list(messages), tools=tools, tokenize=False, add_generation_prompt=add_generation_prompt
        )
        return str(text)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_ids(self, messages: Sequence[Message], *, tools: list[dict[str, Any]] | None = None) -> list[int]:
        """The whole prompt, ending with the assistant header (turn 0 in concat mode, every turn in window mode)."""
        return self.encode(self.render(messages, tools=tools, add_generation_prompt=True))

    def _split(self, new_messages: Sequence[Message], tools: list[dict[str, Any]] | None) -> tuple[str, str, int]:
        before = self.render(_PROBE_BASE, tools=tools)
        after = self.render([*_PROBE_BASE, *new_messages], tools=tools, add_generation_prompt=True)
        if not after.startswith(before):
            raise RolloutError(
                "the chat template is not prefix-stable: rendering a conversation with a new message changes the "
                "text of the earlier messages, so delta tokens cannot be appended exactly; use "
                "rollout.context_mode=window (each turn is rendered whole)"
            )
        if self.eos_token not in before:
            raise RolloutError(
                f"the chat template does not close assistant turns with the eos token "
                f"{self.eos_token!r}; use rollout.context_mode=window"
            )
        cut = before.rindex(self.eos_token) + len(self.eos_token)
        return before, after, cut

    def delta_ids(
        self,
        new_messages: Sequence[Message],
        *,
        tools: list[dict[str, Any]] | None = None,
        response_ended_with_eos: bool = True,
    ) -> list[int]:
        """Tokens to append after an assistant response so the context equals a full render with ``new_messages``.

        Starts right after the response's eos (the template's separator, the new messages, the next assistant
        header). A response cut at max_new_tokens gets the eos it lacks, as a prompt token (it was not sampled).
        """
        _, after, cut = self._split(new_messages, tools)
        delta = self.encode(after[cut:])
        return delta if response_ended_with_eos else [self.eos_token_id, *delta]

    def check_prefix_stable(self, *, tools: list[dict[str, Any]] | None = None) -> None:
        """Raise RolloutError unless appending delta tokens reproduces the full render's tokens exactly."""
        probe = [{"role": "user", "content": "next observation"}]
        _, after, cut = self._split(probe, tools)
        if self.encode(after[:cut]) + self.encode(after[cut:]) != self.encode(after):
            raise RolloutError(
                "tokenizing the conversation in two pieces at the eos token differs from tokenizing it "
                "whole; use rollout.context_mode=window"
            )
