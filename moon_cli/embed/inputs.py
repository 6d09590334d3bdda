"""What `moon embed` reads: a folder of photos, a catalogue, a queries table, or product listings.

Each input row becomes an ``EmbedItem``: the id written to the output, the dict the model encodes,
and the columns passed through.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa

from moon_cli.contracts import CATALOG, QUERIES, check_schema
from moon_cli.data.products import crop_lookup, product_record, query_record
from moon_cli.errors import MoonError

KINDS = ("product", "query")
OUTPUT_COLUMNS = ("id", "vector", "status", "error")


@dataclass
class EmbedItem:
    id: str
    item: dict  # the model's product or query dict
    row: int  # position in the input (pass-through columns are taken from there)


def detect_kind(schema: pa.Schema, source: str) -> tuple[str, str]:
    """(kind, id column) for a table: product rows (catalogue / listings) or query rows."""
    names = set(schema.names)
    if "image_paths" in names or "title" in names:
        id_col = "item_id" if "item_id" in names and "query_id" not in names else "query_id"
        if id_col not in names:
            raise MoonError(f"{source}: a product table needs an 'item_id' (catalogue) or 'query_id' column")
        return "product", id_col
    if "query_text" in names or "query_image" in names:
        id_col = "query_id" if "query_id" in names else "pair_id" if "pair_id" in names else None
        if id_col is None:
            raise MoonError(f"{source}: a query table needs a 'query_id' column")
        return "query", id_col
    raise MoonError(f"{source}: cannot tell what to embed: expected catalogue columns (item_id, title, image_paths) "
                    f"or query columns (query_id, query_text / query_image); the file has: {', '.join(schema.names)}")


def in_shard(item_id: str, shard: tuple[int, int] | None) -> bool:
    """Stable assignment of ids to ``shard`` = (index, count): N processes embed disjoint parts."""
    return shard is None or zlib.crc32(item_id.encode()) % shard[1] == shard[0]


class FolderInput:
    """One product per photo under a folder (recursive); the id is the path relative to the folder."""

    kind = "product"

    def __init__(self, folder: Path, detections: pa.Table | None):
        from moon_cli.detect.predict import iter_folder_images

        self.folder = folder
        self.paths = list(iter_folder_images(folder))  # names only: cheap even for many files
        self.crops = crop_lookup(detections)

    null_ids: list[int] = []  # every photo has a name

    def __len__(self) -> int:
        return len(self.paths)

    def items(self) -> Iterator[EmbedItem]:
        for i, path in enumerate(self.paths):
            rel = Path(path).relative_to(self.folder).as_posix()
            yield EmbedItem(rel, {"item_id": rel, "title": None, "images": [path], "crops": [self.crops.get(path)]}, i)

    def passthrough(self, items: list[EmbedItem]) -> pa.Table:
        return pa.table({"image_path": pa.array([self.paths[it.row] for it in items], pa.string())})


class TableInput:
    """A catalogue / product listings (product rows) or a queries table (query rows)."""

    def __init__(self, table: pa.Table, source: str, detections: pa.Table | None, kind: str | None = None):
        detected, self.id_col = detect_kind(table.schema, source)
        self.kind = kind or detected
        # e.g. image_paths stored as one string would be read a character at a time: its type is checked first
        check_schema(table.schema, CATALOG if self.kind == "product" else QUERIES, source, present_only=True)
        self.table = table
        self.crops = crop_lookup(detections)
        self.columns = [c for c in table.column_names if c not in OUTPUT_COLUMNS]
        self.null_ids: list[int] = []  # input rows without an id: nothing to name their vector by, so skipped

    def __len__(self) -> int:
        return self.table.num_rows

    def items(self) -> Iterator[EmbedItem]:
        row = 0
        for batch in self.table.to_batches(max_chunksize=1024):
            for rec in batch.to_pylist():
                rid = rec.get(self.id_col)
                if rid is not None:
                    item = (product_record({**rec, "item_id": rid}, self.crops) if self.kind == "product"
                            else query_record({**rec, "query_id": rid}, self.crops))
                    yield EmbedItem(str(rid), item, row)
                else:
                    self.null_ids.append(row)
                row += 1

    def passthrough(self, items: list[EmbedItem]) -> pa.Table:
        return self.table.select(self.columns).take(pa.array([it.row for it in items], pa.int64()))
