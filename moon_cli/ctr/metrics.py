"""AUC and GAUC (impression-weighted mean of per-user AUC), ties counted half, as CTR work reports them."""

from __future__ import annotations

import numpy as np


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` with ties given the mean of the ranks they span."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.r_[0, np.flatnonzero(np.diff(xs)) + 1]  # first index of each run of equal values
    ends = np.r_[starts[1:], len(xs)]
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Probability that a random positive outscores a random negative (None without both classes)."""
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = average_ranks(np.asarray(scores, dtype=np.float64))
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def gauc(groups: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Per-group AUC weighted by the group's impressions, over groups that hold both classes."""
    groups, labels, scores = np.asarray(groups), np.asarray(labels), np.asarray(scores)
    order = np.argsort(groups, kind="mergesort")
    g, y, s = groups[order], labels[order], scores[order]
    bounds = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1, len(g)]
    total = weight = 0.0
    for a, b in zip(bounds[:-1], bounds[1:]):
        value = auc(y[a:b], s[a:b])
        if value is not None:
            total += value * (b - a)
            weight += b - a
    return total / weight if weight else None
