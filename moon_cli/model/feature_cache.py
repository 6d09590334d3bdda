"""The frozen vision tower's features, computed once per photo: in memory, and on disk across runs.

A frozen tower (mini's EfficientNet-Lite0) gives the same features for the same pixels every step; a reproduction
trains and evaluates many versions on one world's photos. ``MOON_FEATURE_CACHE`` names the on-disk directory
(off when unset; `make reproduce` sets it).
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from moon_cli.errors import warn

FEATURE_CACHE_ENV = "MOON_FEATURE_CACHE"


class FrozenFeatureCache:
    """The frozen vision tower's features by the photo's pixels: in memory (least recently used out past
    ``max_bytes``) and, when ``directory`` is given, on disk, shared by every process and run that uses the
    same tower — a reproduction trains and evaluates many versions on one world's photos.

    A key is the pixels' hash with the tower weights' fingerprint, so a tower with other weights never reads
    another's features. Exact up to float rounding: batch-norm statistics are frozen, so a photo's features do
    not depend on its batch (a different batch size may round the last bit differently).
    """

    def __init__(self, max_bytes: int = 1 << 30, directory: str | Path | None = None):
        self.max_bytes, self.bytes = max_bytes, 0
        self.directory = Path(directory) if directory else None
        self.store: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self.hits = self.misses = 0
        self._tag: tuple[tuple, bytes] | None = None  # (the weights' storage signature, their fingerprint)

    @classmethod
    def from_environment(cls) -> "FrozenFeatureCache":
        """In memory, and on disk where ``MOON_FEATURE_CACHE`` names a directory."""
        return cls(directory=os.environ.get(FEATURE_CACHE_ENV) or None)

    def fingerprint(self, tower: nn.Module) -> bytes:
        """The tower's weights (recomputed only when a tensor was replaced or written in place)."""
        tensors = list(tower.state_dict().values())
        signature = tuple((t.data_ptr(), t._version, t.dtype) for t in tensors)
        if self._tag is None or self._tag[0] != signature:
            h = hashlib.blake2b(digest_size=16)
            for t in tensors:
                h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
            h.update(repr((getattr(tower, "merge", None), getattr(tower, "grid", 0))).encode())
            self._tag = (signature, h.digest())
        return self._tag[1]

    def __call__(self, tower: nn.Module, pixels: torch.Tensor) -> torch.Tensor:  # (N, 3, S, S) → (N, T, C)
        tag = self.fingerprint(tower)
        keys = [hashlib.blake2b(tag + p.detach().cpu().numpy().tobytes(), digest_size=16).digest() for p in pixels]
        found = {k: self.store[k] for k in keys if k in self.store}
        for k in found:
            self.store.move_to_end(k)
        for k in dict.fromkeys(k for k in keys if k not in found):
            feats = self._read(k)
            if feats is not None:
                found[k] = feats
                self._put(k, feats)
        missing = list(dict.fromkeys(k for k in keys if k not in found))  # each photo still missing, once
        if missing:
            first = [keys.index(k) for k in missing]
            with torch.no_grad():
                fresh = tower(pixels[first])  # (n, T, C)
            for k, feats in zip(missing, fresh):
                found[k] = feats = feats.clone()  # its own storage: the cache's size is what it holds
                self._put(k, feats)
                self._write(k, feats)
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        return torch.stack([found[k] for k in keys]).to(pixels.device)

    def _put(self, key: bytes, feats: torch.Tensor) -> None:
        self.store[key] = feats
        self.bytes += feats.numel() * feats.element_size()
        while self.bytes > self.max_bytes and len(self.store) > 1:
            _, old = self.store.popitem(last=False)
            self.bytes -= old.numel() * old.element_size()

    def _path(self, key: bytes) -> Path:
        return self.directory / key.hex()[:2] / f"{key.hex()}.npy"

    def _read(self, key: bytes) -> torch.Tensor | None:
        if self.directory is None:
            return None
        try:
            return torch.from_numpy(np.load(self._path(key), allow_pickle=False))
        except (OSError, ValueError):  # not there yet, or unreadable: computed again (and rewritten)
            return None

    def _write(self, key: bytes, feats: torch.Tensor) -> None:
        if self.directory is None:
            return
        from moon_cli.io import atomic_file

        try:  # atomic: a reader sees the whole file or none; two writers write the same bytes
            with atomic_file(self._path(key)) as tmp, open(tmp, "wb") as f:
                np.save(f, feats.detach().cpu().numpy(), allow_pickle=False)
        except OSError as exc:  # a full or read-only disk costs speed, not the run
            warn(f"moon: warning: the feature cache {self.directory} cannot be written ({exc}); continuing without it")
            self.directory = None
