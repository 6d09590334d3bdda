"""An index opened once for many queries — what `moon search --queries` and `moon serve` use.

Two paths give the same answers: LanceDB (the stored artifact, with the settings `moon index` measured) and
an in-memory FAISS copy of the vectors for latency-critical serving. ``where`` filters are LanceDB SQL on
both: the in-memory path asks LanceDB which rows match, then searches only those.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa

from moon_cli.errors import MoonError, warn
from moon_cli.index.lance import SearchSettings, bad_where, open_table, read_info, search_vectors

MEMORY_LIMIT = int(float(os.environ.get("MOON_MEMORY_LIMIT_GB", "4")) * 2**30)


class Searcher:
    """``memory``: "off" (LanceDB), "on" (FAISS in RAM; an error when it cannot), "auto" (FAISS when it is
    installed and the copy fits ``memory_limit`` bytes, else LanceDB, said in one line)."""

    def __init__(self, index_dir: Path, memory: str = "off", memory_limit: int = MEMORY_LIMIT,
                 recall_target: float | None = None):
        self.index_dir = Path(index_dir)
        self.info = read_info(self.index_dir)
        self.table = open_table(self.index_dir)
        self.settings = SearchSettings.of(self.info)
        self.dim = int(self.info["dim"])
        self.columns = [c for c in self.table.schema.names if c != "vector"]
        self.rows = self.table.count_rows()
        self.memory = None
        if memory != "off":
            self._load_memory(memory == "on", memory_limit,
                              recall_target or float(self.info.get("recall_target", 0.95)))
        self._matching = lru_cache(maxsize=64)(self._rows_matching)

    def _load_memory(self, required: bool, limit: int, target: float) -> None:
        from moon_cli.index.memory import MemoryIndex, memory_bytes, require_faiss

        need = memory_bytes(self.rows, self.dim)
        try:
            require_faiss()
            if need > limit:
                raise MoonError(f"{self.index_dir}: an in-memory copy of {self.rows:,} × {self.dim} vectors needs "
                                f"~{need / 2**30:.1f} GiB, over the {limit / 2**30:.1f} GiB limit "
                                f"(MOON_MEMORY_LIMIT_GB)")
        except MoonError as exc:
            if required:
                raise
            warn(f"{exc}; searching through LanceDB")
            return
        from moon_cli.contracts import vectors_to_numpy

        stored = self.table.to_arrow()
        self.ids = stored.column("id").to_pylist()  # row-aligned with the vectors, as is meta
        self.meta = stored.drop_columns(["vector", "id"])
        self.row_of = {x: i for i, x in enumerate(self.ids)}
        self.memory = MemoryIndex(vectors_to_numpy(stored.column("vector")), target)

    def describe(self) -> str:
        return self.memory.describe() if self.memory else f"LanceDB {self.settings.describe()}"

    # ------------------------------------------------------------------------------------------ search
    def search(self, queries: np.ndarray, k: int, where: str | None = None,
               columns: list[str] | None = None) -> list[list[dict]]:
        """queries (Q, D) or (D,) unit vectors → for each, up to k hits {id, score, ...``columns``} (every
        stored column when None; [] for id and score alone, the fastest)."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))[:, : self.dim]  # (Q, D)
        columns = [c for c in (self.columns if columns is None else columns) if c != "id"]
        if self.memory is None:
            found = search_vectors(self.table, queries, k, self.settings, columns=["id", *columns], where=where)
            return [[_hit(row) for row in table.to_pylist()] for table in found]
        subset = self._matching(where) if where else None
        if subset is not None and len(subset) == 0:
            return [[] for _ in queries]
        scores, rows = self.memory.search(queries, k, subset)  # (Q, k) each; row -1 pads
        keep = rows >= 0
        flat_rows, flat_scores = rows[keep].tolist(), scores[keep].tolist()
        extra = (self.meta.select([c for c in columns if c in self.meta.column_names])
                 .take(pa.array(flat_rows)).to_pylist() if columns else [{}] * len(flat_rows))  # one take per batch
        hits = [{"id": self.ids[r], "score": round(s, 6), **m} for r, s, m in zip(flat_rows, flat_scores, extra)]
        out, at = [], 0
        for n in keep.sum(axis=1).tolist():
            out.append(hits[at:at + n])
            at += n
        return out

    def _rows_matching(self, where: str) -> np.ndarray:
        ids = self._where(where, ["id"]).column("id").to_pylist()
        return np.array(sorted(self.row_of[x] for x in ids), dtype=np.int64)

    def _where(self, where: str, columns: list[str]) -> pa.Table:
        try:
            return self.table.search().where(where).select(columns).limit(None).to_arrow()
        except (ValueError, RuntimeError, OSError) as exc:  # LanceDB: SQL it cannot parse or run
            raise bad_where(where, exc) from None

    # ------------------------------------------------------------------------------------------ items
    def items(self, ids: list[str], with_vectors: bool = False) -> dict[str, dict]:
        """Stored rows by id (the vector too when asked); unknown ids are absent from the answer."""
        if not ids:
            return {}
        quoted = ", ".join("'" + str(x).replace("'", "''") + "'" for x in ids)
        rows = self._where(f"id IN ({quoted})", self.columns + (["vector"] if with_vectors else [])).to_pylist()
        return {r["id"]: r for r in rows}

    def vector_of(self, item_id: str) -> np.ndarray | None:
        row = self.items([item_id], with_vectors=True).get(item_id)
        return None if row is None else np.asarray(row["vector"], dtype=np.float32)

    def facets(self, limit: int = 50) -> dict:
        """Values to filter on, read from the index: leaf categories and attribute key → values (most common
        first, at most ``limit`` each)."""
        columns = [c for c in ("category_path", "attributes") if c in self.columns]
        if not columns:
            return {"categories": [], "attributes": {}}
        import polars as pl

        df = pl.from_arrow(self.table.to_arrow().select(columns))
        out: dict = {"categories": [], "attributes": {}}
        if "category_path" in columns:
            leaves = df.select(pl.col("category_path").list.last().alias("leaf")).drop_nulls()
            out["categories"] = leaves["leaf"].value_counts(sort=True)["leaf"].head(limit).to_list()
        if "attributes" in columns:
            attrs = df.select(pl.col("attributes").explode()).drop_nulls().unnest("attributes")
            for name in attrs["name"].value_counts(sort=True)["name"].to_list():
                values = attrs.filter(pl.col("name") == name)["value"].value_counts(sort=True)["value"]
                out["attributes"][name] = values.head(limit).to_list()
        return out


def _hit(row: dict) -> dict:
    distance = row.pop("_distance")
    return {"id": row.pop("id"), "score": round(1.0 - float(distance), 6), **row}
