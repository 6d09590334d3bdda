"""A LanceDB vector table with cosine distance, its ANN index, and a recall check against exact search.

INDEX_DIR holds the LanceDB database (table ``items``) and ``moon_index.json``: the model that made the
vectors (an index never mixes models), the dimension, the index type and the last measured recall.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from moon_cli.errors import MoonError

os.environ.setdefault("LANCEDB_LOG", "error")  # LanceDB's Rust logger: warnings about new datasets are noise here

TABLE = "items"
INFO = "moon_index.json"
EXACT_BELOW = 100_000  # auto: exact search is fast enough below this many rows
INDEX_TYPES = ("auto", "flat", "ivf_hnsw_sq", "ivf_pq")


@dataclass
class IndexReport:
    rows: int
    added: int
    index_type: str
    build_seconds: float
    recall_at_10: float
    sample: int
    ann_ms: float
    exact_ms: float


def read_info(index_dir: Path) -> dict:
    path = Path(index_dir) / INFO
    if not path.is_file():
        raise MoonError(f"{index_dir}: not a moon index (no {INFO}); build one with `moon index`")
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MoonError(f"{path}: not readable JSON ({exc}); rebuild the index with `moon index --overwrite`") from None
    missing = [k for k in ("model_id", "dim", "index_type") if not isinstance(info, dict) or k not in info]
    if missing:
        raise MoonError(f"{path}: missing {', '.join(missing)}; rebuild the index with `moon index --overwrite`")
    return info


def _connect(index_dir: Path):
    import lancedb

    return lancedb.connect(str(index_dir))


def open_table(index_dir: Path):
    read_info(index_dir)
    try:
        return _connect(index_dir).open_table(TABLE)
    except (ValueError, OSError, RuntimeError) as exc:  # LanceDB: a missing or damaged table
        raise MoonError(f"{index_dir}: its LanceDB table '{TABLE}' cannot be opened ({str(exc).splitlines()[0][:160]}); "
                        f"rebuild the index with `moon index --overwrite`") from None


def _choose(index_type: str, rows: int) -> str:
    if index_type != "auto":
        return index_type
    return "flat" if rows < EXACT_BELOW else "ivf_hnsw_sq"


def _build_ann(table, index_type: str, rows: int, dim: int) -> None:
    from lancedb.index import IvfHnswSq, IvfPq

    partitions = max(1, min(1024, int(np.sqrt(rows) / 2)))
    if index_type == "ivf_hnsw_sq":
        config = IvfHnswSq(distance_type="cosine", num_partitions=partitions)
    else:  # IVF_PQ alone can lose most of recall@10; searches refine with exact distances (see search())
        config = IvfPq(distance_type="cosine", num_partitions=partitions, num_sub_vectors=max(1, dim // 8))
    table.create_index("vector", config=config, replace=True)


def search_vectors(table, vector: np.ndarray, k: int, index_type: str, exact: bool = False):
    """Top-k rows by cosine similarity (an Arrow table with ``_distance``)."""
    q = table.search(vector.astype(np.float32)).distance_type("cosine").limit(k)
    if exact:
        return q.bypass_vector_index().to_arrow()
    if index_type == "ivf_pq":
        q = q.nprobes(64).refine_factor(10)
    elif index_type == "ivf_hnsw_sq":
        q = q.nprobes(32).ef(max(64, 4 * k))
    return q.to_arrow()


def measure_recall(table, vectors: np.ndarray, ids: list[str], index_type: str, sample: int = 200,
                   seed: int = 0) -> tuple[float, int, float, float]:
    """Recall@10 of the index against exact numpy search, queried with a sample of the stored vectors."""
    n = len(ids)
    if n == 0:
        return 1.0, 0, 0.0, 0.0
    rng = np.random.default_rng(seed)
    picks = rng.choice(n, size=min(sample, n), replace=False)
    k = min(10, n)
    hits, ann_t, exact_t = 0, 0.0, 0.0
    for i in picks:
        t0 = time.perf_counter()
        scores = vectors @ vectors[i]  # (N,)
        top = np.argpartition(-scores, k - 1)[:k]
        exact_ids = {ids[j] for j in top}
        t1 = time.perf_counter()
        got = search_vectors(table, vectors[i], k, index_type).column("id").to_pylist()
        t2 = time.perf_counter()
        hits += len(exact_ids & set(got))
        exact_t, ann_t = exact_t + (t1 - t0), ann_t + (t2 - t1)
    m = len(picks)
    return hits / (m * k), m, 1000 * ann_t / m, 1000 * exact_t / m


def build_index(embeddings: pa.Table, index_dir: Path, model: dict, index_type: str = "auto",
                append: bool = False) -> IndexReport:
    """Create (or with ``append`` extend) the index from an embeddings table of ok rows.

    A new index is built in a directory beside ``index_dir`` and swapped in whole (table and label together),
    so a run killed half-way leaves the previous index, correctly labelled, or the new one — never a mix.
    Appending holds the index's lock and adds rows of the same model only.
    """
    from moon_cli.io import atomic_dir, output_lock

    if append:
        with output_lock(index_dir):
            return _build(embeddings, Path(index_dir), model, index_type, append=True)
    with atomic_dir(index_dir, overwrite=True) as tmp:
        return _build(embeddings, tmp, model, index_type, append=False)


def _build(embeddings: pa.Table, index_dir: Path, model: dict, index_type: str, append: bool) -> IndexReport:
    from moon_cli.contracts import vectors_to_numpy

    started = time.perf_counter()
    dim = int(model["dim"])
    if append:
        info = read_info(index_dir)
        if info["model_id"] != model["model_id"]:
            raise MoonError(f"{index_dir}: holds vectors of model '{info['model_id']}', these are from "
                            f"'{model['model_id']}'; an index never mixes models — build a new one")
        table = open_table(index_dir)
        new = embeddings.filter(pa.compute.invert(pa.compute.is_in(
            embeddings.column("id"), value_set=table.to_arrow().column("id"))))
        if new.num_rows:
            table.add(new.cast(table.schema))
        added = new.num_rows
    else:
        table = _connect(index_dir).create_table(TABLE, embeddings, mode="overwrite")
        added = embeddings.num_rows
    all_rows = table.to_arrow().select(["id", "vector"])
    rows = all_rows.num_rows
    chosen = _choose(index_type, rows)
    if chosen != "flat" and rows >= 256:  # IVF training needs a few hundred rows
        _build_ann(table, chosen, rows, dim)
    elif chosen != "flat":
        chosen = "flat"
    build_s = time.perf_counter() - started
    vectors = vectors_to_numpy(all_rows.column("vector"))
    recall, sample, ann_ms, exact_ms = measure_recall(table, vectors, all_rows.column("id").to_pylist(), chosen)
    info = {**{k: model[k] for k in ("model", "model_id", "dim")}, "rows": rows, "index_type": chosen,
            "recall@10": recall}
    from moon_cli.io import atomic_file

    with atomic_file(index_dir / INFO) as tmp:
        tmp.write_text(json.dumps(info, indent=2) + "\n")
    return IndexReport(rows, added, chosen, build_s, recall, sample, ann_ms, exact_ms)
