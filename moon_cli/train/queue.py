"""The "temporal" negatives: a FIFO queue of product embeddings from earlier steps (MoCo-style, detached)."""

from __future__ import annotations

import torch

from moon_cli.train.loss import NO_ITEM


class EmbeddingQueue:
    def __init__(self, size: int, dim: int):
        self.size = size
        self.vectors = torch.zeros((size, dim))  # (S, D), rows beyond ``filled`` unused
        self.ids = torch.full((size,), NO_ITEM, dtype=torch.long)  # (S,)
        self.ptr = 0
        self.filled = 0

    def __len__(self) -> int:
        return self.filled

    def contents(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(filled, D) vectors and (filled,) ids, oldest first not guaranteed (order does not matter)."""
        return self.vectors[: self.filled].to(device), self.ids[: self.filled].to(device)

    @torch.no_grad()
    def push(self, vectors: torch.Tensor, ids: torch.Tensor) -> None:
        """Enqueue (n, D) vectors with their ids, dropping padding rows; the oldest fall out."""
        keep = ids != NO_ITEM
        vectors, ids = vectors[keep].detach().float().cpu(), ids[keep].cpu()
        if self.size == 0 or len(ids) == 0:
            return
        vectors, ids = vectors[-self.size:], ids[-self.size:]
        n = len(ids)
        idx = (self.ptr + torch.arange(n)) % self.size
        self.vectors[idx] = vectors
        self.ids[idx] = ids
        self.ptr = int((self.ptr + n) % self.size)
        self.filled = min(self.size, self.filled + n)

    def state_dict(self) -> dict:
        return {"vectors": self.vectors.clone(), "ids": self.ids.clone(), "ptr": self.ptr, "filled": self.filled}

    def load_state_dict(self, state: dict) -> None:
        self.vectors, self.ids = state["vectors"].clone(), state["ids"].clone()
        self.ptr, self.filled = int(state["ptr"]), int(state["filled"])
        self.size = len(self.ids)
