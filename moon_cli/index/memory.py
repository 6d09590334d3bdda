"""An in-memory FAISS copy of an index's vectors, for latency-critical serving.

LanceDB stays the stored artifact (and answers ``where`` filters); this copy only answers "which rows are
nearest". Exact inner product below FLAT_BELOW rows, IVF_FLAT above with the smallest ``nprobe`` whose
recall@10 reaches the target, measured by the same check as ``moon index`` (index.recall). FAISS is an
optional extra (``pip install 'moon-cli[faiss]'``).
"""

from __future__ import annotations

import numpy as np

from moon_cli.errors import MoonError

FLAT_BELOW = 20_000  # exact inner product is a fraction of a millisecond below this many rows
EXACT_SUBSET_BELOW = 50_000  # a filtered search over fewer rows than this is exact numpy over the subset
NPROBES = (1, 2, 4, 8, 16, 32, 64)


def require_faiss():
    try:
        import faiss
    except ImportError:
        raise MoonError("the in-memory index needs FAISS: pip install 'moon-cli[faiss]' "
                        "(or serve without --memory)") from None
    return faiss


def memory_bytes(rows: int, dim: int) -> int:
    """What the copy holds: FAISS's vectors plus our own for exact subset search, and ids (estimate)."""
    return rows * (2 * dim * 4 + 64)


class MemoryIndex:
    """Vectors (N, D) in RAM; ``search`` returns row numbers into them."""

    def __init__(self, vectors: np.ndarray, target: float = 0.95):
        faiss = require_faiss()
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # (N, D) unit rows
        n, dim = self.vectors.shape
        if n < FLAT_BELOW:
            self.index, self.kind, self.nprobe, self.recall = faiss.IndexFlatIP(dim), "flat", None, 1.0
            self._params = None
            self.index.add(self.vectors)
            return
        from moon_cli.index.recall import first_reaching

        nlist = max(1, int(np.sqrt(n)))
        quantizer = faiss.IndexFlatIP(dim)
        self.index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        train = self.vectors[np.random.default_rng(0).choice(n, size=min(n, 64 * nlist), replace=False)]
        self.index.train(train)
        self.index.add(self.vectors)
        self.kind = "ivf_flat"

        def search(nprobe: int, queries: np.ndarray, k: int) -> list[list[int]]:
            _, rows = self.index.search(queries, k, params=faiss.SearchParametersIVF(nprobe=nprobe))
            return [[int(r) for r in row if r >= 0] for row in rows]

        self.nprobe, self.recall, _ = first_reaching(NPROBES, search, self.vectors, target)
        self._params = faiss.SearchParametersIVF(nprobe=self.nprobe)

    def describe(self) -> str:
        return f"FAISS {self.kind}" + (f" (nprobe {self.nprobe}, recall@10 {self.recall:.3f})" if self.nprobe else "")

    def search(self, queries: np.ndarray, k: int, subset: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """queries (Q, D) → (scores (Q, k), rows (Q, k)); -1 rows pad when fewer than k rows qualify.
        ``subset``: the only rows allowed (a ``where`` filter's answer)."""
        faiss = require_faiss()
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if subset is not None and len(subset) < EXACT_SUBSET_BELOW:
            return _exact(self.vectors, queries, k, subset)
        params = None
        if subset is not None:
            selector = faiss.IDSelectorBatch(np.asarray(subset, dtype=np.int64))
            if self.nprobe:  # a filter keeps a fraction of each list: probe correspondingly more lists
                wider = min(self.index.nlist, self.nprobe * -(-len(self.vectors) // max(1, len(subset))))
                params = faiss.SearchParametersIVF(sel=selector, nprobe=wider)
            else:
                params = faiss.SearchParameters(sel=selector)
        else:
            params = self._params
        scores, rows = self.index.search(queries, k, params=params)
        return scores, rows


def _exact(vectors: np.ndarray, queries: np.ndarray, k: int, subset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = queries @ vectors[subset].T  # (Q, S)
    take = min(k, scores.shape[1])
    out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    out_rows = np.full((len(queries), k), -1, dtype=np.int64)
    if take:
        top = np.argpartition(-scores, take - 1, axis=1)[:, :take]  # (Q, take) unordered
        order = np.take_along_axis(-scores, top, axis=1).argsort(axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        out_scores[:, :take] = np.take_along_axis(scores, top, axis=1)
        out_rows[:, :take] = subset[top]
    return out_scores, out_rows
