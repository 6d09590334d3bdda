"""A LanceDB vector table with cosine distance, its ANN index, and a recall check against exact search.

INDEX_DIR holds the LanceDB database (table ``items``) and ``moon_index.json``: the model that made the
vectors (an index never mixes models), the dimension, the index type and the last measured recall.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from moon_cli.errors import MoonError

os.environ.setdefault("LANCEDB_LOG", "error")  # LanceDB's Rust logger: warnings about new datasets are noise here

TABLE = "items"
INFO = "moon_index.json"
EXACT_BELOW = 100_000  # auto: exact search is fast enough below this many rows
INDEX_TYPES = ("auto", "flat", "ivf_flat", "ivf_hnsw_sq", "ivf_pq")
RECALL_TARGET = 0.95

# Search settings tried at build time, cheapest first; the first that reaches the recall target is kept.
CANDIDATES = {
    "flat": ({},),
    "ivf_flat": tuple({"nprobes": n} for n in (1, 2, 4, 8, 16, 32, 64)),
    "ivf_hnsw_sq": tuple({"nprobes": n, "ef": ef} for n, ef in ((1, 16), (2, 16), (2, 32), (4, 32), (8, 64),
                                                                 (16, 64), (32, 128))),
    "ivf_pq": tuple({"nprobes": n, "refine_factor": 10} for n in (8, 16, 32, 64, 128)),
}
# What an index built before settings were measured was searched with (its metadata has no "search").
LEGACY = {"ivf_hnsw_sq": {"nprobes": 32, "ef": 64}, "ivf_pq": {"nprobes": 64, "refine_factor": 10}}


@dataclass(frozen=True)
class SearchSettings:
    """How an index is searched; chosen by measurement when the index is built, stored in its metadata."""

    index_type: str = "flat"
    nprobes: int | None = None
    ef: int | None = None
    refine_factor: int | None = None

    @classmethod
    def of(cls, info: dict) -> "SearchSettings":
        stored = info.get("search")
        params = stored if isinstance(stored, dict) else LEGACY.get(info["index_type"], {})
        return cls(info["index_type"], **{k: int(params[k]) for k in ("nprobes", "ef", "refine_factor")
                                          if isinstance(params.get(k), (int, float))})

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None and k != "index_type"}

    def describe(self) -> str:
        params = ", ".join(f"{k} {v}" for k, v in self.to_json().items())
        return self.index_type + (f" ({params})" if params else "")


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
    settings: SearchSettings = field(default_factory=SearchSettings)
    recall_target: float = RECALL_TARGET


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
        raise MoonError(f"{index_dir}: its LanceDB table '{TABLE}' cannot be opened "
                        f"({str(exc).splitlines()[0][:160]}); "
                        f"rebuild the index with `moon index --overwrite`") from None


def _choose(index_type: str, rows: int) -> str:
    if index_type != "auto":
        return index_type
    return "flat" if rows < EXACT_BELOW else "ivf_flat"


def _build_ann(table, index_type: str, rows: int, dim: int) -> None:
    from lancedb.index import IvfFlat, IvfHnswSq, IvfPq

    partitions = max(1, min(1024, int(np.sqrt(rows) / 2)))
    if index_type == "ivf_flat":
        config = IvfFlat(distance_type="cosine", num_partitions=partitions)
    elif index_type == "ivf_hnsw_sq":
        config = IvfHnswSq(distance_type="cosine", num_partitions=partitions)
    else:  # IVF_PQ alone can lose most of recall@10; searches refine with exact distances
        config = IvfPq(distance_type="cosine", num_partitions=partitions, num_sub_vectors=max(1, dim // 8))
    table.create_index("vector", config=config, replace=True)


def search_vectors(table, queries: np.ndarray, k: int, settings: SearchSettings, columns=None,
                   where: str | None = None, exact: bool = False) -> list[pa.Table]:
    """Top-k rows by cosine similarity for each query, in one LanceDB call.

    queries: (D,) or (Q, D) unit vectors. Returns Q Arrow tables (best first) holding ``columns`` (every
    stored column when None) and ``_distance`` (1 - cosine). ``where`` is a LanceDB SQL filter applied before
    the search, so a query still gets k matching rows when there are k.
    """
    q = np.atleast_2d(np.asarray(queries, dtype=np.float32))  # (Q, D)
    builder = table.search(q if len(q) > 1 else q[0]).distance_type("cosine").limit(k)
    if columns is not None:
        builder = builder.select([*columns, "_distance"])
    if where:
        builder = builder.where(where, prefilter=True)
    if exact or settings.index_type == "flat":
        builder = builder.bypass_vector_index()
    else:
        if settings.nprobes:
            builder = builder.nprobes(settings.nprobes)
        if settings.ef:
            builder = builder.ef(max(settings.ef, k))
        if settings.refine_factor:
            builder = builder.refine_factor(settings.refine_factor)
    try:
        result = builder.to_arrow()
    except (ValueError, RuntimeError, OSError) as exc:  # LanceDB: SQL it cannot parse or run
        if where:
            raise bad_where(where, exc) from None
        raise
    if "query_index" not in result.column_names:
        return [result]
    owner = result.column("query_index").to_numpy()
    result = result.drop_columns(["query_index"])
    return [result.take(np.flatnonzero(owner == i)) for i in range(len(q))]


def bad_where(where: str, exc: Exception) -> MoonError:
    """LanceDB's complaint about a filter, as one line naming the filter (the table's columns are id, the
    catalogue's columns and vector; e.g. "array_has(category_path, 'tee')")."""
    detail = str(exc).splitlines()[0].removeprefix("Invalid input, ").removeprefix("lance error: ")
    return MoonError(f"where {where!r}: {detail[:240]}")


