"""`moon train --fsdp`: FSDP2 (``fully_shard``) for backbones that do not fit one device.

Each decoder layer is its own FSDP unit (its weights gathered just before it runs and freed after), the rest
of the model — vision tower included — one root unit; frozen base weights are sharded like the trained ones.
Every rank must run the same collectives in the same order: decoder layers run for every sequence, but the
vision tower only when a batch holds photos, and a rank with a text-only batch would skip its all-gathers —
so vision blocks are not units of their own. For the same reason the dual encoder (a tower runs only when its
modality is present) is not sharded, and GradCache pads ranks to the same number of chunks (``train/step.py``). The
contrastive loss is unchanged: embeddings are gathered across ranks as under DDP, and FSDP's reduce-scatter
*sums* gradients when the loss is the gathered one (every rank holds the global loss, through its own slice),
or averages them when each rank has its own loss, exactly as ``dist.sum_gradients`` does for DDP.

Checkpoints stay single files: the weights are gathered to rank 0 (``full_state_dict``); optimiser state is
kept per rank (``optimizer-rank{R}.pt``), so a run resumes with the same number of processes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from moon_cli.train.dist import DistInfo


def units(model: nn.Module) -> list[nn.Module]:
    """The modules that become their own FSDP unit: the decoder layers (``....layers``), wherever they are."""
    found = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and name.rsplit(".", 1)[-1] == "layers":
            found += list(module)
    return found


def shard(model: nn.Module, info: DistInfo, device: torch.device, sum_gradients: bool) -> None:
    """Shard ``model`` in place over every rank (one flat mesh)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (info.world_size,))
    for unit in units(model):
        fully_shard(unit, mesh=mesh)
    fully_shard(model, mesh=mesh)
    # a guided-MoE expert that no token reached on one rank has no gradient there, but may on another: every
    # rank must still take part in the same reduce-scatter (DDP's find_unused_parameters)
    model.set_reduce_scatter_unused_params(True)
    for module in model.modules():
        if hasattr(module, "set_gradient_divide_factor"):
            module.set_gradient_divide_factor(1.0 if sum_gradients else float(info.world_size))
            module.set_force_sum_reduction_for_comms(True)  # a custom factor is PREMUL_SUM, which gloo lacks


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every rank must call this (it gathers); rank 0 gets the full tensors on the CPU, the others {}."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def optimizer_file(ckpt: Path, rank: int) -> Path:
    return ckpt / f"optimizer-rank{rank}.pt"


def local_optimizer_state(optimizer: torch.optim.Optimizer) -> dict:
    """This rank's optimiser state with its DTensor shards as plain tensors (loadable with weights_only)."""
    from torch.distributed.tensor import DTensor

    state = optimizer.state_dict()
    state["state"] = {i: {k: v.to_local().cpu() if isinstance(v, DTensor) else v for k, v in s.items()}
                      for i, s in state["state"].items()}
    return state


def load_local_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Inverse of ``local_optimizer_state``: shards become DTensors again, laid out like their parameters."""
    from torch.distributed.tensor import DTensor

    params = [p for group in optimizer.param_groups for p in group["params"]]
    for i, s in state["state"].items():
        p = params[int(i)]
        if isinstance(p, DTensor):
            s.update({k: DTensor.from_local(v.to(p.device), p.device_mesh, p.placements)
                      for k, v in s.items() if torch.is_tensor(v) and v.ndim > 0})
    optimizer.load_state_dict(state)
