"""The one record that flows from env to loss: ``Turn`` inside ``Episode``, collated into a padded ``Batch``.

Token ids in a Turn are exactly what the tokenizer produced for the env's messages and what the inference
engine sampled for the model's replies; they are never produced by decoding and re-encoding text.

Context modes (docs/design.md "The one record"):
- ``concat``: the conversation is one growing sequence. ``Turn.prompt_ids`` holds the tokens appended since the
  previous turn's response (the whole prompt at turn 0). A training row is an episode with one assistant span
  per turn; the loss covers the spans only.
- ``window``: each turn is its own prompt (system + task + the last k turns of history). ``Turn.prompt_ids`` holds
  that whole prompt; a training row is one turn.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, get_args

import torch

from resrl_agent.errors import RecordError
from resrl_agent.files import atomic_write, iter_jsonl_lines

__all__ = [
    "SCHEMA_VERSION",
    "Batch",
    "ContextMode",
    "Episode",
    "StopReason",
    "Turn",
    "collate",
    "iter_episodes",
    "make_group_id",
    "read_episodes",
    "write_episodes",
]

SCHEMA_VERSION = 1
ContextMode = Literal["concat", "window"]
StopReason = Literal["terminated", "truncated", "max_turns", "context_limit", "env_error"]
_STOP_REASONS = frozenset(get_args(StopReason))
_CONTEXT_MODES = frozenset(get_args(ContextMode))


@dataclass(frozen=True, slots=True)
class Turn:
    """One generation and the env's reply (GiGPO's "step").

    Attributes:
        prompt_ids: concat mode: tokens appended since the previous response (whole prompt at turn 0);
            window mode: the whole prompt of this turn.
        response_ids: the sampled token ids, exactly as the engine returned them (ending with eos when it stopped).
        response_logprobs: log softmax(logits / T) of each sampled token under the sampling policy (Contract 6).
        observation: the observation text the model acted on (for inspection; never re-tokenized).
        response_text: the decoded response (for inspection and parsing only; never re-tokenized).
        action: the parsed env action, None when the text did not parse.
        format_valid: the text parsed (set by the rollout loop, Contract 4).
        action_valid: the env accepted the action (``info["action_valid"]``); False when not parsed.
        reward: the env's step reward (0 when not parsed, Contract 3).
        anchor: the anchor key of the state the model acted on (Contract 5).
        expert_action: the env's expert action at the state the model acted on (``info["expert_action"]`` before
            the step), where the env has an expert: the label DAgger trains on. None otherwise.
    """

    prompt_ids: list[int]
    response_ids: list[int]
    response_logprobs: list[float]
    observation: str = ""
    response_text: str = ""
    action: str | None = None
    format_valid: bool = True
    action_valid: bool = True
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    anchor: str = ""
    expert_action: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise RecordError if the turn breaks an invariant of the record."""
        if len(self.response_ids) != len(self.response_logprobs):
            raise RecordError(
                f"turn has {len(self.response_ids)} response ids but {len(self.response_logprobs)} logprobs; "
                "store one logprob per sampled token"
            )
        if not self.response_ids:
            raise RecordError("turn has no response tokens; a turn is one generation of at least one token")
        for name, ids in (("prompt_ids", self.prompt_ids), ("response_ids", self.response_ids)):
            if any((not isinstance(i, int)) or isinstance(i, bool) or i < 0 for i in ids):
                raise RecordError(f"{name} must be non-negative ints")
        if any(lp > 0.0 or math.isnan(lp) for lp in self.response_logprobs):
            raise RecordError("response_logprobs must be <= 0 and not NaN (they are log-probabilities)")
        if not self.format_valid:
            if self.action is not None:
                raise RecordError(f"format_valid=False but action={self.action!r}; an unparsed turn has no action")
            if self.reward != 0.0 or self.action_valid:
                raise RecordError("an unparsed turn (format_valid=False) has reward 0 and action_valid=False")

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt_ids": list(self.prompt_ids),
            "response_ids": list(self.response_ids),
            "response_logprobs": list(self.response_logprobs),
            "observation": self.observation,
            "response_text": self.response_text,
            "action": self.action,
            "format_valid": self.format_valid,
            "action_valid": self.action_valid,
            "reward": self.reward,
            "terminated": self.terminated,
            "truncated": self.truncated,
            "anchor": self.anchor,
            "expert_action": self.expert_action,
            "info": _jsonable(self.info, "info"),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Turn:
        _check_keys(data, _TURN_FIELDS, "turn")
        return cls(**{key: data[key] for key in _TURN_FIELDS if key in data})


