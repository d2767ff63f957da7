"""The learner: one forward for token logprobs, entropy and penultimate hidden states; PPO and SFT steps.

Usable without Ray (a test, a benchmark, a GPU box drive it directly); the Ray learner actor wraps it.

Memory (docs/design.md "Algorithms (exact)", last item):
- the penultimate decoder layer's output is captured by a forward hook on that one layer
  (:class:`HiddenCapture`), never with ``output_hidden_states=True`` for every layer;
- the LM head runs only at the positions that predict a response token, in chunks, each chunk under activation
  checkpointing, so fp32 logits of shape [tokens, vocab] exist for one chunk at a time, in the forward and in
  the backward;
- rows are bucketed by length into micro-batches under a token budget and each micro-batch is trimmed to its
  longest row, so little compute goes to padding; gradients accumulate with the whole mini-batch's token count
  as the denominator, so the accumulated gradient equals one big batch's.

Alignment (Contract 8 and ``Batch``): the token at position t is predicted by position t - 1, so the hidden state
handed to ResRL for token t is the penultimate layer's output at t - 1.

Data parallel: with ``parallel`` (a :class:`~resrl_agent.trainer.distributed.DataParallel`) the learner is one rank
of several. ``ppo_step`` takes this rank's rows; the loss denominator, the gradient, its norm and the skip decision
are global, so the step equals one learner's on the union of the rows. ``sft_step`` takes the same rows on every
rank and trains on this rank's share of them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.utils.checkpoint import checkpoint

from resrl_agent.algorithms.losses import ppo_loss
from resrl_agent.errors import TrainerError
from resrl_agent.trainer.distributed import DataParallel, assign_groups, clip_grad_norm
from resrl_agent.trainer.metrics import reduce_metrics

logger = logging.getLogger(__name__)

__all__ = [
    "HiddenCapture",
    "Learner",
    "LearnerSettings",
    "ResponseForward",
    "ResponseModule",
    "decoder_layers",
    "plan_micro_batches",
    "token_logprobs",
]


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layer list of an HF causal LM (``model.model.layers`` for Qwen/Llama/Mistral)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else getattr(model, "model", None)
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise TrainerError(
            f"cannot find the decoder layers of {type(model).__name__}; the learner supports HF decoder-only "
            "models whose decoder has a `layers` ModuleList (Qwen2/3, Llama, Mistral)"
        )
    return layers


class HiddenCapture:
    """Capture the output of one module during the next forward, detached (a forward hook on that module only).

    transformers v5 decoder layers return a Tensor (older versions a tuple whose first item is the state); both
    are handled. With gradient checkpointing the hook runs again during the backward's recomputation; only the
    first call after :meth:`arm` is kept, so recomputation never overwrites or grows the capture.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.value: torch.Tensor | None = None
        self._armed = False
        self._handle: Any = None

    def arm(self) -> None:
        self.value = None
        self._armed = True

    def _hook(self, _module: nn.Module, _inputs: Any, output: Any) -> None:
        if not self._armed:
            return
        state = output if isinstance(output, torch.Tensor) else output[0]
        self.value = state.detach()
        self._armed = False

    def __enter__(self) -> HiddenCapture:
        self._handle = self.module.register_forward_hook(self._hook)
        self.arm()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._armed = False


