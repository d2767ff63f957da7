"""Message contents for the function-calling env (chat rendering happens in resrl_agent.rollout)."""

from __future__ import annotations

import json
from typing import Any

from envs.base import PromptBuilder

SYSTEM = (
    "You are an assistant that completes the user's requests by calling functions. In each turn, call functions "
    "until the request is done, then answer briefly without calls. To call functions, reply with "
    '<tool_call>{"name": "<function>", "arguments": {...}}</tool_call> blocks (several allowed). '
    "If a request cannot be done with the available functions or lacks information, say so without calling."
)
ACTION_HINT = 'Call functions with <tool_call>{"name": ..., "arguments": {...}}</tool_call> or answer in plain text.'


def _short_description(doc: dict[str, Any]) -> str:
    description: str = doc.get("description", "")
    return description.split("Tool description: ", 1)[-1].strip()


def render_tool(doc: dict[str, Any]) -> str:
    """One line per function: ``name(arg: type, opt?: type) - what it does``."""
    props = doc.get("parameters", {}).get("properties", {})
    required = set(doc.get("parameters", {}).get("required", []))
    args = ", ".join(
        f"{name}{'' if name in required else '?'}: {spec.get('type', 'any')}" for name, spec in props.items()
    )
    return f"- {doc['name']}({args}): {_short_description(doc)}"


def turn_message(user_text: str, new_tool_docs: list[dict[str, Any]]) -> str:
    """A user turn, preceded by the functions that became available with it (all of them at the first turn)."""
    if not new_tool_docs:
        return user_text
    tools = "\n".join(render_tool(doc) for doc in new_tool_docs)
    return f"Available functions:\n{tools}\n\nUser: {user_text}"


def tool_result(name: str, result: str) -> str:
    return f"<tool_response>{json.dumps({'name': name, 'content': result}, ensure_ascii=False)}</tool_response>"


def user_message(observation: str) -> str:
    return observation


def corpus_texts() -> list[str]:
    """Texts for the tiny model's tokenizer corpus: tool lines, user requests, calls and results."""
    from envs.function_calling.generator import generate_task
    from tools.bfcl import BACKEND_CLASSES, func_docs

    texts = [SYSTEM, ACTION_HINT]
    for class_name in BACKEND_CLASSES:
        texts.extend(render_tool(doc) for doc in func_docs(class_name))
    for index in range(120):
        task = generate_task(index)
        texts.extend(task.user_turns)
        for turn in task.ground_truth:
            texts.extend(turn)
    texts.append(tool_result("cd", '{"current_working_directory": "document"}'))
    texts.append('<tool_call>{"name": "ls", "arguments": {"a": true}}</tool_call>')
    return texts


class FunctionCallingPrompts(PromptBuilder):
    """The env's observations (user requests with their function list, tool results) as user messages."""

    system_prompt = SYSTEM


PROMPTS = FunctionCallingPrompts()
