"""Retrieval metrics for one relevant item per query (the MBE setting). Pure numpy / torch, no I/O."""

from __future__ import annotations

import numpy as np
import torch


def target_ranks(queries: torch.Tensor, gallery: torch.Tensor, targets: torch.Tensor, chunk: int = 1024) -> np.ndarray:
    """0-based rank of each query's target in the gallery by cosine score (ties count against the target).

    queries (Q, D) and gallery (G, D) unit-norm; targets (Q,) gallery row of each query's relevant item.
    """
    ranks = []
    for s in range(0, len(queries), chunk):
        scores = queries[s:s + chunk] @ gallery.T  # (q, G)
        tgt = targets[s:s + chunk]
        own = scores.gather(1, tgt[:, None])  # (q, 1)
        ranks.append(((scores >= own).sum(1) - 1).cpu())  # how many others score at least as high
    return torch.cat(ranks).numpy() if ranks else np.zeros(0, dtype=np.int64)


def retrieval_metrics(ranks: np.ndarray, ks=(1, 5, 10)) -> dict[str, float]:
    """Recall@K, MRR and nDCG@10 from 0-based target ranks (one relevant item per query)."""
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        return {}
    out = {f"recall@{k}": float((ranks < k).mean()) for k in ks}
    out["mrr"] = float((1.0 / (ranks + 1)).mean())
    out["ndcg@10"] = float(np.where(ranks < 10, 1.0 / np.log2(ranks + 2), 0.0).mean())
    return out


def chance_recall(gallery_size: int, ks=(1, 5, 10)) -> dict[str, float]:
    """Recall@K of a random ranking with one relevant item among ``gallery_size``: K / size (at most 1)."""
    return {f"chance@{k}": min(1.0, k / max(1, gallery_size)) for k in ks}


def recall_curve(ranks: np.ndarray, max_k: int = 50) -> list[float]:
    """Recall@K for K = 1..max_k (for plots)."""
    ranks = np.asarray(ranks)
    return [float((ranks < k).mean()) for k in range(1, max_k + 1)] if ranks.size else []