def _chunk_logprobs(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor, inv_temp: float
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = F.linear(hidden, weight, bias).float()  # [n, V] fp32: log_softmax in fp32 (bf16 loses ~1e-2 nats)
    if inv_temp != 1.0:
        logits = logits * inv_temp
    lse = torch.logsumexp(logits, dim=-1)
    logp = logits.gather(-1, targets[:, None]).squeeze(-1) - lse
    entropy = lse - (torch.softmax(logits, dim=-1) * logits).sum(-1)
    return logp, entropy


def token_logprobs(
    hidden: torch.Tensor,
    head: nn.Module,
    targets: torch.Tensor,
    *,
    chunk_tokens: int = 1024,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """log softmax(head(h) / T)[target] and the entropy for every row of ``hidden`` [n, d]; both [n] fp32.

    Chunks of ``chunk_tokens`` rows; with grad enabled each chunk is checkpointed, so its [chunk, V] fp32 logits
    are freed after the forward and recomputed in the backward.
    """
    weight = head.weight
    bias = getattr(head, "bias", None)
    inv_temp = 1.0 / temperature if temperature > 0 else 1.0
    logps, ents = [], []
    for start in range(0, hidden.shape[0], chunk_tokens):
        h = hidden[start : start + chunk_tokens]
        t = targets[start : start + chunk_tokens]
        if torch.is_grad_enabled() and h.requires_grad:
            lp, ent = checkpoint(_chunk_logprobs, h, weight, bias, t, inv_temp, use_reentrant=False)
        else:
            lp, ent = _chunk_logprobs(h, weight, bias, t, inv_temp)
        logps.append(lp)
        ents.append(ent)
    if not logps:
        empty = hidden.new_zeros(0, dtype=torch.float32)
        return empty, empty
    return torch.cat(logps), torch.cat(ents)


class ResponseModule(nn.Module):
    """The learner's forward as one module call: the decoder, then the LM head at the response positions only.

    A module (not a method) so that a wrapper hooking a module's forward sees the whole of it: under fsdp2 this
    is the root FSDP module, which unshards the embeddings, final norm and LM head for the forward and backward.
    """

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        rows: torch.Tensor,
        cols: torch.Tensor,
        *,
        chunk_tokens: int,
        temperature: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        decoder = self.policy.get_decoder()  # type: ignore[operator]
        out = decoder(input_ids=input_ids, attention_mask=attention_mask.long(), use_cache=False)
        last = out.last_hidden_state  # [B, T, d] after the final norm
        states = last[rows, cols - 1]  # [n, d]: position t - 1 predicts token t
        targets = input_ids[rows, cols]
        head = self.policy.get_output_embeddings()  # type: ignore[operator]
        return token_logprobs(states, head, targets, chunk_tokens=chunk_tokens, temperature=temperature)


@dataclass
class ResponseForward:
    """Per response token of a micro-batch (``n`` tokens in row-major order of ``mask``)."""

    logprobs: torch.Tensor  # [n] fp32
    entropy: torch.Tensor  # [n] fp32
    hidden: torch.Tensor | None  # [n, d] detached: penultimate-layer output at t - 1 (Contract 8)


def plan_micro_batches(lengths: Sequence[int], token_budget: int) -> list[list[int]]:
    """Bucket rows into micro-batches of at most ``token_budget`` padded tokens (rows x longest row).

    Rows are sorted by length (longest first, ties by index) so each micro-batch holds rows of similar length;
    a row longer than the budget gets a micro-batch of its own. Deterministic.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    plans: list[list[int]] = []
    current: list[int] = []
    width = 0
    for i in order:
        w = max(width, lengths[i])
        if current and w * (len(current) + 1) > token_budget:
            plans.append(current)
            current, w = [], lengths[i]
        current.append(i)
        width = w
    if current:
        plans.append(current)
    return plans


@dataclass(frozen=True)
class LearnerSettings:
    """What the learner needs from the run config (``from_config`` reads it)."""

    lr: float = 1e-6
    warmup_steps: int = 10
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    micro_batch_tokens: int = 8192
    logit_chunk_tokens: int = 1024
    temperature: float = 1.0
    clip_low: float = 0.2
    clip_high: float = 0.2
    dual_clip: float | None = 3.0
    agg: str = "token-mean"
    kl_coef: float = 0.0
    kl_kind: str = "low_var_kl"
    entropy_coef: float = 0.0
    gradient_checkpointing: bool = False

    @classmethod
    def from_config(cls, config: Any, *, lr: float | None = None, warmup_steps: int | None = None) -> LearnerSettings:
        t, loss = config.trainer, config.algo.loss
        return cls(
            lr=t.lr if lr is None else lr,
            warmup_steps=t.warmup_steps if warmup_steps is None else warmup_steps,
            weight_decay=t.weight_decay,
            grad_clip=t.grad_clip,
            micro_batch_tokens=t.micro_batch_tokens,
            logit_chunk_tokens=t.logit_chunk_tokens,
            temperature=config.rollout.temperature if config.rollout.temperature > 0 else 1.0,
            clip_low=loss.clip_low,
            clip_high=loss.clip_high,
            dual_clip=loss.dual_clip,
            agg=loss.agg,
            kl_coef=loss.kl_coef,
            kl_kind=loss.kl_kind,
            entropy_coef=loss.entropy_coef,
            gradient_checkpointing=config.model.gradient_checkpointing,
        )


def _trim(tensor: torch.Tensor, rows: list[int], width: int) -> torch.Tensor:
    return tensor[rows, :width]


class Learner:
    """Holds the policy, its AdamW optimizer and warm-up scheduler; computes logprobs and takes PPO/SFT steps.

    Args:
        model: an HF causal LM (``AutoModelForCausalLM``), already on its device.
        settings: optimizer and loss settings.
        seed: seeds the learner's own generator (ResRL subsampling, randomized PCA): never the global RNG.
            Data-parallel ranks must share it (the mini-batch shuffle comes from it).
        parallel: this learner is one rank of several (ddp: ``model`` is broadcast from rank 0; fsdp2: it is
            sharded in place); None for a single learner.
    """

    def __init__(
        self, model: nn.Module, settings: LearnerSettings, *, seed: int = 0, parallel: DataParallel | None = None
    ) -> None:
        self.model = model
        self.settings = settings
        self.parallel = parallel
        layers = decoder_layers(model)
        if len(layers) < 2:
            raise TrainerError("the model has one decoder layer; ResRL needs a penultimate layer (>= 2 layers)")
        self.penultimate = layers[-2]
        self.head = model.get_output_embeddings()
        if self.head is None:
            raise TrainerError(f"{type(model).__name__} has no output embeddings (LM head)")
        if settings.gradient_checkpointing and hasattr(model, "gradient_checkpointing_enable"):
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.module = ResponseModule(model)
        if parallel is not None:
            parallel.prepare(model, layers, self.module)  # before the optimizer: fsdp2 replaces the parameters
        self.optimizer, self.scheduler = self._make_optimizer(settings.lr, settings.warmup_steps)
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.steps = 0
        self.skipped_steps = 0

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ----------------------------------------------------------------------------------------------- forward
    def forward_responses(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        mask: torch.Tensor,
        *,
        with_hidden: bool,
        model: nn.Module | None = None,
        temperature: float | None = None,
    ) -> ResponseForward:
        """One forward of the decoder; the LM head only at the positions that predict ``mask``'s tokens.

        Args:
            input_ids, attention_mask: [B, T] right-padded rows.
            mask: [B, T] bool, the tokens whose logprobs are wanted (never position 0).
            with_hidden: also return the penultimate layer's states for those tokens.
            temperature: divides the logits; None takes the rollout's (``settings.temperature``, Contract 6).
        """
        device = self.device
        input_ids = input_ids.to(device)
        attention_mask = attention_mask.to(device)
        mask = mask.to(device)
        if bool(mask[:, 0].any()):
            raise TrainerError("a response token sits at position 0; every turn needs a prompt before it")
        module = self.module if model is None else ResponseModule(model)
        rows, cols = mask.nonzero(as_tuple=True)  # response tokens, row-major
        capture = HiddenCapture(self.penultimate) if with_hidden else None
        if capture is not None:
            capture.__enter__()
        try:
            logp, ent = module(
                input_ids,
                attention_mask,
                rows,
                cols,
                chunk_tokens=self.settings.logit_chunk_tokens,
                temperature=self.settings.temperature if temperature is None else temperature,
            )
        finally:
            if capture is not None:
                capture.__exit__(None, None, None)
        hidden = None
        if capture is not None:
            if capture.value is None:
                raise TrainerError("the penultimate-layer hook did not fire; is the model's decoder `layers` used?")
            hidden = capture.value[rows, cols - 1]  # [n, d], Contract 8
        return ResponseForward(logp, ent, hidden)

    @torch.no_grad()
    def compute_logprobs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        mask: torch.Tensor,
        *,
        with_hidden: bool = True,
        model: nn.Module | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Logprobs and entropy [B, T] (0 off ``mask``) and hidden states [n, d] of the response tokens (row-major).

        Runs in micro-batches of ``micro_batch_tokens``; the hidden states of the masked tokens come back in the
        row-major order of ``mask`` whatever the micro-batch order.
        """
        was_training = self.model.training
        self.model.eval()
        logprobs = torch.zeros(mask.shape, dtype=torch.float32)
        entropy = torch.zeros(mask.shape, dtype=torch.float32)
        lengths = attention_mask.sum(dim=1).tolist()
        hidden_rows: dict[int, torch.Tensor] = {}
        plans = plan_micro_batches(lengths, self.settings.micro_batch_tokens)
        # fsdp2: agree on the number of forwards before the first one (each is a sequence of collectives)
        passes = len(plans) if self.parallel is None or model is not None else self.parallel.aligned_count(len(plans))
        try:
            for rows in plans:
                width = max(int(lengths[r]) for r in rows)
                sub_mask = _trim(mask, rows, width)
                fwd = self.forward_responses(
                    _trim(input_ids, rows, width),
                    _trim(attention_mask, rows, width),
                    sub_mask,
                    with_hidden=with_hidden,
                    model=model,
                )
                full = torch.zeros(sub_mask.shape, dtype=torch.float32)
                full[sub_mask] = fwd.logprobs.float().cpu()
                logprobs[rows, :width] = full
                full = torch.zeros(sub_mask.shape, dtype=torch.float32)
                full[sub_mask] = fwd.entropy.float().cpu()
                entropy[rows, :width] = full
                if fwd.hidden is not None:
                    counts = sub_mask.sum(dim=1).tolist()
                    for r, piece in zip(rows, torch.split(fwd.hidden, counts), strict=True):
                        hidden_rows[r] = piece
            for _ in range(passes - len(plans)):
                self._dummy_pass(backward=False)
        finally:
            self.model.train(was_training)
        hidden = torch.cat([hidden_rows[r] for r in range(mask.shape[0])]) if with_hidden and hidden_rows else None
        return logprobs, entropy, hidden

    def _dummy_pass(self, *, backward: bool) -> None:
        """One forward (and backward) on a 2-token row with a zero loss: joins fsdp2's collectives, adds nothing."""
        ids = torch.zeros(1, 2, dtype=torch.long)
        mask = torch.tensor([[False, True]])
        fwd = self.forward_responses(ids, torch.ones(1, 2, dtype=torch.long), mask, with_hidden=False)
        if backward:
            (fwd.logprobs.sum() * 0.0).backward()

    def set_reference(self) -> None:
        """Freeze a copy of the current policy as the KL reference (``algo.loss.kl_coef > 0``)."""
        import copy

        if self.parallel is not None and self.parallel.sharded:
            raise TrainerError(
                "algo.loss.kl_coef > 0 with trainer.data_parallel=fsdp2: the KL reference copy is not sharded in "
                "this build; use trainer.data_parallel=ddp or kl_coef=0"
            )
        self.reference = copy.deepcopy(self.model).eval().requires_grad_(False)

    def reference_logprobs(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        if getattr(self, "reference", None) is None:
            self.set_reference()
        logprobs, _, _ = self.compute_logprobs(input_ids, attention_mask, mask, with_hidden=False, model=self.reference)
        return logprobs

    # ------------------------------------------------------------------------------------------------ steps
    def ppo_step(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        mask: torch.Tensor,
        old_logprobs: torch.Tensor,
        advantages: torch.Tensor,
        *,
        ref_logprobs: torch.Tensor | None = None,
        apply: bool = True,
    ) -> dict[str, float]:
        """One optimizer step of the PPO loss over [B, T] rows, accumulated over token-budget micro-batches.

        ``apply=False`` stops after the backward passes and leaves the accumulated gradients in ``.grad``.
        """
        s = self.settings

        def loss_fn(rows: list[int], width: int, fwd: ResponseForward, denominator: float) -> Any:
            sub = _trim(mask, rows, width)
            n = int(sub.sum())
            sel = sub.to(self.device)
            flat = torch.zeros(sub.shape, dtype=torch.float32, device=self.device)

            def spread(values: torch.Tensor) -> torch.Tensor:
                return flat.masked_scatter(sel, values.float())

            logp = spread(fwd.logprobs)
            ent = spread(fwd.entropy)
            old = _trim(old_logprobs, rows, width).to(self.device)
            adv = _trim(advantages, rows, width).to(self.device)
            ref = None if ref_logprobs is None else _trim(ref_logprobs, rows, width).to(self.device)
            loss, metrics = ppo_loss(
                logp,
                old,
                adv,
                sel,
                clip_low=s.clip_low,
                clip_high=s.clip_high,
                dual_clip=s.dual_clip,
                agg=s.agg,  # type: ignore[arg-type]
                ref_logprobs=ref,
                kl_coef=s.kl_coef,
                kl_kind=s.kl_kind,  # type: ignore[arg-type]
                entropy=ent,
                entropy_coef=s.entropy_coef,
                denominator=denominator,
            )
            # ppo_loss's pg_loss is this micro-batch's part of the mini-batch's (divided by the whole denominator);
            # as a metric it is the micro-batch's own aggregate, weighted by its share of the denominator (tokens,
            # or rows for the seq-mean aggregations), so the weighted mean over micro-batches and ranks is the whole.
            share = n if s.agg == "token-mean" else int((sub.sum(dim=1) > 0).sum())
            out: dict[str, Any] = dict(metrics)
            out["loss/pg_loss"] = (float(metrics["loss/pg_loss"]) * denominator / share, share)
            return loss, out, n

        return self._accumulate(input_ids, attention_mask, mask, loss_fn, apply=apply)

    def sft_step(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        mask: torch.Tensor,
        *,
        prompt_weight: float = 0.0,
        prompt_mask: torch.Tensor | None = None,
    ) -> dict[str, float]:
        """One optimizer step of token-mean cross-entropy on the ``mask`` tokens (expert responses).

        The cross-entropy is that of the model's own distribution (T = 1), whatever the rollout temperature: SFT
        fits the policy, and sampling at T != 1 rescales it later.

        ``prompt_weight`` w > 0 adds w x the token-mean cross-entropy of the prompt tokens (every other non-pad
        token but the first): language modelling on the env's own text, which a model trained from scratch needs
        to learn that the names in an observation are the ones its command must copy. Each term is a token mean
        over the whole step (all micro-batches and ranks), so accumulation still equals one big batch.
        ``prompt_mask`` (bool, the batch's shape) restricts the prompt term to those prompt tokens: a random subset
        is an unbiased estimate of the full prompt mean that skips the LM head on the other positions.
        """
        mask = mask.to(torch.bool)
        if prompt_mask is not None and prompt_mask.shape != mask.shape:
            raise TrainerError(
                f"sft_step: prompt_mask has shape {tuple(prompt_mask.shape)}, the batch {tuple(mask.shape)}"
            )
        if self.parallel is not None:  # every rank got the same rows: train on this rank's share, by token count
            counts = attention_mask.sum(dim=1).tolist() if prompt_weight > 0 else mask.sum(dim=1).tolist()
            owner = assign_groups(list(range(len(counts))), counts, self.parallel.world_size)
            mine = [i for i, r in enumerate(owner) if r == self.parallel.rank]
            input_ids, attention_mask, mask = input_ids[mine], attention_mask[mine], mask[mine]
            if prompt_mask is not None:
                prompt_mask = prompt_mask[mine]

        if prompt_weight <= 0:

            def loss_fn(rows: list[int], width: int, fwd: ResponseForward, denominator: float) -> Any:
                n = int(fwd.logprobs.numel())
                loss = -fwd.logprobs.sum() / denominator
                metrics = {"sft/nll": fwd.logprobs.detach().neg().mean() if n else torch.zeros(())}
                return loss, metrics, n

            return self._accumulate(input_ids, attention_mask, mask, loss_fn, force_token_mean=True, temperature=1.0)

        prompt = attention_mask.to(torch.bool) & ~mask
        prompt[:, 0] = False  # position 0 is never predicted
        if prompt_mask is not None:
            prompt &= prompt_mask.to(torch.bool)
        full = mask | prompt
        counts = [int(mask.sum()), int(prompt.sum())]
        if self.parallel is not None:
            counts = [int(v) for v in self.parallel.sum(counts)]
        n_resp, n_prompt = (float(max(c, 1)) for c in counts)

        def mixed_loss(rows: list[int], width: int, fwd: ResponseForward, denominator: float) -> Any:
            is_resp = _trim(mask, rows, width)[_trim(full, rows, width)].to(fwd.logprobs.device)  # row-major flags
            resp, other = fwd.logprobs[is_resp], fwd.logprobs[~is_resp]
            loss = -resp.sum() / n_resp - prompt_weight * other.sum() / n_prompt
            metrics: dict[str, Any] = {}
            if resp.numel():
                metrics["sft/nll"] = (resp.detach().neg().mean(), int(resp.numel()))
            if other.numel():
                metrics["sft/prompt_nll"] = (other.detach().neg().mean(), int(other.numel()))
            return loss, metrics, int(resp.numel())

        return self._accumulate(input_ids, attention_mask, full, mixed_loss, force_token_mean=True, temperature=1.0)

    def _accumulate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        mask: torch.Tensor,
        loss_fn: Callable[[list[int], int, ResponseForward, float], Any],
        *,
        force_token_mean: bool = False,
        apply: bool = True,
        temperature: float | None = None,
    ) -> dict[str, float]:
        """Forward/backward every micro-batch, then clip and step, skipping the step on a non-finite loss/grad.

        With ``parallel``, the denominator is the global count, gradients are summed over ranks, the norm is the
        global one and a non-finite loss or gradient on any rank skips the step on all of them.
        """
        start = time.perf_counter()
        par = self.parallel
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        mask = mask.to(torch.bool)
        lengths = attention_mask.sum(dim=1).tolist()
        agg = "token-mean" if force_token_mean else self.settings.agg
        num_tokens = int(mask.sum())
        num_rows = int((mask.sum(dim=1) > 0).sum())
        if par is not None:
            num_tokens, num_rows = (int(v) for v in par.sum([num_tokens, num_rows]))
        denominator = float(max(num_tokens if agg == "token-mean" else num_rows, 1))
        records: list[tuple[dict[str, float], float]] = []  # the micro-batches' metrics, for reduce_metrics
        total_loss = 0.0
        finite = True
        micro = [
            rows
            for rows in plan_micro_batches(lengths, self.settings.micro_batch_tokens)
            if bool(_trim(mask, rows, max(int(lengths[r]) for r in rows)).any())
        ]
        passes = len(micro) if par is None else par.aligned_count(len(micro))
        for rows in micro:
            width = max(int(lengths[r]) for r in rows)
            sub_mask = _trim(mask, rows, width)
            fwd = self.forward_responses(
                _trim(input_ids, rows, width),
                _trim(attention_mask, rows, width),
                sub_mask,
                with_hidden=False,
                temperature=temperature,
            )
            loss, metrics, n = loss_fn(rows, width, fwd, denominator)
            if not bool(torch.isfinite(loss)):
                finite = False
                if par is None or not par.sharded:
                    break
                loss.backward()  # fsdp2: the backward is a collective the other ranks wait for; the step is skipped
                continue
            loss.backward()
            total_loss += float(loss.detach())
            records.extend(_metric_records(metrics, n))
        num_micro = len(micro)
        if par is not None:
            for _ in range(passes - len(micro)):
                self._dummy_pass(backward=True)
            par.sync_grads([p for p in self.model.parameters() if p.requires_grad])
            parts = par.gather((records, total_loss, finite, len(micro)))
            records = [record for part in parts for record in part[0]]
            total_loss = sum(part[1] for part in parts)
            finite = all(part[2] for part in parts)
            num_micro = sum(part[3] for part in parts)
        out = reduce_metrics(records)
        if not apply:
            return out | {"loss/total": total_loss}
        grad_norm = math.nan
        if finite:
            params = [p for p in self.model.parameters() if p.grad is not None]
            grad_norm = clip_grad_norm(params, self.settings.grad_clip, parallel=par)
            finite = math.isfinite(grad_norm)
        if finite:
            self.optimizer.step()
            self.scheduler.step()
            self.steps += 1
        else:
            self.skipped_steps += 1
            logger.warning(
                "non-finite loss or gradient (loss %s, grad norm %s): step skipped, parameters unchanged",
                total_loss,
                grad_norm,
            )
        self.optimizer.zero_grad(set_to_none=True)
        elapsed = time.perf_counter() - start
        out.update(
            {
                "loss/total": total_loss if finite else math.nan,
                "optim/grad_norm": grad_norm,
                "optim/lr": float(self.optimizer.param_groups[0]["lr"]),
                "guard/skipped_step": 0.0 if finite else 1.0,
                "perf/micro_batches": float(num_micro),
                "perf/train_tokens_per_s": num_tokens / elapsed if elapsed > 0 else 0.0,
            }
        )
        return out

    # ------------------------------------------------------------------------------------------ checkpoints
    def model_state(self) -> dict[str, torch.Tensor]:
        """The whole model's weights on CPU (a collective under fsdp2: every rank must call it)."""
        if self.parallel is not None:
            return self.parallel.full_state_dict(self.model)
        return {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        """Model, optimizer, scheduler, generator, counters; whole tensors, in the single learner's format.

        A collective under fsdp2 (every rank calls it; rank 0 writes the checkpoint).
        """
        if self.parallel is not None:
            return {
                "model": self.parallel.full_state_dict(self.model),
                "optimizer": self.parallel.full_optimizer_state(self.optimizer),
                "scheduler": self.scheduler.state_dict(),
                "generator": self.generator.get_state(),
                "steps": self.steps,
                "skipped_steps": self.skipped_steps,
            }
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "steps": self.steps,
            "skipped_steps": self.skipped_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load a whole state (any learner's: one, ddp or fsdp2); under fsdp2 each rank keeps its shard."""
        if self.parallel is not None:
            self.parallel.load_full_state_dict(self.model, state["model"])
            self.parallel.load_optimizer_state(self.optimizer, state["optimizer"])
        else:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        self.steps = int(state["steps"])
        self.skipped_steps = int(state["skipped_steps"])

    def reset_optimizer(self, *, lr: float, warmup_steps: int) -> None:
        """A fresh optimizer and scheduler (after SFT, before RL: the two phases have their own learning rates)."""
        self.settings = LearnerSettings(**{**self.settings.__dict__, "lr": lr, "warmup_steps": warmup_steps})
        self.optimizer, self.scheduler = self._make_optimizer(lr, warmup_steps)

    def _make_optimizer(self, lr: float, warmup_steps: int) -> tuple[torch.optim.AdamW, Any]:
        """AdamW with linear warm-up over ``warmup_steps``; the fused kernel where it applies (parameters on CPU or
        CUDA, fsdp2's sharded ones included: measured 4 % off a tiny model's CPU SFT step). Every learner layout
        makes the same choice, so an optimizer state moves between one learner, ddp and fsdp2."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=self.settings.weight_decay, fused=fused or None)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
        )
        return optimizer, scheduler


def _metric_records(metrics: dict[str, Any], tokens: int) -> list[tuple[dict[str, float], float]]:
    """A micro-batch's metrics as :func:`~resrl_agent.trainer.metrics.reduce_metrics` records: a value is a mean
    over the micro-batch's ``tokens``, or a (value, weight) pair with its own weight; one record per weight."""
    by_weight: dict[float, dict[str, float]] = {}
    for key, value in metrics.items():
        v, w = (float(value[0]), float(value[1])) if isinstance(value, tuple) else (float(value), float(tokens))
        by_weight.setdefault(w, {})[key] = v
    return [(record, weight) for weight, record in by_weight.items()]
