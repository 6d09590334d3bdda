"""A compact CTR model: ID features, an ID behaviour pool, and (optionally) MOON's content-based behaviour module.

    user, item, category IDs ──embeddings──────────────────────────────────────────┐
    history item / category IDs ──masked mean──► (B, 2·d) ───────────────────────────┤
    frozen E[item] (B, D), E[history] (B, L, D) ─┬─ cosine → histogram ("SimTier") ──┼─► MLP ─► logit
                                                  └─ target attention over projections ┘

The content module is what MOON Embedding adds: the frozen embeddings are never trained here, so any
gain is what the representation carries about which products a user's earlier clicks resemble.
"""

from __future__ import annotations

import torch
from torch import nn


class SimTier(nn.Module):
    """Histogram of cosine(target, behaviour item) over ``bins`` equal tiers of [-1, 1], as shares of the
    sequence, plus log(1 + length): (B, bins + 1). Hard bucketing: no gradient (the embeddings are frozen)."""

    def __init__(self, bins: int):
        super().__init__()
        self.bins = bins

    def forward(self, sims: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        tier = ((sims.clamp(-1, 1 - 1e-6) + 1) / 2 * self.bins).long()  # (B, L) in [0, bins)
        counts = torch.zeros(sims.shape[0], self.bins, device=sims.device)
        counts.scatter_add_(1, tier, mask.float())  # (B, bins)
        length = mask.sum(1, keepdim=True).float()  # (B, 1)
        return torch.cat([counts / length.clamp(min=1), torch.log1p(length)], dim=1)


class TargetAttention(nn.Module):
    """Softmax(q·k / √a) over the behaviour sequence with q, k, v projected from the frozen embeddings: (B, 2a)."""

    def __init__(self, dim: int, att_dim: int):
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(dim, att_dim) for _ in range(3))

    def forward(self, target: torch.Tensor, seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q = self.q(target)  # (B, a)
        scores = torch.einsum("ba,bla->bl", q, self.k(seq)) / q.shape[-1] ** 0.5  # (B, L)
        scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.nan_to_num(scores.softmax(-1))  # (B, L); an empty sequence → all zeros
        pooled = torch.einsum("bl,bla->ba", weights, self.v(seq))  # (B, a)
        return torch.cat([q, pooled], dim=1)


class CTRModel(nn.Module):
    def __init__(self, n_users: int, n_items: int, n_categories: int, item_category: torch.Tensor,
                 content: torch.Tensor | None = None, id_dim: int = 16, bins: int = 10, att_dim: int = 32,
                 hidden: tuple[int, ...] = (64, 32)):
        super().__init__()
        self.user = nn.Embedding(n_users + 1, id_dim, padding_idx=0)
        self.item = nn.Embedding(n_items + 1, id_dim, padding_idx=0)
        self.category = nn.Embedding(n_categories + 1, id_dim, padding_idx=0)
        self.register_buffer("item_category", item_category, persistent=False)  # (n_items + 1,)
        width = 5 * id_dim
        self.register_buffer("content", content, persistent=False)  # (n_items + 1, D), row 0 = zeros; or None
        if content is not None:
            self.simtier = SimTier(bins)
            self.attention = TargetAttention(content.shape[1], att_dim)
            width += bins + 1 + 2 * att_dim
        layers, last = [], width
        for h in hidden:
            layers += [nn.Linear(last, h), nn.ReLU()]
            last = h
        self.mlp = nn.Sequential(*layers, nn.Linear(last, 1))

    def forward(self, user, item, category, history) -> torch.Tensor:
        """Logits (B,) for user (B,), item (B,), category (B,), history (B, L) item indices (0 = padding)."""
        mask = history > 0  # (B, L)
        denom = mask.sum(1, keepdim=True).clamp(min=1).float()  # (B, 1)
        hist_items = (self.item(history) * mask.unsqueeze(-1)).sum(1) / denom  # (B, d)
        hist_cats = (self.category(self.item_category[history]) * mask.unsqueeze(-1)).sum(1) / denom  # (B, d)
        parts = [self.user(user), self.item(item), self.category(category), hist_items, hist_cats]
        if self.content is not None:
            target, seq = self.content[item], self.content[history]  # (B, D), (B, L, D)
            sims = torch.einsum("bd,bld->bl", target, seq)  # (B, L) cosine: the vectors are unit norm
            parts += [self.simtier(sims, mask), self.attention(target, seq, mask)]
        return self.mlp(torch.cat(parts, dim=1)).squeeze(-1)
