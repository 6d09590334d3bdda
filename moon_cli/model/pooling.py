"""Pooling the last hidden states (B, L, H) of one sequence into one product / query vector (B, H).

- ``mean``: the paper's — the mean over every real token (template words and vision delimiters included).
- ``balanced``: half the unit-norm mean of the visual tokens (photos + crops) plus half the unit-norm mean
  of the content-text tokens (title, category, attributes, query text); a row with one modality only is
  that modality's mean. Template words and delimiters are left out.

Why ``balanced`` exists (measured, see README "What made the tiny model learn"): visual-token states are
mutually coherent and text-token states diverse, so a plain mean points at the photos even when visual
tokens are a quarter of the sequence, and a text query, a label or the colour word of a multimodal query
ends up as a minority component. Balancing the two modality means is what a dual encoder does by
construction, kept inside MOON's single sequence (the tokens still attend to each other).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from moon_cli.errors import MoonError
from moon_cli.model.config import POOLING_MODES
from moon_cli.model.processor import TokenType

VISUAL_TYPES = (TokenType.IMAGE, TokenType.CROP)
TEXT_TYPES = (TokenType.TITLE, TokenType.CATEGORY, TokenType.ATTRIBUTE, TokenType.QUERY_TEXT)


def masked_mean(hidden: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean of hidden (B, L, H) over positions where keep (B, L) is true → (B, H); a row with none → 0."""
    keep = keep.bool().unsqueeze(-1)  # (B, L, 1)
    summed = torch.where(keep, hidden, torch.zeros((), dtype=hidden.dtype, device=hidden.device)).sum(1)  # (B, H)
    return summed / keep.sum(1).clamp(min=1).to(hidden.dtype)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens (mask (B, L) = 1) → (B, H). Padding never leaks in."""
    return masked_mean(hidden, mask)


def modality_means(hidden: torch.Tensor, mask: torch.Tensor, token_types: torch.Tensor):
    """The unit-norm mean of the visual tokens and of the content-text tokens: v (B, H), t (B, H) (0 where a
    row has none), and which rows have each, has_v (B, 1), has_t (B, 1)."""
    real = mask.bool()  # (B, L)
    visual = real & _is_any(token_types, VISUAL_TYPES)  # (B, L)
    text = real & _is_any(token_types, TEXT_TYPES)  # (B, L)
    v = F.normalize(masked_mean(hidden, visual).float(), dim=-1)  # (B, H), 0 where a row has no visual token
    t = F.normalize(masked_mean(hidden, text).float(), dim=-1)  # (B, H)
    return v, t, visual.any(1, keepdim=True), text.any(1, keepdim=True)


def with_prior(v: torch.Tensor, has_v: torch.Tensor, prior) -> torch.Tensor:
    """The visual half with a backbone's zero-training prior (model/prior.py) mixed in: n(w_a·anchor + w_d·detail
    + w_v·v) for rows with photos, the weights (3,) coming with the prior; v as it is without one."""
    if prior is None:
        return v
    anchor, detail, w = prior  # (B, H), (B, H), (B, 3)
    mixed = F.normalize(w[:, :1] * anchor.float() + w[:, 1:2] * detail.float() + w[:, 2:] * v, dim=-1)
    return torch.where(has_v, mixed, v)


def balanced_pool(hidden: torch.Tensor, mask: torch.Tensor, token_types: torch.Tensor, prior=None) -> torch.Tensor:
    """½·n(mean of visual tokens) + ½·n(mean of content-text tokens) → (B, H); one modality alone if the
    other is absent. Padding (mask 0) and template / delimiter tokens never count. With a ``prior`` (anchor,
    detail, weights), the visual half mixes it in (``with_prior``)."""
    v, t, has_v, has_t = modality_means(hidden, mask, token_types)
    v = with_prior(v, has_v, prior)
    both = has_v & has_t
    pooled = torch.where(both, 0.5 * (v + t), v + t)  # the absent modality's mean is 0
    # a row with neither (only template tokens) falls back to the plain mean, so it is never a zero vector
    return torch.where(has_v | has_t, pooled, mean_pool(hidden, mask).float()).to(hidden.dtype)


def pool(mode: str, hidden: torch.Tensor, mask: torch.Tensor, token_types: torch.Tensor, prior=None) -> torch.Tensor:
    """(B, H) pooled states by ``mode`` (one of ``POOLING_MODES``); not yet L2-normalised. ``prior`` mixes into
    balanced pooling's visual half only."""
    if mode == "balanced":
        return balanced_pool(hidden, mask, token_types, prior)
    if mode == "mean":
        return mean_pool(hidden, mask)
    raise MoonError(f"unknown pooling mode '{mode}'; use one of {', '.join(POOLING_MODES)}")


def _is_any(token_types: torch.Tensor, kinds) -> torch.Tensor:
    out = torch.zeros_like(token_types, dtype=torch.bool)
    for kind in kinds:
        out |= token_types == int(kind)
    return out
