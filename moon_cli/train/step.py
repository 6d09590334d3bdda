"""One contrastive training step: embed a batch, pool negatives, InfoNCE, backward — plainly or GradCache-style.

Negative pool of each query (N columns):
    this rank's positives + hard negatives  ─┐
    other ranks' positives + hard negatives ─┼─ "spatial" (all-gathered; --no-gather drops them)
    queue of earlier steps' products        ─┘ "temporal" (--no-queue drops it)
GradCache: embed every chunk without grad, compute the loss on the cached embeddings, then re-run each chunk
with grad (replaying its RNG state) and back-propagate the cached embedding gradients. Same loss, same
gradients as the plain step, with activation memory bounded by the chunk size instead of the batch.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch

from moon_cli.model.moon import MoonModel
from moon_cli.model.processor import Sequence
from moon_cli.train.data import TrainBatch
from moon_cli.train.dist import DistInfo, gather_with_local_grad, max_over_ranks
from moon_cli.train.fsdp import is_sharded
from moon_cli.train.loss import NO_ITEM, alignment_loss, false_negative_mask, matryoshka_info_nce
from moon_cli.train.queue import EmbeddingQueue


@dataclass
class StepOptions:
    gather: bool = True
    queue: bool = True
    matryoshka_dims: list[int] = field(default_factory=list)
    balance_weight: float = 0.01
    grad_cache: bool = False
    chunk_size: int = 8
    bf16: bool = False
    align_weight: float = 0.0  # weight of the intra-product image↔text alignment term (plain step only)


@dataclass
class StepResult:
    loss: torch.Tensor  # contrastive + weighted balance + weighted alignment (detached)
    contrastive: torch.Tensor
    balance: torch.Tensor
    align: torch.Tensor  # the alignment term (0 when its weight is 0)
    pool: int  # candidate columns per query (excluding padding)
    gathered: int  # of which came from other ranks
    queued: int  # of which came from the queue
    products: torch.Tensor  # (R·N, D) gathered product embeddings (detached), for the queue
    product_ids: torch.Tensor  # (R·N,)


class ContrastiveStep:
    def __init__(self, model: MoonModel, log_scale: torch.Tensor, opts: StepOptions, info: DistInfo,
                 queue: EmbeddingQueue | None):
        """``log_scale``: log(1/τ), a scalar (learnable or fixed)."""
        self.model, self.log_scale, self.opts, self.info, self.queue = model, log_scale, opts, info, queue
        # a sharded model gathers its weights in every forward and reduces in every backward: all ranks must run
        # as many as each other, so GradCache pads a rank with fewer chunks with forwards that weigh nothing
        self.sharded = is_sharded(model)

    # ------------------------------------------------------------------------------------------ embedding
    def _autocast(self):
        if self.opts.bf16 and self.model.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _forward(self, seqs: list[Sequence]):
        with self._autocast():
            return self.model(self.model.processor.collate(seqs))

    def _valid(self, seqs: list[Sequence | None]) -> tuple[list[Sequence], torch.Tensor]:
        idx = [i for i, s in enumerate(seqs) if s is not None]
        return [seqs[i] for i in idx], torch.tensor(idx, dtype=torch.long)

    def _place(self, emb: torch.Tensor, idx: torch.Tensor, n: int) -> torch.Tensor:
        """Scatter (k, D) rows into a zero (n, D) tensor at rows ``idx`` (empty slots stay zero)."""
        out = emb.new_zeros((n, emb.shape[-1]))
        return out.index_copy(0, idx.to(emb.device), emb)

    def _embed_plain(self, seqs: list[Sequence | None]):
        valid, idx = self._valid(seqs)
        out = self._forward(valid)
        return self._place(out.embeddings, idx, len(seqs)), out

    def _chunks(self, seqs: list[Sequence]) -> list[list[Sequence]]:
        c = max(1, self.opts.chunk_size)
        return [seqs[i:i + c] for i in range(0, len(seqs), c)]

    def _padding_chunks(self, n_chunks: int) -> int:
        """How many empty-weight chunks this rank adds so that every rank runs the same number (sharded only)."""
        if not self.sharded:
            return 0
        return max_over_ranks(n_chunks, self.info) - n_chunks

    def _embed_cached(self, seqs: list[Sequence | None]):
        """No-grad chunked embedding; remembers each chunk's RNG state for the replay."""
        valid, idx = self._valid(seqs)
        embs, states = [], []
        pad = self._padding_chunks(len(self._chunks(valid)))
        with torch.no_grad():
            for chunk in self._chunks(valid):
                states.append(_rng_state(self.model.device))
                embs.append(self._forward(chunk).embeddings)
            for _ in range(pad):
                self._forward(valid[:1])
        emb = self._place(torch.cat(embs), idx, len(seqs)).requires_grad_(True)
        return emb, (valid, idx, states, pad)

    def _replay_backward(self, cache, grad: torch.Tensor) -> torch.Tensor:
        """Re-run each chunk with grad and push the cached embedding gradient (and balance loss) through it."""
        valid, idx, states, pad = cache
        rows = grad[idx.to(grad.device)]  # (k, D) gradients of the valid rows
        balance_total = torch.zeros((), device=grad.device)
        end_state = _rng_state(self.model.device)
        start = 0
        for chunk, state in zip(self._chunks(valid), states):
            _set_rng_state(state, self.model.device)
            out = self._forward(chunk)
            share = len(chunk) / len(valid)
            weighted_balance = out.balance_loss * share
            surrogate = (out.embeddings * rows[start:start + len(chunk)]).sum()
            surrogate = surrogate + 0.5 * self.opts.balance_weight * weighted_balance
            surrogate.backward()
            balance_total = balance_total + weighted_balance.detach()
            start += len(chunk)
        for _ in range(pad):  # the other ranks' extra chunks: same collectives, zero gradient
            out = self._forward(valid[:1])
            (0.0 * (out.embeddings.sum() + out.balance_loss)).backward()
        _set_rng_state(end_state, self.model.device)
        return balance_total

    # ------------------------------------------------------------------------------------------ loss
    def pool_loss(self, q: torch.Tensor, p: torch.Tensor, batch: TrainBatch):
        """InfoNCE of this rank's queries q (B, D) over the global pool; p (N, D) this rank's products."""
        info, device = self.info, q.device
        gather = self.opts.gather and info.enabled
        ginfo = info if gather else DistInfo()
        Q = gather_with_local_grad(q, ginfo)  # (R·B, D)
        C = gather_with_local_grad(p, ginfo)  # (R·N, D)
        cand_ids = gather_with_local_grad(batch.product_ids.to(device), ginfo)  # (R·N,)
        pos_ids = gather_with_local_grad(batch.positive_ids.to(device), ginfo)  # (R·B, P)
        R, B, N = len(Q) // len(q), len(q), len(p)
        targets = (torch.arange(R, device=device)[:, None] * N + torch.arange(B, device=device)[None, :]).reshape(-1)
        products, product_ids = C.detach(), cand_ids
        queued = 0
        if self.queue is not None and self.opts.queue and len(self.queue):
            qv, qi = self.queue.contents(device)
            C = torch.cat([C, qv.to(C.dtype)])
            cand_ids = torch.cat([cand_ids, qi])
            queued = len(qi)
        mask = false_negative_mask(cand_ids, pos_ids, targets)  # (R·B, total)
        loss = matryoshka_info_nce(Q, C, targets, mask, self.log_scale.exp(), self.opts.matryoshka_dims)
        pool = int((cand_ids != NO_ITEM).sum())
        gathered = int((product_ids != NO_ITEM).sum()) - int((batch.product_ids != NO_ITEM).sum())
        return loss, pool, gathered, queued, products, product_ids

    # ------------------------------------------------------------------------------------------ step
    def __call__(self, batch: TrainBatch) -> StepResult:
        """Forward + backward for one batch; gradients accumulate into the parameters (caller steps)."""
        align = torch.zeros(())
        if not self.opts.grad_cache:
            q, q_out = self._embed_plain(batch.queries)
            p, p_out = self._embed_plain(batch.products)
            contrastive, pool, gathered, queued, products, ids = self.pool_loss(q, p, batch)
            balance = 0.5 * (q_out.balance_loss + p_out.balance_loss)
            loss = contrastive + self.opts.balance_weight * balance
            if self.opts.align_weight > 0:
                align = alignment_loss(p_out.visual, p_out.text, p_out.has_both, self.log_scale.exp())
                loss = loss + self.opts.align_weight * align
            loss.backward()
        else:
            q, q_cache = self._embed_cached(batch.queries)
            p, p_cache = self._embed_cached(batch.products)
            contrastive, pool, gathered, queued, products, ids = self.pool_loss(q, p, batch)
            contrastive.backward()  # fills q.grad, p.grad (and the temperature's grad)
            balance = 0.5 * (self._replay_backward(q_cache, q.grad) + self._replay_backward(p_cache, p.grad))
            loss = contrastive.detach() + self.opts.balance_weight * balance
        return StepResult(loss.detach(), contrastive.detach(), balance.detach(), align.detach(), pool, gathered, queued,
                          products, ids)


def _rng_state(device: torch.device):
    cpu = torch.get_rng_state()
    return (cpu, torch.cuda.get_rng_state(device)) if device.type == "cuda" else (cpu, None)


def _set_rng_state(state, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)
