"""Data-parallel learners: N processes in one torch.distributed group, each with the model (ddp) or a shard (fsdp2).

No Ray here: a test spawns two processes over gloo, a GPU box runs ``torchrun``, the Ray driver starts actors; each
process calls :func:`init_learner_group`, builds ``Learner(model, settings, parallel=DataParallel(mode))`` and runs
the same :func:`resrl_agent.trainer.update.train_on_episodes` on the whole episode list. Every rank collates the
whole batch and computes the advantages over it (identical everywhere, so exact), then keeps the rows of the
episode groups :func:`assign_groups` gives it: groups are never cut, so ResRL fits each group's subspace on all of
its positive tokens, on one rank.

What makes N learners take the single learner's step (tested to ~1e-7 in ``tests/trainer/test_distributed.py``):

- the loss denominator (token-mean: loss tokens; seq-mean: rows) is all-reduced, so every rank divides by the
  mini-batch's global count, and gradients are summed across ranks (ddp: one bucketed all-reduce per optimizer
  step; fsdp2: the reduce-scatter, with its divide factor set to 1);
- the gradient is clipped on the global norm, and the step is skipped on every rank when any rank saw a
  non-finite loss or gradient (the flag is reduced with the norm);
- the mini-batch permutation comes from the learner's generator, seeded alike on every rank and advanced alike
  (ResRL's randomness is drawn per group from a seed the whole batch shares, never from where the group landed);
- every rank joins every step: a rank with no rows of a mini-batch adds no gradient but still joins the
  collectives, and under fsdp2 (whose forward and backward are collectives) it runs as many forward/backward
  passes as the busiest rank, the extra ones on a 2-token dummy row whose loss is multiplied by 0.

``ddp`` keeps a full replica on each rank and all-reduces the gradients by hand rather than wrapping the model in
``DistributedDataParallel``: the learner's forward goes to the decoder and the LM head separately and ranks run
different numbers of micro-batches, neither of which DDP's per-forward reducer allows; one all-reduce per step
after accumulation is what DDP with ``no_sync`` would do.
"""

from __future__ import annotations

import datetime
import math
import socket
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn

from resrl_agent.errors import TrainerError

__all__ = ["DataParallel", "ParallelMode", "assign_groups", "clip_grad_norm", "free_port", "init_learner_group"]

ParallelMode = Literal["ddp", "fsdp2"]

_BUCKET_ELEMENTS = 32 * 1024 * 1024  # gradients all-reduced in flat buckets of at most this many elements


def free_port() -> int:
    """A TCP port free on this host right now (rank 0 picks the rendezvous port with it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        port: int = sock.getsockname()[1]
        return port


def init_learner_group(
    rank: int, world_size: int, *, addr: str, port: int, device: str = "cpu", timeout_s: float = 1800.0
) -> None:
    """Join the learners' process group at ``tcp://addr:port``: nccl when the learner is on CUDA, gloo on CPU."""
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":  # one GPU per rank: "cuda" is the one this process sees first (Ray sets its visibility)
        index = torch.device(device).index
        torch.cuda.set_device(0 if index is None else index)
    dist.init_process_group(
        backend,
        init_method=f"tcp://{addr}:{port}",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )


def assign_groups(row_group: Sequence[int], row_tokens: Sequence[int], world_size: int) -> list[int]:
    """The rank of every row: whole groups, balanced by token count (greedy, largest group first). Deterministic.

    Args:
        row_group: the episode group of each row (any hashable ints; rows of one group always share a rank).
        row_tokens: the loss tokens of each row (the work it brings).
    """
    totals: dict[int, int] = {}
    for group, tokens in zip(row_group, row_tokens, strict=True):
        totals[group] = totals.get(group, 0) + int(tokens)
    load = [0] * world_size
    owner: dict[int, int] = {}
    for group in sorted(totals, key=lambda g: (-totals[g], g)):
        rank = min(range(world_size), key=lambda r: (load[r], r))
        owner[group] = rank
        load[rank] += totals[group]
    return [owner[g] for g in row_group]


def _is_dtensor(value: Any) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(value, DTensor)


