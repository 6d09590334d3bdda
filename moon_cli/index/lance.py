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
    note: str | None = None  # what the build could not do as asked (e.g. no setting reached the target)


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


def scan(table, columns=("id", "vector"), batch_rows: int = 8_192):
    """The stored rows, a record batch at a time (LanceDB's scanner: nothing is held whole)."""
    return table.search().select(list(columns)).limit(None).to_batches(batch_rows)


def _chunks(table):
    """For the streamed recall check: each stored chunk's ids and (B, D) vectors (see index.recall)."""
    from moon_cli.contracts import vectors_to_numpy

    def chunks():
        for batch in scan(table):
            yield batch.column("id").to_pylist(), vectors_to_numpy(batch.column("vector"))
    return chunks


def tune(table, sample_ids: list, sample_vectors: np.ndarray, index_type: str, rows: int,
         target: float = RECALL_TARGET, chunks=None) -> tuple[SearchSettings, float, int]:
    """The cheapest search settings of ``index_type`` whose recall@10 reaches ``target`` (see index.recall); when
    none does, the widest, with its recall. The queries stand in for fresh ones, made from a sample of the stored
    rows; their exact answers come from streamed passes over ``chunks`` (default: the table's).
    Returns (settings, recall, queries measured)."""
    from moon_cli.index.recall import first_reaching_on, streamed_fresh_queries

    candidates = [SearchSettings(index_type, **params) for params in CANDIDATES[index_type]]
    if rows < 2 or len(sample_ids) < 1:
        return candidates[0], 1.0, 0

    def search(settings: SearchSettings, queries: np.ndarray, k: int) -> list[list]:
        return [got.column("id").to_pylist() for got in search_vectors(table, queries, k, settings, columns=["id"])]

    queries = streamed_fresh_queries(sample_vectors, sample_ids, chunks or _chunks(table), rows)
    return first_reaching_on(candidates, search, *queries, target)


def time_single_queries(table, queries: np.ndarray, settings: SearchSettings, n: int = 50,
                        n_exact: int = 5) -> tuple[float, float]:
    """Milliseconds per query, one query per call: (the index with ``settings``, exact search of the table)."""
    picks = queries[: min(n, len(queries))]
    t0 = time.perf_counter()
    for q in picks:
        search_vectors(table, q, 10, settings, columns=["id"])
    t1 = time.perf_counter()
    for q in picks[:n_exact]:
        search_vectors(table, q, 10, settings, columns=["id"], exact=True)
    t2 = time.perf_counter()
    return 1000 * (t1 - t0) / max(1, len(picks)), 1000 * (t2 - t1) / max(1, min(n_exact, len(picks)))


def build_index(source, index_dir: Path, index_type: str = "auto", append: bool = False,
                recall_target: float = RECALL_TARGET) -> IndexReport:
    """Create (or with ``append`` extend) the index from an ``EmbeddingStream`` (index/stream.py), batch by batch.

    The search settings are chosen by measurement: the cheapest that reaches ``recall_target`` (recall@10
    against exact search on a sample of stored vectors), written to the index's metadata for every search.
    ``auto`` searches exactly below 100k rows and builds IVF_FLAT above; when no IVF setting reaches the target,
    the best one is kept and the report says so (``note``): exact search over that many rows is too slow to serve.

    A new index is built in a directory beside ``index_dir`` and swapped in whole (table and label together),
    so a run killed half-way leaves the previous index, correctly labelled, or the new one — never a mix.
    Appending holds the index's lock and adds rows of the same model only.
    """
    from moon_cli.io import atomic_dir, output_lock

    if append:
        with output_lock(index_dir):
            return _build(source, Path(index_dir), index_type, True, recall_target)
    with atomic_dir(index_dir, overwrite=True) as tmp:
        return _build(source, tmp, index_type, False, recall_target)


def _build(source, index_dir: Path, index_type: str, append: bool, recall_target: float) -> IndexReport:
    model = source.model
    started = time.perf_counter()
    dim = int(model["dim"])
    if append:
        info = read_info(index_dir)
        if info["model_id"] != model["model_id"]:
            raise MoonError(f"{index_dir}: holds vectors of model '{info['model_id']}', these are from "
                            f"'{model['model_id']}'; an index never mixes models — build a new one")
        table = open_table(index_dir)
        for ids, vectors in _chunks(table)():  # stored rows are repeats for the new ones, and in the sample
            source.skip_ids(ids)
            source.sample.offer(ids, vectors)
        with source.writing():
            table.add(source.reader())
    else:
        with source.writing():
            table = _connect(index_dir).create_table(TABLE, data=source.reader(), schema=source.schema,
                                                     mode="overwrite")
        if source.kept == 0:
            left_out = f" (left out: {counts(source.dropped)})" if source.dropped else ""
            raise MoonError(f"no ok rows to index{left_out}")
    rows = table.count_rows()
    chosen = _choose(index_type, rows)
    if chosen != "flat" and rows >= 256:  # IVF training needs a few hundred rows
        _build_ann(table, chosen, rows, dim)
    elif chosen != "flat":
        chosen = "flat"
    build_s = time.perf_counter() - started
    sample_ids, sample_vectors = source.sample.ids, source.sample.matrix()
    # the exact answers from the inputs themselves where they can be read again (bounded memory; LanceDB's scanner
    # reads far ahead), from the table after an append (its earlier rows count too) or a stream on stdin
    chunks = source.chunks if (source.replayable() and not append) else None
    source.seen_ids = set()  # the write is done: the ids seen are no longer needed
    settings, recall, sample = tune(table, sample_ids, sample_vectors, chosen, rows, recall_target, chunks=chunks)
    note = None
    if recall < recall_target and chosen != "flat":  # exact search at this size is too slow to serve (docs/search.md)
        note = (f"no {chosen} setting reached recall@10 {recall_target:.2f}; kept the best ({recall:.3f}) — pass "
                f"--index-type flat to search {rows:,} rows exactly anyway")
    ann_ms, exact_ms = time_single_queries(table, sample_vectors, settings)
    info = {**{k: model[k] for k in ("model", "model_id", "dim")}, "rows": rows, "index_type": settings.index_type,
            "search": settings.to_json(), "recall@10": recall, "recall_target": recall_target}
    from moon_cli.io import atomic_file

    with atomic_file(index_dir / INFO) as tmp:
        tmp.write_text(json.dumps(info, indent=2) + "\n")
    return IndexReport(rows, source.kept, settings.index_type, build_s, recall, sample, ann_ms, exact_ms, settings,
                       recall_target, note)


def counts(dropped: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in dropped.items())
