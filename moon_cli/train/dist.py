"""Data parallelism without a DDP wrapper: every rank computes the loss over the gathered batch with its own
slice differentiable, and gradients are summed across ranks — exact for the global contrastive loss, and
compatible with GradCache's several forwards per step. Runs under `torchrun` (it sets RANK / WORLD_SIZE /
LOCAL_RANK); gloo on CPU, nccl on GPU. Any launcher that sets those variables works the same way; only
torchrun is tested (`accelerate launch --cpu --num_processes 2` started a single process on these machines).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_kind: str) -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def gather_with_local_grad(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Concatenate ``x`` (n, ...) from every rank in rank order; only this rank's slice keeps its grad.

    All ranks must pass the same shape (the trainer pads batches to fixed sizes).
    """
    if not info.enabled:
        return x
    parts = [torch.empty_like(x) for _ in range(info.world_size)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[info.rank] = x
    return torch.cat(parts)


def sum_gradients(params, info: DistInfo, average: bool) -> None:
    """All-reduce the gradients of ``params`` (sum, or mean when ``average``), one flat buffer."""
    if not info.enabled:
        return
    for p in params:  # an expert no token reached on this rank has no grad here but may on another
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    if average:
        flat /= info.world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def _collective_device() -> str:
    return "cuda" if dist.get_backend() == "nccl" else "cpu"  # NCCL reduces only GPU tensors


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True when ``flag`` holds on any rank (keeps every rank taking the same branch)."""
    return bool(max_over_ranks(1 if flag else 0, info) > 0)


def max_over_ranks(n: int, info: DistInfo) -> int:
    """The largest ``n`` any rank holds."""
    if not info.enabled:
        return n
    t = torch.tensor([n], device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def gather_objects(obj, info: DistInfo) -> list:
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