def _local(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to_local() if _is_dtensor(tensor) else tensor  # type: ignore[attr-defined, no-any-return]


_NORM_CHUNK = 1 << 22  # elements upcast to float64 at a time


def _sum_of_squares(grads: Sequence[torch.Tensor]) -> float:
    """Sum of squares of every entry, accumulated in float64 (chunked, so no float64 copy of a whole tensor).

    float64 because a float32 norm on CPU is off by ~1e-5 relative on a 0.5M-entry embedding gradient, and a
    sharded and a whole tensor would round differently: the clip coefficient must not depend on the layout.
    """
    if not grads:
        return 0.0
    total = torch.zeros((), dtype=torch.float64, device=grads[0].device)
    for grad in grads:
        for chunk in grad.reshape(-1).split(_NORM_CHUNK):
            wide = chunk.double()
            total += torch.dot(wide, wide)
    return float(total)


def clip_grad_norm(params: Sequence[nn.Parameter], max_norm: float, *, parallel: DataParallel | None = None) -> float:
    """Scale the gradients so that their global 2-norm is at most ``max_norm``; returns the norm before clipping.

    ``torch.nn.utils.clip_grad_norm_``'s rule (coefficient ``max_norm / (norm + 1e-6)``, at most 1), with the
    norm accumulated in float64. With ``parallel``: under fsdp2 each rank adds its shards' squares and the sum is
    all-reduced; under ddp the gradients are already summed (equal on every rank) and only the finite flag is
    reduced. A non-finite gradient anywhere gives NaN everywhere.
    """
    grads = [_local(p.grad) for p in params if p.grad is not None]
    total = _sum_of_squares(grads)
    if parallel is not None:
        if parallel.sharded:
            total = parallel.sum([total])[0]  # each rank holds a disjoint shard of every gradient
        elif parallel.sum([0.0 if math.isfinite(total) else 1.0])[0]:
            total = math.nan
    norm = math.sqrt(total) if math.isfinite(total) else math.nan
    if math.isfinite(norm):
        coef = min(max_norm / (norm + 1e-6), 1.0)
        for grad in grads:
            grad.mul_(coef)
    return norm


class DataParallel:
    """The collectives a data-parallel :class:`~resrl_agent.trainer.learner.Learner` needs, over one process group.

    Args:
        mode: ``ddp`` (each rank holds the whole model; gradients all-reduced once per optimizer step) or ``fsdp2``
            (``torch.distributed.fsdp.fully_shard`` on every decoder layer and on the learner's forward module).
        group: the process group (default: the initialised default group).
    """

    def __init__(self, mode: ParallelMode = "ddp", *, group: Any = None) -> None:
        if mode not in ("ddp", "fsdp2"):
            raise TrainerError(f"trainer.data_parallel={mode!r}: choose 'ddp' or 'fsdp2'")
        if not dist.is_available() or not dist.is_initialized():
            raise TrainerError("a data-parallel learner needs an initialised process group (init_learner_group)")
        self.mode: ParallelMode = mode
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        backend = dist.get_backend(group)
        self.comm_device = (
            torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        )

    @property
    def sharded(self) -> bool:
        """True under fsdp2: forward and backward are collectives, so every rank must run as many of them."""
        return self.mode == "fsdp2"

    # ------------------------------------------------------------------------------------------------ setup
    def prepare(self, model: nn.Module, layers: Iterable[nn.Module], root: nn.Module) -> None:
        """Make the ranks' models one: rank 0's weights everywhere (ddp), or shard them (fsdp2).

        ``root`` is the module whose forward the learner calls (it holds ``model``); under fsdp2 it is the root
        FSDP module, so the embeddings, final norm and LM head (tied or not) are unsharded for its forward.
        """
        if self.mode == "ddp":
            src = dist.get_global_rank(self.group, 0) if self.group is not None else 0
            with torch.no_grad():
                for tensor in [*model.parameters(), *model.buffers()]:
                    dist.broadcast(tensor.data, src, group=self.group)
            return
        from torch.distributed.device_mesh import DeviceMesh
        from torch.distributed.fsdp import FSDPModule, fully_shard

        device_type = self.comm_device.type
        group = self.group if self.group is not None else dist.group.WORLD
        mesh = DeviceMesh.from_group(group, device_type)
        modules = [*layers, root]
        for module in modules:
            fully_shard(module, mesh=mesh)
        for module in modules:
            assert isinstance(module, FSDPModule)
            # sum, not average, across ranks: the loss is already divided by the global token count; a plain SUM
            # on the wire because gloo has no pre-multiplied sum
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)

    # ---------------------------------------------------------------------------------------- small collectives
    def _reduce(self, values: Sequence[float], op: Any) -> list[float]:
        tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.comm_device)
        dist.all_reduce(tensor, op=op, group=self.group)
        return [float(v) for v in tensor.cpu().tolist()]

    def sum(self, values: Sequence[float]) -> list[float]:
        return self._reduce(values, dist.ReduceOp.SUM)

    def max(self, values: Sequence[float]) -> list[float]:
        return self._reduce(values, dist.ReduceOp.MAX)

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self.group)
        return out

    def aligned_count(self, count: int) -> int:
        """How many forward (and backward) passes this rank must run: the busiest rank's under fsdp2."""
        return int(self.max([count])[0]) if self.sharded else count

    # ------------------------------------------------------------------------------------------- gradients
    def sync_grads(self, params: Sequence[nn.Parameter]) -> None:
        """ddp: sum every gradient across ranks (a rank without a gradient sends zeros); fsdp2: done in backward."""
        if self.sharded:
            return
        grads = []
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
        bucket: list[torch.Tensor] = []
        size = 0
        for grad in grads:
            if bucket and (size + grad.numel() > _BUCKET_ELEMENTS or grad.dtype != bucket[0].dtype):
                self._all_reduce_bucket(bucket)
                bucket, size = [], 0
            bucket.append(grad)
            size += grad.numel()
        if bucket:
            self._all_reduce_bucket(bucket)

    def _all_reduce_bucket(self, bucket: list[torch.Tensor]) -> None:
        flat = torch.cat([g.reshape(-1) for g in bucket])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=self.group)
        offset = 0
        for grad in bucket:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    def clip_grad_norm(self, params: Sequence[nn.Parameter], max_norm: float) -> float:
        """Clip to ``max_norm`` on the global gradient norm (as :func:`clip_grad_norm` on one learner); returns it.

        NaN on every rank when any rank's gradient is non-finite, so all of them skip the step.
        """
        return clip_grad_norm(params, max_norm, parallel=self)

    # ------------------------------------------------------------------------------------------ state dicts
    def full_state_dict(self, module: nn.Module) -> dict[str, torch.Tensor]:
        """A copy of the whole model's state on CPU (a collective under fsdp2: every rank must call it)."""
        out = {}
        for key, value in module.state_dict().items():
            full = value.full_tensor() if _is_dtensor(value) else value
            out[key] = full.detach().to("cpu", copy=True)
        return out

    def load_full_state_dict(self, module: nn.Module, state: dict[str, torch.Tensor]) -> None:
        """Load a whole (unsharded) state into this rank: under fsdp2 each rank keeps its own shard (no comms)."""
        if not self.sharded:
            module.load_state_dict(state)
            return
        current = module.state_dict()
        converted = {}
        for key, value in state.items():
            target = current.get(key)
            converted[key] = self._like(value, target) if target is not None else value
        module.load_state_dict(converted)

    def full_optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """``optimizer.state_dict()`` with every sharded state tensor gathered whole (collective under fsdp2).

        The result has the single learner's format (states keyed by parameter index), so a checkpoint moves
        between one learner, ddp and fsdp2.
        """
        state = optimizer.state_dict()
        if not self.sharded:
            return state
        gathered: dict[Any, dict[str, Any]] = {}
        for index in sorted(state["state"]):
            entry = state["state"][index]
            gathered[index] = {
                key: (entry[key].full_tensor() if _is_dtensor(entry[key]) else entry[key]) for key in sorted(entry)
            }
        return {"state": gathered, "param_groups": state["param_groups"]}

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        """Load a whole optimizer state (:meth:`full_optimizer_state`'s format) into this rank's optimizer."""
        if self.sharded:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            saved_ids = [i for group in state["param_groups"] for i in group["params"]]
            by_id = dict(zip(saved_ids, params, strict=True))
            converted: dict[Any, dict[str, Any]] = {}
            for index, entry in state["state"].items():
                param = by_id[index]
                converted[index] = {
                    key: self._like(value, param)
                    if isinstance(value, torch.Tensor) and key != "step" and value.shape == param.shape
                    else value
                    for key, value in entry.items()
                }
            state = {"state": converted, "param_groups": state["param_groups"]}
        optimizer.load_state_dict(state)

    @staticmethod
    def _like(value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``value`` (whole) as ``target`` holds it: its local shard as a DTensor when ``target`` is one."""
        if not _is_dtensor(target):
            return value
        from torch.distributed.tensor import distribute_tensor

        whole = value.to(device=target.device, dtype=target.dtype)
        return distribute_tensor(whole, target.device_mesh, target.placements, src_data_rank=None)  # type: ignore[attr-defined]