def tune(table, vectors: np.ndarray, ids: list[str], index_type: str, target: float = RECALL_TARGET,
         sample: int = 200) -> tuple[SearchSettings, float, int]:
    """The cheapest search settings of ``index_type`` whose recall@10 reaches ``target`` (see index.recall);
    when none does, the widest, with its recall. Returns (settings, recall, queries measured)."""
    from moon_cli.index.recall import first_reaching

    row_of = {x: i for i, x in enumerate(ids)}

    def search(settings: SearchSettings, queries: np.ndarray, k: int) -> list[list[int]]:
        found = search_vectors(table, queries, k, settings, columns=["id"])
        return [[row_of[x] for x in got.column("id").to_pylist()] for got in found]

    candidates = (SearchSettings(index_type, **params) for params in CANDIDATES[index_type])
    return first_reaching(candidates, search, vectors, target, sample)


def time_single_queries(table, vectors: np.ndarray, settings: SearchSettings, n: int = 50) -> tuple[float, float]:
    """Milliseconds per query, one query per call: (the index with ``settings``, exact numpy on ``vectors``)."""
    picks = np.random.default_rng(1).choice(len(vectors), size=min(n, len(vectors)), replace=False)
    t0 = time.perf_counter()
    for i in picks:
        search_vectors(table, vectors[i], 10, settings, columns=["id"])
    t1 = time.perf_counter()
    for i in picks:
        scores = vectors @ vectors[i]  # (N,)
        np.argpartition(-scores, min(9, len(scores) - 1))[:10]
    t2 = time.perf_counter()
    return 1000 * (t1 - t0) / max(1, len(picks)), 1000 * (t2 - t1) / max(1, len(picks))


def build_index(embeddings: pa.Table, index_dir: Path, model: dict, index_type: str = "auto",
                append: bool = False, recall_target: float = RECALL_TARGET) -> IndexReport:
    """Create (or with ``append`` extend) the index from an embeddings table of ok rows.

    The search settings are chosen by measurement: the cheapest that reaches ``recall_target`` (recall@10
    against exact search on a sample of stored vectors), written to the index's metadata for every search.
    ``auto`` searches exactly below 100k rows and builds IVF_FLAT above, falling back to exact search when
    no IVF setting reaches the target.

    A new index is built in a directory beside ``index_dir`` and swapped in whole (table and label together),
    so a run killed half-way leaves the previous index, correctly labelled, or the new one — never a mix.
    Appending holds the index's lock and adds rows of the same model only.
    """
    from moon_cli.io import atomic_dir, output_lock

    if append:
        with output_lock(index_dir):
            return _build(embeddings, Path(index_dir), model, index_type, True, recall_target)
    with atomic_dir(index_dir, overwrite=True) as tmp:
        return _build(embeddings, tmp, model, index_type, False, recall_target)


def _build(embeddings: pa.Table, index_dir: Path, model: dict, index_type: str, append: bool,
           recall_target: float) -> IndexReport:
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
    ids = all_rows.column("id").to_pylist()
    settings, recall, sample = tune(table, vectors, ids, chosen, recall_target)
    if recall < recall_target and index_type == "auto":  # no IVF setting was good enough: search exactly
        settings, recall, sample = tune(table, vectors, ids, "flat", recall_target)
    ann_ms, exact_ms = time_single_queries(table, vectors, settings)
    info = {**{k: model[k] for k in ("model", "model_id", "dim")}, "rows": rows, "index_type": settings.index_type,
            "search": settings.to_json(), "recall@10": recall, "recall_target": recall_target}
    from moon_cli.io import atomic_file

    with atomic_file(index_dir / INFO) as tmp:
        tmp.write_text(json.dumps(info, indent=2) + "\n")
    return IndexReport(rows, added, settings.index_type, build_s, recall, sample, ann_ms, exact_ms, settings,
                       recall_target)
