"""Which torch device a stage runs on — decided here, once, before any model loads.

``choose_device(None)`` is the default (``cuda:LOCAL_RANK`` when a GPU is visible, else ``cpu``); a named device
this machine lacks, or one that holds no data (``meta``), is a one-line error listing the devices it has.
"""

from __future__ import annotations

import os

import torch

from moon_cli.errors import MoonError


def visible_devices() -> list[str]:
    """The devices a stage can run on here, e.g. ['cpu', 'cuda:0', 'cuda:1']."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        names.append("mps")
    return names


def default_device() -> str:
    return f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if torch.cuda.is_available() else "cpu"


def choose_device(requested: str | None, option: str = "--device") -> str:
    """The device to run on: ``requested`` checked against this machine, or the default. Under torchrun a
    bare ``cuda`` means this process's GPU (``cuda:LOCAL_RANK``)."""
    if requested is None or not str(requested).strip():
        return default_device()
    name = str(requested).strip()
    have = ", ".join(visible_devices())
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise MoonError(f"{option} {name!r} is not a torch device; this machine has: {have}") from None
    if device.type == "cpu":
        return "cpu"
    if device.type == "meta":
        raise MoonError(f"{option} meta holds no data, so nothing can be computed on it; this machine has: {have}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise MoonError(f"{option} {name}: no GPU is visible here (CUDA unavailable); this machine has: {have}")
        index = device.index if device.index is not None else int(os.environ.get("LOCAL_RANK", "0"))
        if index >= torch.cuda.device_count():
            raise MoonError(f"{option} {name}: there is no GPU {index}; this machine has: {have}")
        return f"cuda:{index}"
    if device.type == "mps" and "mps" in visible_devices():
        return "mps"
    raise MoonError(f"{option} {name}: not available here; this machine has: {have}")
