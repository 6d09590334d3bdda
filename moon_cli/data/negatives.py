"""Sample hard negatives for each positive pair.

Strategies (per pair, K negatives, never a positive of the same query):
- ``same-category``: other products of the positive's leaf category (the paper's hard negatives),
  topped up from the parent category, then at random, when a leaf is small. Query-aware: a same-leaf
  product that matches every attribute the query states — the attribute values its text names, and for a
  photo the visible ones (colour, pattern) — answers the query as well as the positive does, so it is a
  false negative and is not drawn (counted in ``dropped_false_negatives``);
- ``embedding``: the products nearest to the query (or, without a query vector, to the positive) by a
  previous model's embeddings, dropping candidates that score within ``margin`` of the positive
  (likely false negatives);
- ``random``: uniform over the catalogue;
- ``mixed``: half same-category, half embedding (random without embeddings).
Deterministic for a seed. Cross-device and temporal (queue) negatives happen inside training.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from moon_cli.contracts import NEGATIVES, usable_embeddings, vectors_to_numpy
from moon_cli.errors import MoonError

STRATEGIES = ("same-category", "embedding", "random", "mixed")
VISIBLE_ATTRIBUTES = ("color", "pattern")  # what a query photo states about the product it shows


@dataclass
class NegativeStats:
    pairs: int = 0
    skipped_unknown_item: int = 0
    kinds: dict = field(default_factory=lambda: defaultdict(int))
    short: int = 0  # pairs that got fewer than K (tiny catalogues)
    dropped_by_margin: int = 0
    dropped_false_negatives: int = 0  # same-leaf candidates matching every attribute the query states
    embeddings_left_out: dict = field(default_factory=dict)  # embedding rows unfit to score, by reason
    positive_scores: list = field(default_factory=list)
    negative_scores: list = field(default_factory=list)
    seconds: float = 0.0


class CatalogIndex:
    def __init__(self, catalog: pa.Table):
        self.ids = catalog.column("item_id").to_pylist()
        self.row = {item: i for i, item in enumerate(self.ids)}
        paths = catalog.column("category_path").to_pylist()
        self.attrs = [{a["name"]: str(a["value"]).lower() for a in (attrs or []) if a and a.get("value") is not None}
                      for attrs in catalog.column("attributes").to_pylist()]
        self.by_leaf: dict[tuple, list[int]] = defaultdict(list)
        self.by_parent: dict[tuple, list[int]] = defaultdict(list)
        self.leaf_of = []
        for i, path in enumerate(paths):
            path = tuple(path or ())
            self.leaf_of.append(path)
            self.by_leaf[path].append(i)
            self.by_parent[path[:-1]].append(i)
        self.by_leaf = {k: np.array(v) for k, v in self.by_leaf.items()}
        self.by_parent = {k: np.array(v) for k, v in self.by_parent.items()}


def _draw(pool: np.ndarray, k: int, exclude: set[int], rng: np.random.Generator) -> list[int]:
    """Up to k distinct members of ``pool`` not in ``exclude``, in random order."""
    if k <= 0 or len(pool) == 0:
        return []
    take = min(len(pool), k + len(exclude) + 4)
    picked = [int(i) for i in rng.choice(pool, size=take, replace=False) if int(i) not in exclude]
    if len(picked) < k and take < len(pool):  # unlucky draw in a pool much larger than k: take it all
        picked = [int(i) for i in rng.permutation(pool) if int(i) not in exclude]
    return picked[:k]


def stated_attributes(attrs: dict[str, str], query_text: str | None, has_image: bool,
                      visible: tuple[str, ...] = VISIBLE_ATTRIBUTES) -> frozenset:
    """The positive's (name, value) attributes that the query states: values its text names as words, and
    for a photo query the visible attributes."""
    text = (query_text or "").lower()
    stated = {(n, v) for n, v in attrs.items() if v and re.search(rf"(?<!\w){re.escape(v)}(?!\w)", text)}
    if has_image:
        stated |= {(n, attrs[n]) for n in visible if n in attrs}
    return frozenset(stated)


class FalseNegativeFilter:
    """Same-leaf products that match every attribute a query states (cached per leaf and statement)."""

    def __init__(self, idx: CatalogIndex, visible: tuple[str, ...] = VISIBLE_ATTRIBUTES):
        self.idx, self.visible = idx, visible
        self._cache: dict[tuple, set[int]] = {}

    def __call__(self, pos: int, query_text: str | None, has_image: bool) -> set[int]:
        idx = self.idx
        stated = stated_attributes(idx.attrs[pos], query_text, has_image, self.visible)
        key = (idx.leaf_of[pos], stated)
        if key not in self._cache:
            self._cache[key] = {int(i) for i in idx.by_leaf[idx.leaf_of[pos]]
                                if all(idx.attrs[int(i)].get(n) == v for n, v in stated)}
        return self._cache[key]


def _category_negatives(idx: CatalogIndex, pos: int, k: int, exclude: set[int], rng,
                        matching: set[int] = frozenset()) -> list[tuple[int, str]]:
    """Same-leaf negatives (never one in ``matching``: false negatives), topped up from the parent, then at random."""
    leaf = idx.leaf_of[pos]
    out = [(i, "same_leaf") for i in _draw(idx.by_leaf[leaf], k, exclude | matching, rng)]
    if len(out) < k:
        taken = exclude | matching | {i for i, _ in out}
        out += [(i, "same_parent") for i in _draw(idx.by_parent[leaf[:-1]], k - len(out), taken, rng)]
    if len(out) < k:
        taken = exclude | matching | {i for i, _ in out}
        out += [(i, "random") for i in _draw(np.arange(len(idx.ids)), k - len(out), taken, rng)]
    return out


def nearest_candidates(anchors: np.ndarray, gallery: np.ndarray, k: int, chunk_bytes: int = 256 << 20):
    """Top-k (scores, indices) of each anchor row among gallery rows by cosine (rows are unit norm).

    Anchors go in chunks whose (chunk, N) score block stays under ``chunk_bytes``: memory is bounded
    whatever the gallery size.
    """
    import torch

    g = torch.from_numpy(gallery)
    k = min(k, gallery.shape[0])
    chunk = max(1, min(4096, chunk_bytes // (4 * max(1, gallery.shape[0]))))
    scores, indices = [], []
    for start in range(0, anchors.shape[0], chunk):
        s = torch.from_numpy(anchors[start:start + chunk]) @ g.T  # (chunk, N)
        top = s.topk(k, dim=1)
        scores.append(top.values.numpy())
        indices.append(top.indices.numpy())
    if not scores:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    return np.concatenate(scores), np.concatenate(indices)


def _normalise(v: np.ndarray) -> np.ndarray:
    return v / np.clip(np.linalg.norm(v, axis=1, keepdims=True), 1e-12, None)


def sample_negatives(pairs: pa.Table, catalog: pa.Table, per_pair: int = 8, strategy: str = "same-category",
                     seed: int = 0, embeddings: pa.Table | None = None, margin: float = 0.05,
                     source: str = "embeddings", query_aware: bool = True) -> tuple[pa.Table, NegativeStats]:
    if strategy not in STRATEGIES:
        raise MoonError(f"unknown strategy '{strategy}'; choose from {', '.join(STRATEGIES)}")
    if strategy == "embedding" and embeddings is None:
        raise MoonError("--strategy embedding needs --embeddings (the output of `moon embed` on the catalogue)")
    t0 = time.perf_counter()
    stats = NegativeStats()
    idx = CatalogIndex(catalog)
    rng = np.random.default_rng(seed)

    pair_ids = pairs.column("pair_id").to_pylist()
    items = pairs.column("item_id").to_pylist()
    queries = list(zip(pairs.column("query_text").to_pylist(), pairs.column("query_image").to_pylist()))
    positives_of_query: dict[tuple, set[int]] = defaultdict(set)
    for q, item in zip(queries, items):
        if item in idx.row:
            positives_of_query[q].add(idx.row[item])

    use_embedding = strategy == "embedding" or (strategy == "mixed" and embeddings is not None)
    near = None
    if use_embedding:
        near = _embedding_neighbours(embeddings, idx, pair_ids, items, queries, positives_of_query, per_pair, margin,
                                     stats, source)

    false_negatives = FalseNegativeFilter(idx)
    out_ids, out_negs = [], []
    for n, (pid, item, q) in enumerate(zip(pair_ids, items, queries)):
        pos = idx.row.get(item)
        if pos is None:
            stats.skipped_unknown_item += 1
            continue
        exclude = positives_of_query[q]
        matching: set[int] = set()
        if query_aware and strategy in ("same-category", "mixed"):
            matching = false_negatives(pos, q[0], q[1] is not None) - exclude - {pos}
            stats.dropped_false_negatives += len(matching)
        if strategy == "same-category":
            negs = [(i, kind, None) for i, kind in _category_negatives(idx, pos, per_pair, exclude, rng, matching)]
        elif strategy == "random":
            negs = [(i, "random", None) for i in _draw(np.arange(len(idx.ids)), per_pair, exclude, rng)]
        elif strategy == "embedding":
            negs = near[n][:per_pair]
        else:  # mixed
            half = per_pair // 2
            negs = [(i, kind, None) for i, kind in _category_negatives(idx, pos, half, exclude, rng, matching)]
            taken = exclude | matching | {i for i, _, _ in negs}
            if near is not None:
                negs += [c for c in near[n] if c[0] not in taken][: per_pair - len(negs)]
            else:
                negs += [(i, "random", None) for i in _draw(np.arange(len(idx.ids)), per_pair - len(negs), taken, rng)]
        if len(negs) < per_pair:
            stats.short += 1
        for _, kind, _ in negs:
            stats.kinds[kind] += 1
        out_ids.append(pid)
        out_negs.append([{"item_id": idx.ids[i], "kind": kind, "score": score} for i, kind, score in negs])
    stats.pairs = len(out_ids)
    stats.seconds = time.perf_counter() - t0
    table = pa.table({"pair_id": pa.array(out_ids, pa.string()),
                      "negatives": pa.array(out_negs, NEGATIVES.field("negatives").type)})
    return table, stats


def _embedding_neighbours(embeddings, idx, pair_ids, items, queries, positives_of_query, k, margin, stats, source):
    """Per pair: nearest non-positive products, scored, with near-positives dropped by the margin."""
    if "status" in embeddings.column_names:  # rows `moon embed` could not embed carry no vector
        embeddings = embeddings.filter(pa.compute.equal(embeddings.column("status"), "ok"))
    embeddings, stats.embeddings_left_out, _ = usable_embeddings(embeddings)  # no NaN / Inf / null ever scores
    emb_ids = embeddings.column("id").to_pylist()
    vectors = _normalise(vectors_to_numpy(embeddings.column("vector"), source))
    row_of = {i: r for r, i in enumerate(emb_ids)}
    gallery_rows = [row_of.get(item) for item in idx.ids]
    missing = sum(r is None for r in gallery_rows)
    if missing == len(idx.ids):
        raise MoonError(f"{source}: no embedding id matches a catalogue item_id; embed the catalogue with `moon embed`")
    have = np.array([r is not None for r in gallery_rows])
    gallery_index = np.nonzero(have)[0]  # catalogue rows that have a vector
    gallery = vectors[[gallery_rows[i] for i in gallery_index]]  # (N, D)

    # anchor: the query's own vector when the embeddings hold one (id == pair_id), else the positive's
    anchors, anchor_of_pair, slot_of_row = [], [], {}
    for pid, item in zip(pair_ids, items):
        r = row_of.get(pid, row_of.get(item))
        if r is not None and r not in slot_of_row:  # pairs sharing a positive share its neighbours
            slot_of_row[r] = len(anchors)
            anchors.append(r)
        anchor_of_pair.append(slot_of_row.get(r) if r is not None else None)
    widest = max((len(s) for s in positives_of_query.values()), default=0)
    scores, cand = nearest_candidates(vectors[anchors], gallery, k + widest + 16)

    result = []
    for n, (item, q) in enumerate(zip(items, queries)):
        a = anchor_of_pair[n]
        pos = idx.row.get(item)
        if a is None or pos is None or gallery_rows[pos] is None:
            result.append([])
            continue
        pos_score = float(vectors[anchors[a]] @ vectors[gallery_rows[pos]])
        stats.positive_scores.append(pos_score)
        exclude = positives_of_query[q]
        chosen = []
        for s, c in zip(scores[a], cand[a]):
            i = int(gallery_index[c])
            if i in exclude:
                continue
            if s > pos_score - margin:  # as close as the positive: likely a false negative
                stats.dropped_by_margin += 1
                continue
            chosen.append((i, "embedding", float(s)))
            stats.negative_scores.append(float(s))
            if len(chosen) == k:
                break
        result.append(chosen)
    return result


def score_table(stats: NegativeStats) -> str:
    """Positive vs negative cosine scores (quantiles), for the stage's summary."""
    if not stats.positive_scores:
        return ""
    rows = ["            mean    p10    p50    p90"]
    for name, values in (("positive", stats.positive_scores), ("negative", stats.negative_scores)):
        v = np.asarray(values) if values else np.zeros(1)
        rows.append(f"  {name:<9} {v.mean():6.3f} {np.quantile(v, .1):6.3f} {np.quantile(v, .5):6.3f} "
                    f"{np.quantile(v, .9):6.3f}")
    return "\n".join(rows)
