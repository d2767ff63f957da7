"""Two learner processes over gloo take the single learner's step: DDP and FSDP2, an idle rank, a NaN on one rank.

One ``torch.multiprocessing`` spawn (two CPU processes, one process group) runs every case and writes its results;
the tests compare them with a single :class:`Learner` updated on the whole batch in this process.

Parameters are compared after SGD steps (lr 0.1), where the update is linear in the gradient, to atol 1e-6; the
gradients agree up to float32 summation order (~1e-7 relative). With the learner's AdamW the first steps are about
lr * sign(g): on the few entries whose gradient is ~eps (1e-8) that same summation noise moves the update by a few
% of one step, so there the moments are compared (to 1e-6) and the parameters within a quarter of lr.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from resrl_agent.config import load_config
from resrl_agent.trainer.distributed import assign_groups, free_port
from resrl_agent.trainer.learner import Learner, LearnerSettings
from resrl_agent.trainer.metrics import reduce_metrics
from resrl_agent.trainer.update import train_on_episodes
from resrl_agent.types import collate

OVERRIDES = [
    "algo.advantage=gigpo",
    "algo.resrl.max_pos_tokens=12",  # groups have more positive tokens: subsampling draws from the generator
    "trainer.lr=1e-3",
    "trainer.warmup_steps=0",
    "trainer.mini_batches=2",  # two optimizer steps on a shuffled split of the rows
    "trainer.micro_batch_tokens=64",  # several micro-batches per rank, not as many on both
]
SEED = 3
ATOL = 1e-6
ADAMW_LR = 1e-3
SGD_LR = 0.1


def _config() -> Any:
    return load_config(None, [*OVERRIDES, f"trainer.lr={ADAMW_LR}"])


def _learner(model_dir: str, parallel: Any = None, *, sgd: bool = False) -> Learner:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    learner = Learner(model, LearnerSettings.from_config(_config()), seed=SEED, parallel=parallel)
    if sgd:  # after the Learner is built: under fsdp2 the parameters are the sharded ones by then
        learner.optimizer = torch.optim.SGD([p for p in learner.model.parameters() if p.requires_grad], lr=SGD_LR)
        learner.scheduler = torch.optim.lr_scheduler.LambdaLR(learner.optimizer, lambda _: 1.0)
    return learner


def _worker(rank: int, world: int, port: int, model_dir: str, cases: dict[str, Any], out: str) -> None:
    """One learner process: every case in turn, results to ``out/CASE.rankR.pt``."""
    import torch.distributed as dist

    from resrl_agent.trainer.distributed import DataParallel, init_learner_group

    torch.set_num_threads(1)
    init_learner_group(rank, world, addr="127.0.0.1", port=port, timeout_s=30)
    config = _config()
    try:
        for name, episodes in cases["update"].items():
            mode = name.split("-")[0]
            learner = _learner(model_dir, DataParallel(mode), sgd="sgd" in name)
            metrics = train_on_episodes(learner, episodes, config)
            state = learner.state_dict()  # whole tensors (gathered under fsdp2), on every rank
            result: dict[str, Any] = {"metrics": metrics, "state": state, "steps": learner.steps}
            if name == "fsdp2":  # resume: the whole state loads into fresh ranks, each keeping its shard
                fresh = _learner(model_dir, DataParallel(mode))
                fresh.load_state_dict(copy.deepcopy(state))
                result["reloaded"] = fresh.state_dict()
            torch.save(result, f"{out}/{name}.rank{rank}.pt")
        for mode in ("ddp", "fsdp2"):  # rank 1 poisons one token's advantage; every rank must skip
            ids, attn, mask, old, adv = cases["nan"][rank]
            learner = _learner(model_dir, DataParallel(mode))
            before = learner.model_state()
            poisoned = adv.clone()
            if rank == 1:
                poisoned[tuple(mask.nonzero()[0].tolist())] = float("nan")  # one token
            first = learner.ppo_step(ids, attn, mask, old, poisoned)
            after_skip = learner.model_state()
            second = learner.ppo_step(ids, attn, mask, old, adv)
            after_step = learner.model_state()
            torch.save(
                {
                    "first": first,
                    "second": second,
                    "unchanged": all(torch.equal(after_skip[k], v) for k, v in before.items()),
                    "changed": any(not torch.equal(after_step[k], v) for k, v in before.items()),
                    "steps": learner.steps,
                    "skipped": learner.skipped_steps,
                },
                f"{out}/nan-{mode}.rank{rank}.pt",
            )
        dist.barrier()  # both ranks done before either tears the group down (rank 0 hosts the store)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def cases(episode_factory: Any) -> dict[str, Any]:
    episodes = episode_factory(num_groups=4, group_size=4, num_turns=2, seed=5)
    one_group = episode_factory(num_groups=1, group_size=4, num_turns=2, seed=6)
    nan_rows = []
    for rank in range(2):  # each rank its own rows for a direct ppo_step
        batch = collate(episode_factory(num_groups=1, group_size=4, num_turns=2, seed=10 + rank), "concat")
        adv = torch.where(batch.loss_mask, torch.linspace(-1, 1, batch.loss_mask.numel()).view_as(batch.loss_mask), 0)
        nan_rows.append((batch.input_ids, batch.attention_mask, batch.loss_mask, batch.old_logprobs - 0.05, adv))
    update = {}
    for mode in ("ddp", "fsdp2"):
        update |= {mode: episodes, f"{mode}-sgd": episodes, f"{mode}-idle-sgd": one_group}
    return {"update": update, "nan": nan_rows, "episodes": episodes, "one_group": one_group}


@pytest.fixture(scope="module")
def results(cases: dict[str, Any], tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("dist")
    mp.spawn(_worker, args=(2, free_port(), str(tiny_model_dir), cases, str(out)), nprocs=2, join=True)
    return {p.name[: -len(".pt")]: torch.load(p, weights_only=False) for p in out.glob("*.pt")}


@pytest.fixture(scope="module")
def single(cases: dict[str, Any], tiny_model_dir: Path) -> dict[str, Any]:
    """One learner, the whole batch: the reference every data-parallel update must equal."""
    out = {}
    for name, episodes, sgd in (
        ("adamw", cases["episodes"], False),
        ("sgd", cases["episodes"], True),
        ("idle-sgd", cases["one_group"], True),
    ):
        learner = _learner(str(tiny_model_dir), sgd=sgd)
        metrics = train_on_episodes(learner, episodes, _config())
        out[name] = {"metrics": metrics, "state": learner.state_dict(), "steps": learner.steps}
    out["initial"] = _learner(str(tiny_model_dir)).model_state()
    return out


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def test_groups_are_split_whole_and_balanced_by_tokens() -> None:
    # groups 7 (30 tokens), 1 (20), 4 (12), 2 (10) -> rank 0: 7; rank 1: 1, 4 (32); then 2 goes to rank 0 (40)
    row_group = [7, 1, 7, 4, 1, 2]
    tokens = [10, 10, 20, 12, 10, 10]
    assert assign_groups(row_group, tokens, 2) == [0, 1, 0, 1, 1, 0]
    assert assign_groups(row_group, tokens, 1) == [0] * 6
    assert assign_groups([3, 3], [5, 5], 4) == [0, 0]  # one group: one rank, the others idle


@pytest.mark.parametrize("mode", ["ddp", "fsdp2"])
def test_two_learners_take_the_single_learners_step(results: dict[str, Any], single: dict[str, Any], mode: str) -> None:
    ref = single["sgd"]
    rank0, rank1 = results[f"{mode}-sgd.rank0"], results[f"{mode}-sgd.rank1"]
    assert ref["steps"] == rank0["steps"] == rank1["steps"] == 2
    moved = _max_diff(ref["state"]["model"], single["initial"])
    diff = _max_diff(rank0["state"]["model"], ref["state"]["model"])
    print(f"\n{mode} (SGD): max |param - single learner's| = {diff:.3g}; the update moved them by up to {moved:.3g}")
    assert moved > 1e-3 and diff <= ATOL
    for key, value in ref["state"]["model"].items():
        torch.testing.assert_close(rank0["state"]["model"][key], value, atol=ATOL, rtol=0, msg=key)
    assert _max_diff(rank1["state"]["model"], rank0["state"]["model"]) == 0.0  # both ranks hold the same weights
    # the metrics are the whole batch's on every rank
    m, r = rank0["metrics"], ref["metrics"]
    for key in ("update/rows", "update/tokens", "resrl/pos_tokens", "resrl/neg_tokens", "resrl/groups_processed"):
        assert m[key] == r[key] == rank1["metrics"][key], key
    assert r["resrl/groups_processed"] == 4.0 and r["update/rows"] == 16.0
    for key in ("loss/total", "loss/pg_loss", "optim/grad_norm", "adv/token_mean", "adv/token_std"):
        assert math.isclose(m[key], r[key], rel_tol=1e-5, abs_tol=1e-7), (key, m[key], r[key])
        assert m[key] == rank1["metrics"][key], key
    for key in ("resrl/neg_weight_mean", "resrl/neg_weight_std", "rollout/logprob_abs_diff", "rollout/entropy"):
        assert math.isclose(m[key], r[key], rel_tol=1e-5), (key, m[key], r[key])
    assert m["guard/skipped_step"] == 0.0


@pytest.mark.parametrize("mode", ["ddp", "fsdp2"])
def test_two_learners_with_adamw(results: dict[str, Any], single: dict[str, Any], mode: str) -> None:
    ref = single["adamw"]
    rank0, rank1 = results[f"{mode}.rank0"], results[f"{mode}.rank1"]
    assert ref["steps"] == rank0["steps"] == rank1["steps"] == 2
    diff = _max_diff(rank0["state"]["model"], ref["state"]["model"])
    print(f"\n{mode} (AdamW, lr {ADAMW_LR}): max |param - single learner's| = {diff:.3g}")
    assert diff <= 0.25 * ADAMW_LR
    assert _max_diff(rank1["state"]["model"], rank0["state"]["model"]) == 0.0
    # the moments (linear and quadratic in the gradients), in the single learner's format
    ref_opt, opt = ref["state"]["optimizer"], rank0["state"]["optimizer"]
    assert opt["state"].keys() == ref_opt["state"].keys() and opt["param_groups"] == ref_opt["param_groups"]
    for index, entry in ref_opt["state"].items():
        # the second step's gradient is taken where the first step's few sign-like entries already differ
        torch.testing.assert_close(opt["state"][index]["exp_avg"], entry["exp_avg"], atol=1e-6, rtol=1e-3)
        torch.testing.assert_close(opt["state"][index]["exp_avg_sq"], entry["exp_avg_sq"], atol=1e-9, rtol=1e-3)
        assert float(opt["state"][index]["step"]) == float(entry["step"]) == 2.0
    assert torch.equal(rank0["state"]["generator"], ref["state"]["generator"])  # the shuffle stayed in step
    for key in ("loss/total", "optim/grad_norm"):
        assert math.isclose(rank0["metrics"][key], ref["metrics"][key], rel_tol=1e-5), key


def test_fsdp2_state_gathers_whole_and_reloads_into_every_rank(results: dict[str, Any]) -> None:
    for rank in (0, 1):
        result = results[f"fsdp2.rank{rank}"]
        saved, reloaded = result["state"], result["reloaded"]
        assert _max_diff(saved["model"], reloaded["model"]) == 0.0
        for index, entry in saved["optimizer"]["state"].items():
            for key, value in entry.items():
                assert torch.equal(reloaded["optimizer"]["state"][index][key], value), (index, key)
    # the gathered state is a plain single-learner state: it loads into one Learner as is
    whole = results["fsdp2.rank0"]["state"]
    assert all(type(v) is torch.Tensor for v in whole["model"].values())


@pytest.mark.parametrize("mode", ["ddp", "fsdp2"])
def test_an_idle_rank_still_joins_every_step(results: dict[str, Any], single: dict[str, Any], mode: str) -> None:
    """One episode group: rank 1 owns no row, yet joins the collectives (fsdp2: zero-loss passes) of both steps."""
    ref = single["idle-sgd"]
    rank0, rank1 = results[f"{mode}-idle-sgd.rank0"], results[f"{mode}-idle-sgd.rank1"]
    assert ref["steps"] == rank0["steps"] == rank1["steps"] == 2
    assert _max_diff(rank0["state"]["model"], ref["state"]["model"]) <= ATOL
    assert _max_diff(rank1["state"]["model"], rank0["state"]["model"]) == 0.0
    assert rank1["metrics"]["update/tokens"] == ref["metrics"]["update/tokens"]
    assert math.isclose(rank1["metrics"]["loss/total"], ref["metrics"]["loss/total"], rel_tol=1e-4)


@pytest.mark.parametrize("mode", ["ddp", "fsdp2"])
def test_a_nan_on_one_rank_skips_the_step_on_both(results: dict[str, Any], mode: str) -> None:
    for rank in (0, 1):
        r = results[f"nan-{mode}.rank{rank}"]
        assert r["first"]["guard/skipped_step"] == 1.0 and math.isnan(r["first"]["loss/total"]), rank
        assert r["unchanged"], rank  # rank 0's loss was finite: it skipped all the same
        assert r["second"]["guard/skipped_step"] == 0.0 and r["changed"], rank
        assert (r["steps"], r["skipped"]) == (1, 1), rank
    assert results[f"nan-{mode}.rank0"]["second"]["loss/total"] == results[f"nan-{mode}.rank1"]["second"]["loss/total"]


def test_rank_metrics_merge_like_the_whole_batch() -> None:
    a = torch.tensor([0.5, -1.0, 2.0])
    b = torch.tensor([1.5, 0.25])
    from resrl_agent.trainer.update import tensor_stats

    parts = [
        (tensor_stats("adv/token", a) | {"resrl/neg_tokens": 2.0, "time/resrl_s": 0.1}, 3.0),
        (tensor_stats("adv/token", b) | {"resrl/neg_tokens": 5.0, "time/resrl_s": 0.3}, 2.0),
    ]
    merged = reduce_metrics(parts)
    whole = tensor_stats("adv/token", torch.cat([a, b]))
    for key, value in whole.items():
        assert math.isclose(merged[key], value, rel_tol=1e-9), key
    assert merged["resrl/neg_tokens"] == 7.0 and merged["time/resrl_s"] == 0.3


def test_the_single_process_trainer_says_several_learners_need_ray(tmp_path: Path) -> None:
    from resrl_agent.errors import TrainerError
    from resrl_agent.trainer.loop import Trainer

    config = load_config(None, [f"run_dir={tmp_path}", "trainer.num_learners=2"])
    with pytest.raises(TrainerError, match=r"trainer.num_learners=2 needs trainer.driver=ray"):
        Trainer(config)
