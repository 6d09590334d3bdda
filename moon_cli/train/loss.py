"""InfoNCE over a pool of candidate products, with masks for false negatives, and its Matryoshka form.

    queries (Q, D) ─┐
                    ├─ cosine / τ ─► logits (Q, N) ─► cross-entropy against each query's positive column
    candidates (N, D)┘   (columns that are another positive of the same query, or padding, are masked out)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NO_ITEM = -1  # id of a padding candidate slot


def false_negative_mask(candidate_ids: torch.Tensor, positive_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(Q, N) True where candidate n must not count as a negative for query q.

    candidate_ids (N,) item ids (NO_ITEM = padding); positive_ids (Q, P) every known positive item of each
    query (NO_ITEM-padded); targets (Q,) the column of each query's own positive (never masked).
    """
    same = (candidate_ids[None, None, :] == positive_ids[:, :, None]) & (positive_ids[:, :, None] != NO_ITEM)
    mask = same.any(1) | (candidate_ids == NO_ITEM)[None, :]  # (Q, N)
    mask[torch.arange(len(targets), device=targets.device), targets] = False
    return mask


def info_nce(queries: torch.Tensor, candidates: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
             logit_scale: torch.Tensor) -> torch.Tensor:
    """Mean InfoNCE of queries (Q, D) against candidates (N, D); both unit-norm. ``logit_scale`` = 1/τ."""
    logits = logit_scale * queries @ candidates.T  # (Q, N)
    logits = logits.masked_fill(mask, float("-inf"))
    return F.cross_entropy(logits, targets)


def matryoshka_info_nce(queries: torch.Tensor, candidates: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                        logit_scale: torch.Tensor, dims: list[int]) -> torch.Tensor:
    """InfoNCE averaged over the full embedding and each prefix size in ``dims`` (each renormalised)."""
    full = queries.shape[-1]
    losses = []
    for d in sorted({d for d in dims if 0 < d < full} | {full}):
        q = F.normalize(queries[:, :d], dim=-1) if d < full else queries
        c = F.normalize(candidates[:, :d], dim=-1) if d < full else candidates
        losses.append(info_nce(q, c, targets, mask, logit_scale))
    return torch.stack(losses).mean()


def alignment_loss(visual: torch.Tensor, text: torch.Tensor, has_both: torch.Tensor,
                   logit_scale: torch.Tensor) -> torch.Tensor:
    """Intra-product image↔text alignment (MOON2.0's product-level alignment): symmetric InfoNCE that pairs
    each product's visual-token mean with its own content-text mean against the batch's other products.

    visual, text (N, D) unit-norm per-product modality means; has_both (N,) the products that have both
    (the others do not take part). Zero when fewer than two products have both.
    """
    v, t = visual[has_both], text[has_both]  # (M, D)
    if len(v) < 2:
        return visual.new_zeros(())
    logits = logit_scale * v @ t.T  # (M, M)
    targets = torch.arange(len(v), device=v.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))
