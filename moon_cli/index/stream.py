"""Embeddings read for `moon index` in record batches: one file, many shard files, a glob, or ``-``.

Every source's manifest is checked before a row is read (one model, one width: an index never mixes them);
then each batch is cleaned as it passes — rows that are not ``ok``, null / NaN / Inf / zero vectors and repeats
of an id already seen are left out and counted — and a reservoir keeps a seeded sample of the rows for the
recall check. Memory follows the batch size, not the row count (the ids seen so far excepted).
"""

from __future__ import annotations

import contextlib
import glob
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from moon_cli.errors import MoonError

BATCH_ROWS = 8_192  # 12 MB of 384-wide vectors: the cleaning copies stay small


@dataclass
class Sample:
    """A seeded uniform sample of the rows that were kept (reservoir sampling, Algorithm R)."""
    size: int = 200
    seed: int = 0
    ids: list = field(default_factory=list)
    vectors: list = field(default_factory=list)
    seen: int = 0

    def __post_init__(self):
        self.rng = np.random.default_rng(self.seed)

    def offer(self, ids: list, vectors: np.ndarray) -> None:
        """A batch of rows (ids, (B, D)): one draw per row, all at once; only the few kept are touched in Python."""
        fill = min(len(ids), max(0, self.size - len(self.ids)))
        self.ids += list(ids[:fill])
        self.vectors += [v.copy() for v in vectors[:fill]]
        rest = len(ids) - fill
        if rest > 0:
            seen = self.seen + fill + np.arange(rest)  # (rest,) rows seen before each
            slots = self.rng.integers(0, seen + 1)  # row i replaces slot j when j < size
            for i in np.flatnonzero(slots < self.size):
                self.ids[slots[i]], self.vectors[slots[i]] = ids[fill + i], vectors[fill + i].copy()
        self.seen += len(ids)

    def matrix(self) -> np.ndarray:  # (m, D)
        return np.stack(self.vectors) if self.vectors else np.zeros((0, 0), np.float32)


def expand(paths: list[str]) -> list[str]:
    """The inputs, globs expanded (sorted); a pattern that matches nothing is an error naming it."""
    out = []
    for p in paths:
        if p != "-" and not Path(p).exists() and glob.has_magic(p):
            found = sorted(glob.glob(p))
            if not found:
                raise MoonError(f"{p}: no file matches this pattern")
            out += found
        else:
            out.append(p)
    return out


class EmbeddingStream:
    """The rows to index, as cleaned record batches of one schema (``schema``), plus what was left out.

    ``readers``: (source, schema, batches(n)) per input; ``model``: their shared identity (manifest params)."""

    def __init__(self, readers: list, model: dict, batch_rows: int = BATCH_ROWS, sample: int = 200):
        self.readers, self.model, self.batch_rows = readers, model, batch_rows
        self.dim = int(model["dim"])
        self.schema = _target_schema([schema for _, schema, _ in readers], self.dim)
        self.dropped: dict[str, int] = {}
        self.first_bad: str | None = None
        self.rows_in = 0
        self.kept = 0
        self.sample = Sample(sample)
        self.seen_ids: set = set()
        self.error: MoonError | None = None

    @classmethod
    def open(cls, paths: list[str], batch_rows: int = BATCH_ROWS) -> "EmbeddingStream":
        """Embeddings files (globs expanded) or ``-``; every manifest is checked before a row is read."""
        readers = [_open(p) for p in expand(paths)]
        return cls(readers, _one_model(readers), batch_rows)

    @classmethod
    def of_table(cls, table: pa.Table, model: dict, batch_rows: int = BATCH_ROWS) -> "EmbeddingStream":
        """An in-memory embeddings table (benchmarks, tests) read the same way."""
        return cls([("<table>", table.schema, lambda n: iter(table.to_batches(n)))], model, batch_rows)

    def skip_ids(self, ids) -> None:
        """Ids already in the index (``--append``): their rows are left out as repeats."""
        self.seen_ids.update(ids)

    def batches(self) -> Iterator[pa.RecordBatch]:
        try:
            for source, _, batches in self.readers:
                row0 = 0  # the input's rows before this batch: errors name the row of that file
                for batch in batches(self.batch_rows):
                    cleaned = self._clean(pa.Table.from_batches([batch]), source, row0)
                    row0 += batch.num_rows
                    if cleaned.num_rows:
                        yield from cleaned.to_batches()
        except MoonError as exc:  # the writer (LanceDB) sees it as its own error: it is kept to be raised as it is
            self.error = exc
            raise

    @contextlib.contextmanager
    def writing(self):
        """Around the write that consumes ``reader()``: a bad row's one-line error comes out as itself, not wrapped
        in the writer's (which aborts its write: nothing of a failed read is committed)."""
        try:
            yield
        except Exception:
            if self.error is not None:
                raise self.error from None
            raise

    def replayable(self) -> bool:
        """Whether the inputs can be read again (files can; a stream on stdin cannot)."""
        return all(source != "<stdin>" for source, _, _ in self.readers)

    def chunks(self):
        """Another pass over the rows kept, for the recall check: a fresh cleaning pass over the inputs gives the
        same rows, none held. Yields (ids, (B, D) vectors)."""
        from moon_cli.contracts import vectors_to_numpy

        twin = EmbeddingStream(self.readers, self.model, self.batch_rows, sample=0)
        for batch in twin.batches():
            yield batch.column("id").to_pylist(), vectors_to_numpy(batch.column("vector"))

    def reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(self.schema, self.batches())

    def _clean(self, table: pa.Table, source: str, row0: int) -> pa.Table:
        from moon_cli.contracts import EMBEDDINGS, conform, standardize, usable_embeddings

        self.rows_in += table.num_rows
        table = conform(standardize(table), EMBEDDINGS, source)
        if "status" in table.column_names:
            ok = pa.compute.equal(table.column("status"), "ok")
            check_width(table, self.dim, source, row0, ok)
            table = table.filter(ok)
        else:
            check_width(table, self.dim, source, row0)
        table = table.drop_columns([c for c in ("status", "error") if c in table.column_names])
        table = table.set_column(table.schema.get_field_index("vector"), self.schema.field("vector"),
                                 table.column("vector").cast(self.schema.field("vector").type))
        table, dropped, first_bad = usable_embeddings(table, self.seen_ids)
        for reason, n in dropped.items():
            self.dropped[reason] = self.dropped.get(reason, 0) + n
        self.first_bad = self.first_bad or first_bad
        self.kept += table.num_rows
        if table.num_rows and self.sample.size:
            from moon_cli.contracts import vectors_to_numpy

            self.sample.offer(table.column("id").to_pylist(), vectors_to_numpy(table.column("vector"), source))
        return _fit(table, self.schema)


