"""Turn/Episode records, JSONL round trips and Batch construction in both context modes, checked by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from resrl_agent.errors import RecordError
from resrl_agent.types import Episode, Turn, collate, make_group_id, read_episodes, write_episodes


def _turn(prompt: list[int], response: list[int], reward: float = 0.0, anchor: str = "a", **kw: object) -> Turn:
    logprobs = [-0.1 * (i + 1) for i in range(len(response))]
    return Turn(
        prompt_ids=prompt, response_ids=response, response_logprobs=logprobs, reward=reward, anchor=anchor, **kw
    )  # type: ignore[arg-type]


def _two_turn_episode(group: str = "g0", sample: int = 0, mode: str = "concat") -> Episode:
    # turn 0: prompt [1, 2, 3], response [10, 11]; turn 1: prompt (delta) [4], response [12, 13, 14]
    return Episode(
        task_id="t",
        group_id=group,
        sample_idx=sample,
        env_id="resrl/Echo-v0",
        context_mode=mode,
        turns=[
            _turn([1, 2, 3], [10, 11], 0.0, "a0"),
            _turn([4] if mode == "concat" else [1, 2, 3, 10, 11, 4], [12, 13, 14], 1.0, "a1", terminated=True),
        ],
        won=True,
    )  # type: ignore[arg-type]


def test_concat_batch_by_hand() -> None:
    short = Episode(task_id="t", group_id="g1", sample_idx=0, env_id="e", turns=[_turn([7], [8], 0.5, "b")])
    batch = collate([_two_turn_episode(), short], "concat", pad_id=0)
    # row 0 = [1 2 3 10 11 4 12 13 14]; row 1 = [7 8] padded with 0 to width 9
    assert batch.input_ids.tolist() == [[1, 2, 3, 10, 11, 4, 12, 13, 14], [7, 8, 0, 0, 0, 0, 0, 0, 0]]
    assert batch.attention_mask.sum(1).tolist() == [9, 2]
    # the loss covers exactly the sampled tokens: positions 3,4 (turn 0) and 6,7,8 (turn 1); row 1 position 1
    assert batch.loss_mask.int().tolist() == [[0, 0, 0, 1, 1, 0, 1, 1, 1], [0, 1, 0, 0, 0, 0, 0, 0, 0]]
    assert batch.span_idx.tolist() == [[-1, -1, -1, 0, 0, -1, 1, 1, 1], [-1, 2, -1, -1, -1, -1, -1, -1, -1]]
    # old_logprobs[b, t] is the rollout logprob of input_ids[b, t]: -0.1, -0.2 then -0.1, -0.2, -0.3
    expected = torch.tensor([[0, 0, 0, -0.1, -0.2, 0, -0.1, -0.2, -0.3], [0, -0.1, 0, 0, 0, 0, 0, 0, 0]])
    assert torch.allclose(batch.old_logprobs, expected)
    assert batch.group_idx.tolist() == [0, 1] and batch.group_ids == ("g0", "g1")
    # the turn table (turn 0 and 1 of episode 0, turn 0 of episode 1) and the episodes: what the estimators read
    assert batch.turn_episode.tolist() == [0, 0, 1] and batch.turn_number.tolist() == [0, 1, 0]
    assert batch.turn_reward.tolist() == [0.0, 1.0, 0.5] and batch.turn_reward.dtype == torch.float64
    assert batch.turn_format_valid.tolist() == [True, True, True]
    assert batch.episode_return.tolist() == [1.0, 0.5]
    assert batch.episode_group.tolist() == [0, 1]
    assert batch.episode_response_tokens.tolist() == [5, 1]
    # step groups are (group, anchor) keys in sorted order: (g0,a0)=0, (g0,a1)=1, (g1,b)=2
    assert batch.turn_anchor_idx.tolist() == [0, 1, 2]
    # per-turn advantages land on their own spans
    adv = batch.expand_turn_values(torch.tensor([0.5, -1.0, 2.0]))
    assert adv.tolist() == [[0, 0, 0, 0.5, 0.5, 0, -1.0, -1.0, -1.0], [0, 2.0, 0, 0, 0, 0, 0, 0, 0]]
    with pytest.raises(RecordError, match="got 2 turn values for a batch with 3 turns"):
        batch.expand_turn_values(torch.tensor([0.5, -1.0]))


def test_window_batch_from_concat_episode_by_hand() -> None:
    batch = collate([_two_turn_episode()], "window")
    # one row per turn; turn 1's row holds the history and trains on turn 1's response only
    assert batch.input_ids.tolist() == [[1, 2, 3, 10, 11, 0, 0, 0, 0], [1, 2, 3, 10, 11, 4, 12, 13, 14]]
    assert batch.loss_mask.int().tolist() == [[0, 0, 0, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 1, 1, 1]]
    assert batch.span_idx[1].tolist() == [-1, -1, -1, -1, -1, -1, 1, 1, 1]
    assert batch.turn_number.tolist() == [0, 1]
    assert batch.row_episode.tolist() == [0, 0]


def test_window_episode_rows_are_its_prompts() -> None:
    batch = collate([_two_turn_episode(mode="window")], "window")
    assert batch.input_ids.tolist() == [[1, 2, 3, 10, 11, 0, 0, 0, 0], [1, 2, 3, 10, 11, 4, 12, 13, 14]]
    with pytest.raises(RecordError, match="collate it with mode='window'"):
        collate([_two_turn_episode(mode="window")], "concat")


def test_empty_episode_has_no_rows_but_keeps_its_return() -> None:
    empty = Episode(task_id="t", group_id="g0", sample_idx=1, env_id="e", turns=[], stop_reason="env_error")
    batch = collate([_two_turn_episode(), empty], "concat")
    assert batch.num_rows == 1 and batch.episode_return.tolist() == [1.0, 0.0]
    assert batch.num_episodes == 2 and batch.episode_group.tolist() == [0, 0]
    assert batch.episode_response_tokens.tolist() == [5, 0]


def test_max_length_is_enforced() -> None:
    with pytest.raises(RecordError, match="over max_length=4"):
        collate([_two_turn_episode()], "concat", max_length=4)


def test_jsonl_round_trip(tmp_path: Path) -> None:
    episode = Episode(
        task_id="t",
        group_id=make_group_id("t", 3),
        sample_idx=2,
        env_id="resrl/Echo-v0",
        seed=7,
        policy_version=5,
        won=True,
        metrics={"x": 1.5},
        turns=[
            _turn(
                [1, 2],
                [3],
                1.0,
                "k",
                observation="é ✓",
                response_text="<action>hi</action>",
                action="hi",
                terminated=True,
                info={"nested": {"a": [1, 2]}, "won": True},
            )
        ],
    )
    path = tmp_path / "eps.jsonl"
    assert write_episodes(path, [episode, _two_turn_episode()]) == 2
    back = read_episodes(path)
    assert back[0] == episode and back[1] == _two_turn_episode()
    assert back[0].group_id == "it3/t" and back[0].total_return == 1.0
    assert json.loads(path.read_text().splitlines()[0])["schema_version"] == 1


def test_jsonl_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(_two_turn_episode().to_json() + "\n{not json\n")
    with pytest.raises(RecordError, match=r"bad.jsonl:2: not valid JSON"):
        read_episodes(path)
    record = _two_turn_episode().to_dict()
    record["schema_version"] = 99
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(RecordError, match="schema_version=99"):
        read_episodes(path)
    with pytest.raises(RecordError, match="no episode file"):
        read_episodes(tmp_path / "missing.jsonl")


def test_validate_catches_broken_records() -> None:
    with pytest.raises(RecordError, match="2 response ids but 1 logprobs"):
        Turn([1], [2, 3], [-0.1]).validate()
    with pytest.raises(RecordError, match="unparsed turn"):
        Turn([1], [2], [-0.1], format_valid=False, action_valid=False, reward=1.0).validate()
    bad_return = Episode(task_id="t", group_id="g", sample_idx=0, env_id="e", turns=[_turn([1], [2], 1.0)], return_=3.0)
    with pytest.raises(RecordError, match="sum of step rewards"):
        bad_return.validate()
    with pytest.raises(RecordError, match="holds a object"):
        Episode(
            task_id="t", group_id="g", sample_idx=0, env_id="e", turns=[_turn([1], [2], info={"x": object()})]
        ).to_dict()


@st.composite
def _episodes(draw: st.DrawFn) -> list[Episode]:
    out = []
    for e in range(draw(st.integers(1, 4))):
        turns = []
        for _ in range(draw(st.integers(1, 3))):
            prompt = draw(st.lists(st.integers(1, 50), min_size=1, max_size=5))
            response = draw(st.lists(st.integers(1, 50), min_size=1, max_size=5))
            reward, anchor, parsed = (
                draw(st.sampled_from([0.0, 1.0])),
                draw(st.sampled_from("xyz")),
                draw(st.booleans()),
            )
            unparsed = {} if parsed else {"format_valid": False, "action_valid": False}
            turns.append(_turn(prompt, response, reward if parsed else 0.0, anchor, **unparsed))
        out.append(Episode(task_id="t", group_id=f"g{e % 2}", sample_idx=e, env_id="e", turns=turns))
    return out


@settings(max_examples=60, deadline=None)
@given(_episodes(), st.sampled_from(["concat", "window"]))
def test_collate_round_trips_spans(episodes: list[Episode], mode: str) -> None:
    batch = collate(episodes, mode)  # type: ignore[arg-type]
    assert int(batch.loss_mask.sum()) == sum(len(t.response_ids) for e in episodes for t in e.turns)
    assert torch.equal(batch.loss_mask, batch.span_idx >= 0)
    for entry in range(batch.num_turns):
        turn = episodes[int(batch.turn_episode[entry])].turns[int(batch.turn_number[entry])]
        where = batch.span_idx == entry
        assert batch.input_ids[where].tolist() == turn.response_ids
        assert torch.allclose(batch.old_logprobs[where], torch.tensor(turn.response_logprobs))
        # a span's tokens are contiguous and preceded by its prompt ids
        row, cols = where.nonzero(as_tuple=True)
        start = int(cols.min())
        assert cols.tolist() == list(range(start, start + len(turn.response_ids)))
        assert batch.input_ids[int(row[0]), start - len(turn.prompt_ids) : start].tolist() == turn.prompt_ids
        assert float(batch.turn_reward[entry]) == turn.reward
        assert bool(batch.turn_format_valid[entry]) == turn.format_valid
    for e, episode in enumerate(episodes):
        assert batch.group_ids[int(batch.episode_group[e])] == episode.group_id
        assert int(batch.episode_response_tokens[e]) == sum(len(t.response_ids) for t in episode.turns)