@dataclass(frozen=True, slots=True)
class Episode:
    """One rollout of one sample of one task: the turns plus what the grouping step needs.

    ``group_id`` is stable (derived from task and iteration with :func:`make_group_id`, never a uuid) so that a
    re-run or a resumed run groups identically. ``return_`` is the sum of the turns' step rewards.
    """

    task_id: str
    group_id: str
    sample_idx: int
    env_id: str
    turns: list[Turn]
    seed: int | None = None
    policy_version: int = 0
    context_mode: ContextMode = "concat"
    return_: float | None = None
    won: bool = False
    stop_reason: StopReason = "terminated"
    metrics: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.return_ is None:
            object.__setattr__(self, "return_", float(sum(t.reward for t in self.turns)))

    @property
    def total_return(self) -> float:
        assert self.return_ is not None  # set in __post_init__
        return self.return_

    @property
    def num_tokens(self) -> int:
        return sum(len(t.prompt_ids) + len(t.response_ids) for t in self.turns)

    def validate(self) -> None:
        """Raise RecordError naming the first broken invariant (turn index included)."""
        if self.context_mode not in _CONTEXT_MODES:
            raise RecordError(f"context_mode={self.context_mode!r}; expected one of {sorted(_CONTEXT_MODES)}")
        if self.stop_reason not in _STOP_REASONS:
            raise RecordError(f"stop_reason={self.stop_reason!r}; expected one of {sorted(_STOP_REASONS)}")
        if self.sample_idx < 0:
            raise RecordError(f"sample_idx={self.sample_idx} must be >= 0")
        for k, turn in enumerate(self.turns):
            try:
                turn.validate()
            except RecordError as err:
                raise RecordError(f"episode {self.group_id}/{self.sample_idx} turn {k}: {err}") from None
            if (turn.terminated or turn.truncated) and k != len(self.turns) - 1:
                raise RecordError(
                    f"episode {self.group_id}/{self.sample_idx}: turn {k} ends the episode "
                    f"but {len(self.turns) - 1 - k} turn(s) follow it"
                )
        if self.turns and self.context_mode == "concat" and not self.turns[0].prompt_ids:
            raise RecordError("concat episode: turn 0 must carry the whole first prompt in prompt_ids")
        expected = sum(t.reward for t in self.turns)
        if not math.isclose(self.total_return, expected, rel_tol=1e-9, abs_tol=1e-9):
            raise RecordError(f"return_={self.return_} differs from the sum of step rewards {expected}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "task_id": self.task_id,
            "group_id": self.group_id,
            "sample_idx": self.sample_idx,
            "env_id": self.env_id,
            "seed": self.seed,
            "policy_version": self.policy_version,
            "context_mode": self.context_mode,
            "return_": self.return_,
            "won": self.won,
            "stop_reason": self.stop_reason,
            "metrics": _jsonable(self.metrics, "metrics"),
            "turns": [t.to_dict() for t in self.turns],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Episode:
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise RecordError(f"episode schema_version={version!r}; this resrl-agent reads version {SCHEMA_VERSION}")
        _check_keys(data, (*_EPISODE_FIELDS, "schema_version"), "episode")
        fields = {key: data[key] for key in _EPISODE_FIELDS if key in data and key != "turns"}
        turns = [Turn.from_dict(t) for t in data.get("turns", [])]
        return cls(turns=turns, **fields)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> Episode:
        return cls.from_dict(json.loads(line))


_TURN_FIELDS = tuple(Turn.__dataclass_fields__)
_EPISODE_FIELDS = tuple(Episode.__dataclass_fields__)


def make_group_id(task_id: str, iteration: int) -> str:
    """A stable, readable group id for the G rollouts of ``task_id`` sampled at ``iteration``."""
    return f"it{iteration}/{task_id}"


def _check_keys(data: Mapping[str, Any], allowed: Sequence[str], what: str) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise RecordError(f"{what} record has unknown field(s) {unknown}; known fields: {sorted(allowed)}")


def _jsonable(value: Any, path: str) -> Any:
    """Convert info/metrics values to JSON types without losing data; raise naming the offending key."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise RecordError(f"{path}: key {key!r} is not a str; JSONL records need string keys")
            out[key] = _jsonable(item, f"{path}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [_jsonable(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return sorted(_jsonable(item, f"{path}[]") for item in value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return _jsonable(value.item(), path)  # numpy / torch scalars
    raise RecordError(
        f"{path} holds a {type(value).__name__}, which JSONL cannot store; convert it to "
        "str/int/float/bool/list/dict in the env's info"
    )


def write_episodes(path: str | os.PathLike[str], episodes: Iterable[Episode], *, append: bool = False) -> int:
    """Write episodes as JSON lines (one episode per line, each with its schema version); returns the count."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    count = 0

    def write(handle: IO[bytes]) -> None:
        nonlocal count
        for episode in episodes:
            episode.validate()
            handle.write(episode.to_json().encode("utf-8") + b"\n")
            count += 1

    if append:
        with target.open("ab") as handle:
            write(handle)
    else:
        atomic_write(target, write)  # a crash leaves the old file or the new one, never half of it
    return count


def iter_episodes(path: str | os.PathLike[str]) -> Iterator[Episode]:
    """Read episodes back one by one; a bad line raises RecordError with the file and line number (a torn last
    line, which a crash mid-append leaves, is skipped with a warning)."""
    source = Path(path)
    if not source.is_file():
        raise RecordError(f"no episode file at {source}; write one with `resrl-agent rollout CONFIG`")
    for number, line in iter_jsonl_lines(source):
        try:
            episode = Episode.from_json(line)
            episode.validate()
        except json.JSONDecodeError as err:
            raise RecordError(f"{source}:{number}: not valid JSON ({err.msg} at column {err.colno})") from None
        except (RecordError, TypeError) as err:
            raise RecordError(f"{source}:{number}: {err}") from None
        yield episode


def read_episodes(path: str | os.PathLike[str]) -> list[Episode]:
    return list(iter_episodes(path))


@dataclass(frozen=True)
class Batch:
    """Right-padded token tensors built from episodes by :func:`collate` (the only place that pads).

    Alignment: ``old_logprobs[b, t]`` is the rollout logprob of token ``input_ids[b, t]``, which the model
    predicts from position ``t - 1``; the learner's logprobs use the same convention
    (``log_softmax(logits[:, :-1]).gather(input_ids[:, 1:])`` written at positions ``1..T-1``).
    Response tokens never sit at position 0 because every turn has a prompt.

    Turn table: every turn that owns a span in the batch has one entry (``N`` entries), in episode order and
    within an episode in turn order. ``span_idx`` maps a response token to its entry, so a per-turn value (an
    advantage) becomes a token tensor with :meth:`expand_turn_values`. The ``turn_*`` and ``episode_*`` tensors
    are everything an advantage estimator reads (``resrl_agent.algorithms.estimators``): per turn its reward,
    whether its output parsed, its episode, its number there and its step group; per episode (``E`` entries,
    episodes without turns included) its return, group and response length.
    """

    mode: ContextMode
    input_ids: torch.Tensor  # [B, T] long, padded with pad_id
    attention_mask: torch.Tensor  # [B, T] bool
    loss_mask: torch.Tensor  # [B, T] bool: exactly the sampled response tokens of the row's span(s)
    old_logprobs: torch.Tensor  # [B, T] float32: rollout logprob at response positions, 0 elsewhere
    span_idx: torch.Tensor  # [B, T] long: index into the turn table for response tokens, -1 elsewhere
    row_episode: torch.Tensor  # [B] long: index of the row's episode in the collated list
    group_idx: torch.Tensor  # [B] long: index of the row's group in ``group_ids``
    turn_episode: torch.Tensor  # [N] long
    turn_number: torch.Tensor  # [N] long: 0, 1, ... within the episode
    turn_anchor_idx: torch.Tensor  # [N] long: step group = (group, anchor), numbered in sorted key order
    turn_reward: torch.Tensor  # [N] float64: the env's step reward as recorded (GiGPO sums and discounts them)
    turn_format_valid: torch.Tensor  # [N] bool: the turn's output parsed (Contract 4)
    episode_return: torch.Tensor  # [E] float32
    episode_group: torch.Tensor  # [E] long: index of the episode's group in ``group_ids``
    episode_response_tokens: torch.Tensor  # [E] long: sampled tokens over all of the episode's turns
    group_ids: tuple[str, ...]
    pad_id: int = 0

    @property
    def num_rows(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def num_turns(self) -> int:
        return int(self.turn_episode.shape[0])

    @property
    def num_episodes(self) -> int:
        return int(self.episode_return.shape[0])

    def expand_turn_values(self, values: torch.Tensor) -> torch.Tensor:
        """Spread one value per turn ([N], turn-table order) onto that turn's response tokens; 0 elsewhere.

        Returns [B, T] float32.
        """
        flat = values.to(torch.float32).reshape(-1)
        if flat.shape[0] != self.num_turns:
            raise RecordError(f"got {flat.shape[0]} turn values for a batch with {self.num_turns} turns")
        on_span = self.span_idx >= 0
        return torch.where(on_span, flat[self.span_idx.clamp(min=0)], torch.zeros((), dtype=torch.float32))


def collate(episodes: Sequence[Episode], mode: ContextMode, *, pad_id: int = 0, max_length: int | None = None) -> Batch:
    """Pad episodes into a Batch: in ``concat`` mode a row is an episode, in ``window`` mode a row is a turn.

    Window rows from a concat-mode episode hold the conversation up to and including that turn's response, with
    the loss on that response only. A window-mode episode cannot be collated in concat mode (its prompts are
    whole prompts, not deltas). Episodes without turns (an env error at reset) give no rows but keep their
    entries in the ``episode_*`` tensors.
    """
    if mode not in _CONTEXT_MODES:
        raise RecordError(f"mode={mode!r}; expected one of {sorted(_CONTEXT_MODES)}")
    group_ids = tuple(dict.fromkeys(e.group_id for e in episodes))
    group_index = {g: i for i, g in enumerate(group_ids)}
    step_keys = sorted({(e.group_id, t.anchor) for e in episodes for t in e.turns})
    step_index = {key: i for i, key in enumerate(step_keys)}

    rows: list[tuple[list[int], list[tuple[int, int, int, list[float]]], int]] = []  # ids, spans, episode
    turn_table: list[tuple[int, int]] = []  # (episode, turn)
    for e_idx, episode in enumerate(episodes):
        if mode == "concat" and episode.context_mode != "concat":
            raise RecordError(
                f"episode {episode.group_id}/{episode.sample_idx} was rolled out in "
                f"{episode.context_mode!r} mode; collate it with mode='window'"
            )
        ids: list[int] = []
        spans: list[tuple[int, int, int, list[float]]] = []  # (start, end, turn entry, logprobs)
        for k, turn in enumerate(episode.turns):
            if episode.context_mode == "window":
                ids = []
                spans = []
            ids.extend(turn.prompt_ids)
            entry = len(turn_table)
            turn_table.append((e_idx, k))
            start = len(ids)
            ids.extend(turn.response_ids)
            spans.append((start, len(ids), entry, turn.response_logprobs))
            if mode == "window":
                rows.append((list(ids), [spans[-1]], e_idx))
        if mode == "concat" and episode.turns:
            rows.append((ids, spans, e_idx))

    num_rows = len(rows)
    width = max((len(r[0]) for r in rows), default=0)
    if max_length is not None and width > max_length:
        raise RecordError(
            f"a row has {width} tokens, over max_length={max_length}; lower rollout.max_context_tokens "
            "or use window mode"
        )
    input_ids = torch.full((num_rows, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((num_rows, width), dtype=torch.bool)
    loss_mask = torch.zeros((num_rows, width), dtype=torch.bool)
    old_logprobs = torch.zeros((num_rows, width), dtype=torch.float32)
    span_idx = torch.full((num_rows, width), -1, dtype=torch.long)
    for b, (ids, spans, _) in enumerate(rows):
        input_ids[b, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[b, : len(ids)] = True
        for start, end, entry, logprobs in spans:
            loss_mask[b, start:end] = True
            old_logprobs[b, start:end] = torch.tensor(logprobs, dtype=torch.float32)
            span_idx[b, start:end] = entry

    used_entries = sorted({entry for _, spans, _ in rows for _, _, entry, _ in spans})
    assert used_entries == list(range(len(turn_table)))  # every turn owns exactly one span
    turn_episode = torch.tensor([e for e, _ in turn_table], dtype=torch.long)
    turn_number = torch.tensor([k for _, k in turn_table], dtype=torch.long)
    turn_anchor_idx = torch.tensor(
        [step_index[(episodes[e].group_id, episodes[e].turns[k].anchor)] for e, k in turn_table], dtype=torch.long
    )
    turns = [episodes[e].turns[k] for e, k in turn_table]
    return Batch(
        mode=mode,
        input_ids=input_ids,
        attention_mask=attention_mask,
        loss_mask=loss_mask,
        old_logprobs=old_logprobs,
        span_idx=span_idx,
        row_episode=torch.tensor([r[2] for r in rows], dtype=torch.long),
        group_idx=torch.tensor([group_index[episodes[r[2]].group_id] for r in rows], dtype=torch.long),
        turn_episode=turn_episode,
        turn_number=turn_number,
        turn_anchor_idx=turn_anchor_idx,
        turn_reward=torch.tensor([t.reward for t in turns], dtype=torch.float64),
        turn_format_valid=torch.tensor([t.format_valid for t in turns], dtype=torch.bool),
        episode_return=torch.tensor([e.total_return for e in episodes], dtype=torch.float32),
        episode_group=torch.tensor([group_index[e.group_id] for e in episodes], dtype=torch.long),
        episode_response_tokens=torch.tensor(
            [sum(len(t.response_ids) for t in e.turns) for e in episodes], dtype=torch.long
        ),
        group_ids=group_ids,
        pad_id=pad_id,
    )
