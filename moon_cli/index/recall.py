"""Recall@k of an approximate search against exact search, and the cheapest setting that reaches a target.

One check for every search path (LanceDB's index, the in-memory FAISS copy): query with a sample of stored
vectors, each vector's own row left out of both the truth and the answer (finding a query's own row is free
for every index and would flatter recall).
"""

from __future__ import annotations

from typing import Callable, Iterable, TypeVar

import numpy as np

Setting = TypeVar("Setting")
# search(setting, queries (m, D), k) -> for each query the row numbers it found, best first
RowSearch = Callable[[Setting, np.ndarray, int], list[list[int]]]


def sample_truth(vectors: np.ndarray, sample: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """(picked rows (m,), their exact top-k neighbours without themselves (m, k), k)."""
    n = len(vectors)
    k = min(10, n - 1)
    picks = np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False)
    truth = []
    for start in range(0, len(picks), 256):
        chunk = picks[start:start + 256]
        scores = vectors[chunk] @ vectors.T  # (m, N) cosine: rows are unit vectors
        scores[np.arange(len(chunk)), chunk] = -np.inf
        truth.append(np.argpartition(-scores, k - 1, axis=1)[:, :k])
    return picks, np.concatenate(truth) if truth else np.zeros((0, k), int), k


def recall_of(found: list[list[int]], picks: np.ndarray, truth: np.ndarray, k: int) -> float:
    hits = sum(len(set([r for r in rows if r != own][:k]) & set(expected.tolist()))
               for rows, own, expected in zip(found, picks.tolist(), truth))
    return hits / max(1, len(picks) * k)


def first_reaching(candidates: Iterable[Setting], search: RowSearch, vectors: np.ndarray, target: float,
                   sample: int = 200) -> tuple[Setting, float, int]:
    """The first candidate (cheapest first) whose recall@10 reaches ``target``; else the last one tried.

    Returns (setting, its recall, queries measured)."""
    candidates = list(candidates)
    if len(vectors) < 2:
        return candidates[0], 1.0, 0
    picks, truth, k = sample_truth(vectors, sample)
    for setting in candidates:
        recall = recall_of(search(setting, vectors[picks], k + 1), picks, truth, k)
        if recall >= target:
            break
    return setting, recall, len(picks)