def _one_model(readers: list) -> dict:
    """The model identity every input's manifest names; inputs of two models or widths are refused, naming both."""
    from moon_cli.io import read_manifest

    first = None
    for source, schema, _ in readers:
        params = read_manifest(schema, source).get("params", {})
        if "model_id" not in params or "dim" not in params:
            raise MoonError(f"{source}: no model identity in its metadata; embed it with `moon embed`")
        if first is None:
            first = (source, params)
        elif (params["model_id"], int(params["dim"])) != (first[1]["model_id"], int(first[1]["dim"])):
            raise MoonError(f"{source}: embedded by '{params['model_id']}' (dim {params['dim']}) but {first[0]} by "
                            f"'{first[1]['model_id']}' (dim {first[1]['dim']}); an index never mixes models")
    return first[1]


def _open(path: str):
    """(source, schema, batches(n)) of one input; its schema (and manifest) is read before any row."""
    import pyarrow.parquet as pq

    if path == "-":
        try:
            stream = pa.ipc.open_stream(sys.stdin.buffer)
        except (pa.ArrowInvalid, OSError) as exc:
            raise MoonError(f"<stdin>: not an Arrow IPC stream ({exc}); pipe `moon embed ... -o -` into it") from None
        return "<stdin>", stream.schema, lambda n: iter(stream)
    from moon_cli.io import parquet_file

    p = parquet_file(path)
    try:
        file = pq.ParquetFile(p, buffer_size=1 << 20, pre_buffer=False)  # pages streamed: a row group is not held
    except (pa.ArrowInvalid, OSError) as exc:
        raise MoonError(f"{path}: not a readable Parquet file ({exc})") from None

    def batches(n: int):
        try:
            yield from file.iter_batches(batch_size=n)
        except (pa.ArrowInvalid, OSError) as exc:
            raise MoonError(f"{path}: not a readable Parquet file ({exc})") from None

    return path, file.schema_arrow, batches


def _target_schema(schemas: list[pa.Schema], dim: int) -> pa.Schema:
    """One schema for every source: the columns of all (types made plain), ``vector`` as D float32s, no status."""
    from moon_cli.contracts import EMBEDDINGS, standard_type

    fields: dict[str, pa.Field] = {}
    for schema in schemas:
        for f in schema:
            if f.name in ("status", "error") or f.name in fields:
                continue
            fields[f.name] = pa.field(f.name, standard_type(f.type))
    fields["id"] = pa.field("id", EMBEDDINGS.schema.field("id").type)
    fields["vector"] = pa.field("vector", pa.list_(pa.float32(), dim))
    return pa.schema(list(fields.values()))


def _fit(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s columns in its order: a column another shard lacks is null here."""
    columns = []
    for f in schema:
        if f.name in table.column_names:
            col = table.column(f.name)
            columns.append(col if col.type.equals(f.type) else col.cast(f.type))
        else:
            columns.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def check_width(table: pa.Table, dim: int, source: str, row0: int = 0, rows: pa.Array | None = None) -> None:
    """Every present vector (of ``rows``, a mask, if given) has ``dim`` components (the manifest's); a wrong width
    names the file and row (``row0``: the file's rows before this batch)."""
    vec = table.column("vector")
    if pa.types.is_fixed_size_list(vec.type) and vec.type.list_size == dim:
        return
    lengths = pa.compute.list_value_length(vec).to_pylist()
    wanted = [True] * len(lengths) if rows is None else rows.to_pylist()
    for row, (n, want) in enumerate(zip(lengths, wanted)):
        if want and n is not None and n != dim:
            raise MoonError(f"{source}: row {row0 + row} (id {table.column('id')[row].as_py()}) has a {n}-wide "
                            f"vector, but its metadata says the model embeds in {dim} dimensions; re-embed it")
