"""``resrl/FunctionCalling-v0``: multi-turn function calling over BFCL-compatible stateful backends.

Episode protocol (BFCL's): each task has user turns; within a turn the agent calls tools
(``{"tool_calls": [{"name", "arguments"}]}``) and sees their results, until it answers without calls
(``{"content": "..."}``), which ends the turn. More than ``max_steps_per_turn`` tool-call steps in one turn
fails the task. The model and the ground truth act on SEPARATE backend instances built from the task's initial
config; at the end of each turn the ground-truth calls run on theirs and the turn is checked (state check and
response check, see checker.py). The first failing turn ends the episode.

Reward: ``reward_mode="final"`` gives 1.0 when every turn passes (BFCL's score); ``"per_turn"`` gives
1/num_turns for each passing turn (partial credit). ``info["expert_action"]`` is the ground truth's next action:
all ground-truth calls of the turn, then a final answer.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar, Literal

from envs.base import INFO_EXPERT_ACTION, EnvError, TextEnv
from envs.function_calling import prompts
from envs.function_calling.checker import check_turn
from envs.function_calling.tasks import TASK_SETS, FCTask, load_task, task_ids
from tools.bfcl import BFCLSession, func_docs, openai_tools

__all__ = ["FunctionCallingEnv"]

EXPERT_DONE = "Done."
EXPERT_CANNOT = "I cannot do this with the functions and information I have. Could you give me the missing details?"


class FunctionCallingEnv(TextEnv):
    """Multi-turn function calling; ``reset(options={"task_id": "multi_turn_base_0"})`` or ``{"split": ...}``."""

    max_observation_chars: ClassVar[int] = 65_536
    max_action_chars: ClassVar[int] = 16_384
    # kwargs a client of the env server may set (servers/env_sessions.py check_env_kwargs); num_generated bounded
    remote_kwargs: ClassVar[frozenset[str]] = frozenset(
        {"task_set", "reward_mode", "max_steps_per_turn", "num_generated"}
    )
    remote_kwarg_limits: ClassVar[dict[str, int]] = {"num_generated": 20_000}

    def __init__(
        self,
        *,
        task_set: str = "bfcl_base",
        reward_mode: Literal["final", "per_turn"] = "final",
        max_steps_per_turn: int = 20,
        num_generated: int = 2000,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(render_mode=render_mode)
        if task_set not in TASK_SETS:
            raise EnvError(f"task_set={task_set!r} is unknown", hint=f"choose one of {', '.join(TASK_SETS)}")
        if reward_mode not in ("final", "per_turn"):
            raise EnvError(f"reward_mode={reward_mode!r} is unknown", hint="use 'final' or 'per_turn'")
        if max_steps_per_turn < 1:
            raise EnvError(f"max_steps_per_turn={max_steps_per_turn} must be >= 1")
        self.task_set = task_set
        self.reward_mode = reward_mode
        self.max_steps_per_turn = max_steps_per_turn
        self.num_generated = num_generated
        self._task: FCTask | None = None
        self._done = True

    def task_ids(self, task_set: str | None = None) -> list[str]:
        return task_ids(task_set or self.task_set, num_generated=self.num_generated)

    # ---------------------------------------------------------------- episode
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        task_id = options.get("task_id")
        if task_id is None:
            ids = self.task_ids(options.get("split", self.task_set))
            task_id = ids[int(self.np_random.integers(len(ids)))]
        task = load_task(str(task_id))
        self._task = task
        self._model = BFCLSession(task.initial_config, task.involved_classes, long_context=task.long_context)
        self._truth = BFCLSession(task.initial_config, task.involved_classes, long_context=task.long_context)
        self._withheld = {name for names in task.missed_functions.values() for name in names}
        self._turn = 0
        self._turn_steps = 0
        self._turn_calls = 0
        self._expert_sent_calls = False
        self._model_results: list[str] = []
        self._turns_passed = 0
        self._done = False
        self._tools = self.available_tools()
        observation = self._turn_observation(new_tools=self._available_function_names())
        return self._observe(observation), self._info(observation, action_valid=True, won=False)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._done or self._task is None:
            raise EnvError("step() called on a finished episode; call reset() first")
        if not isinstance(action, str):
            raise EnvError(f"action must be a str, got {type(action).__name__}")
        self._turn_steps += 1
        decoded = _decode_action(action)
        if isinstance(decoded, str):
            return self._invalid(decoded)
        calls, _content = decoded
        if calls:
            if self._turn_steps > self.max_steps_per_turn:
                return self._finish(
                    f"More than {self.max_steps_per_turn} steps in one turn: the task failed.", won=False, reward=0.0
                )
            lines = []
            for name, arguments in calls:
                result = self._model.call(name, [], arguments)
                self._model_results.append(result)
                lines.append(prompts.tool_result(name, result))
            self._turn_calls += len(calls)
            observation = "\n".join(lines)
            return self._observe(observation), 0.0, False, False, self._info(observation, True, False)
        return self._end_turn()

    def _end_turn(self) -> tuple[str, float, bool, bool, dict[str, Any]]:
        assert self._task is not None
        truth_results = [self._truth.execute(call) for call in self._task.ground_truth[self._turn]]
        verdict = check_turn(
            self._model,
            self._truth,
            model_turn_calls=self._turn_calls,
            truth_turn_results=truth_results,
            model_results_so_far=self._model_results,
        )
        if not verdict.passed:
            return self._finish(f"Turn {self._turn + 1} failed: {verdict.reason}.", won=False, reward=0.0)
        self._turns_passed += 1
        turn_reward = 1.0 / self._task.num_turns if self.reward_mode == "per_turn" else 0.0
        self._turn += 1
        if self._turn >= self._task.num_turns:
            final = turn_reward if self.reward_mode == "per_turn" else 1.0
            return self._finish("All turns done.", won=True, reward=final)
        self._turn_steps = 0
        self._turn_calls = 0
        self._expert_sent_calls = False
        new_tools = list(self._task.missed_functions.get(self._turn, []))
        if new_tools:
            self._withheld -= set(new_tools)
            self._tools = self.available_tools()
        observation = self._turn_observation(new_tools=new_tools)
        return self._observe(observation), turn_reward, False, False, self._info(observation, True, False)

    def _finish(self, message: str, *, won: bool, reward: float) -> tuple[str, float, bool, bool, dict[str, Any]]:
        self._done = True
        info = self._info(message, action_valid=True, won=won)
        info["turns_passed"] = self._turns_passed
        return self._observe(message), reward, True, False, info

    def _invalid(self, problem: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        observation = f"Invalid action: {problem}. {prompts.ACTION_HINT}"
        if self._turn_steps > self.max_steps_per_turn:
            return self._finish(
                f"More than {self.max_steps_per_turn} steps in one turn: the task failed.", won=False, reward=0.0
            )
        return self._observe(observation), 0.0, False, False, self._info(observation, False, False)

    # ---------------------------------------------------------------- helpers
    def _available_function_names(self) -> list[str]:
        return [name for name in self._model.function_names if name not in self._withheld]

    def available_tools(self) -> list[dict[str, Any]]:
        """OpenAI schemas of the functions offered right now (miss_func withholds some until their turn)."""
        assert self._task is not None
        return [
            tool
            for cls in self._task.involved_classes
            for tool in openai_tools(cls)
            if tool["function"]["name"] not in self._withheld
        ]

    def _turn_observation(self, *, new_tools: list[str]) -> str:
        assert self._task is not None
        docs = [
            doc
            for cls in self._task.involved_classes
            for doc in func_docs(cls, fresh=False)
            if doc["name"] in new_tools
        ]
        return prompts.turn_message(self._task.user_turns[self._turn], docs)

    def expert_action(self) -> str:
        """The ground truth's next action from here (all of this turn's calls, then a final answer)."""
        assert self._task is not None
        calls = self._task.ground_truth[self._turn] if self._turn < self._task.num_turns else []
        if calls and self._turn_calls == 0:
            named = [self._truth_binding(call) for call in calls]
            return json.dumps({"tool_calls": [{"name": n, "arguments": a} for n, a in named]})
        return json.dumps({"content": EXPERT_DONE if calls else EXPERT_CANNOT})

    def _truth_binding(self, call: str) -> tuple[str, dict[str, Any]]:
        return self._model.bind_call(call)

    def _info(self, observation: str, action_valid: bool, won: bool) -> dict[str, Any]:
        assert self._task is not None
        # The anchor is the state the agent acts in next: turn, backends' state (incl. the private current
        # directory, which changes what the next call does) and the observation.
        state_repr = repr((self._model.raw_state(), self._model.private_state()))
        state_digest = hashlib.blake2b(state_repr.encode("utf-8"), digest_size=12).hexdigest()
        anchor_text = f"turn={self._turn}\nstate={state_digest}\n{observation}"
        return self.make_info(
            task_id=self._task.task_id,
            anchor_text=anchor_text,
            action_valid=action_valid,
            won=won,
            **{INFO_EXPERT_ACTION: self.expert_action(), "tools": self._tools, "turn": self._turn},
        )


def _decode_action(action: str) -> tuple[list[tuple[str, dict[str, Any]]], str] | str:
    """Calls and content of an env action (Contract 1), or a problem description."""
    try:
        obj = json.loads(action)
    except (json.JSONDecodeError, RecursionError):
        return "the action is not a JSON object"
    if not isinstance(obj, dict) or not ({"tool_calls", "content"} & set(obj)):
        return 'the action must be {"tool_calls": [...]} or {"content": "..."}'
    raw_calls = obj.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        return "'tool_calls' must be a list"
    calls = []
    for item in raw_calls:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            return "each tool call needs a 'name'"
        arguments = item.get("arguments", {})
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            return f"the arguments of '{item['name']}' must be an object"
        calls.append((item["name"], arguments))
    content = obj.get("content")
    return calls, content if isinstance(content, str) else ""
