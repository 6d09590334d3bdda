"""Every artifact's schema, in one place, and the validator that checks them at stage boundaries.

A contract lists the columns a stage needs (name -> Arrow type). Tables may carry more columns: stages
pass unknown columns through. ``path_columns`` hold file paths that are stored relative to the
artifact's own directory on disk (so a world can be moved) and resolved to absolute paths on read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute used by vectors_to_numpy

from moon_cli.errors import MoonError

ATTRIBUTE = pa.struct([("name", pa.string()), ("value", pa.string())])
BBOX = pa.list_(pa.float32(), 4)  # x0, y0, x1, y1 in pixels

EVENTS = ("impression", "click", "cart", "purchase")
DETECTION_STATUSES = ("ok", "no_detection", "error")


@dataclass(frozen=True)
class Contract:
    name: str
    fields: tuple[pa.Field, ...]
    path_columns: tuple[str, ...] = ()
    doc: str = ""
    optional: tuple[pa.Field, ...] = field(default=())

    @property
    def schema(self) -> pa.Schema:
        return pa.schema(list(self.fields))

    def field(self, name: str) -> pa.Field:
        for f in self.fields + self.optional:
            if f.name == name:
                return f
        raise KeyError(name)


CATALOG = Contract(
    "catalog",
    (
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("category_path", pa.list_(pa.string())),  # root first
        pa.field("attributes", pa.list_(ATTRIBUTE)),
        pa.field("image_paths", pa.list_(pa.string())),
    ),
    path_columns=("image_paths",),
    doc="one row per product",
)

BEHAVIOR = Contract(
    "behavior",
    (
        pa.field("user_id", pa.string()),
        pa.field("session_id", pa.string()),
        pa.field("ts", pa.timestamp("us")),
        pa.field("query_text", pa.string()),  # null: no text query
        pa.field("query_image", pa.string()),  # null: no image query
        pa.field("item_id", pa.string()),
        pa.field("event", pa.string()),  # one of EVENTS
    ),
    path_columns=("query_image",),
    doc="one row per user event",
)

BOXES = Contract(
    "boxes",
    (
        pa.field("image_path", pa.string(), nullable=False),
        pa.field("bbox", BBOX),
    ),
    path_columns=("image_path",),
    doc="ground-truth box of the core product, one row per image",
)

DETECTIONS = Contract(
    "detections",
    (
        pa.field("image_path", pa.string(), nullable=False),
        pa.field("bbox", BBOX),  # null when no detection / error
        pa.field("score", pa.float32()),
        pa.field("crop_path", pa.string()),
        pa.field("status", pa.string()),  # one of DETECTION_STATUSES
        pa.field("error", pa.string()),
    ),
    path_columns=("image_path", "crop_path"),
    doc="one row per input image: detected core-product box and its crop",
)

CONTRACTS = {c.name: c for c in (CATALOG, BEHAVIOR, BOXES, DETECTIONS)}


def standard_type(t: pa.DataType) -> pa.DataType:
    """The plain Arrow type for a large / view / dictionary variant, recursively: what polars (large_string,
    large_list), duckdb, pandas categoricals (dictionary) and Arrow's newer views write reads as the types
    every stage is written against (string, binary, list)."""
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_dictionary(t):
        return standard_type(t.value_type)
    if (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t)
            or pa.types.is_large_list_view(t)):
        return pa.list_(t.value_field.with_type(standard_type(t.value_type)))
    if pa.types.is_fixed_size_list(t):
        return pa.list_(t.value_field.with_type(standard_type(t.value_type)), t.list_size)
    if pa.types.is_struct(t):
        return pa.struct([t.field(i).with_type(standard_type(t.field(i).type)) for i in range(t.num_fields)])
    if pa.types.is_map(t):
        return pa.map_(standard_type(t.key_type), t.item_field.with_type(standard_type(t.item_type)))
    return t


def _has_view(t: pa.DataType) -> bool:
    if pa.types.is_list_view(t) or pa.types.is_large_list_view(t):
        return True
    return any(_has_view(t.field(i).type) for i in range(t.num_fields))


def standardize(table: pa.Table) -> pa.Table:
    """``table`` with every column in its plain type (``standard_type``); metadata kept, a plain table returned
    as it is."""
    schema = table.schema
    for i, f in enumerate(schema):
        plain = standard_type(f.type)
        if plain.equals(f.type):
            continue
        col = table.column(i)
        if _has_view(f.type):  # Arrow cannot cast a list view to a list yet: rebuild it (list views are rare)
            col = pa.chunked_array([pa.array(c.to_pylist(), plain) for c in col.chunks], plain)
        else:
            col = col.cast(plain)
        table = table.set_column(i, f.with_type(plain), col)
    return table.replace_schema_metadata(schema.metadata)


def _castable(actual: pa.DataType, expected: pa.DataType) -> bool:
    if actual.equals(expected):
        return True
    try:
        pa.array([], type=actual).cast(expected)
        return True
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return False


def check_schema(schema: pa.Schema, contract: Contract, source: str, present_only: bool = False) -> None:
    """Raise a one-line MoonError naming ``source`` and the first missing or mistyped column. ``present_only``:
    check the types of the contract's columns the table has, and miss none (a table read for what it holds)."""
    for f in contract.fields + (contract.optional if present_only else ()):
        idx = schema.get_field_index(f.name)
        if idx < 0:
            if present_only:
                continue
            have = ", ".join(schema.names) or "no columns"
            raise MoonError(
                f"{source}: missing column '{f.name}' (expected {f.type}) required by the "
                f"{contract.name} contract; the file has: {have}"
            )
        actual = schema.field(idx).type
        if not _castable(actual, f.type):
            raise MoonError(
                f"{source}: column '{f.name}' has type {actual}, expected {f.type} ({contract.name} contract)"
            )


def conform(table: pa.Table, contract: Contract, source: str) -> pa.Table:
    """Validate ``table`` and cast contract columns to their exact types; other columns pass through."""
    check_schema(table.schema, contract, source)
    for f in contract.fields:
        idx = table.schema.get_field_index(f.name)
        col = table.column(idx)
        if not col.type.equals(f.type):
            try:
                col = col.cast(f.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise MoonError(f"{source}: column '{f.name}' cannot be read as {f.type}: {exc}") from None
            table = table.set_column(idx, pa.field(f.name, f.type), col)
        if not f.nullable and col.null_count:
            raise MoonError(f"{source}: column '{f.name}' has {col.null_count} null value(s); every row needs one")
    return table


# ------------------------------------------------------------------------------------ bench (moon synth)
QUERIES = Contract(
    "queries",
    (
        pa.field("query_id", pa.string(), nullable=False),
        pa.field("query_text", pa.string()),  # null for image-only queries
        pa.field("query_image", pa.string()),  # null for text-only queries
        pa.field("item_id", pa.string()),  # the relevant product in the gallery
    ),
    path_columns=("query_image",),
    doc="retrieval queries (text, image, or both) with their target product",
)

PRODUCT_QUERIES = Contract(
    "product_queries",
    (
        pa.field("query_id", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("category_path", pa.list_(pa.string())),
        pa.field("attributes", pa.list_(ATTRIBUTE)),
        pa.field("image_paths", pa.list_(pa.string())),
        pa.field("item_id", pa.string()),  # the same product's listing in the gallery
    ),
    path_columns=("image_paths",),
    doc="product -> product retrieval: another seller's listing of a gallery product",
)

LABELED_PRODUCTS = Contract(
    "labeled_products",
    (
        pa.field("query_id", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("category_path", pa.list_(pa.string())),  # label for classification
        pa.field("attributes", pa.list_(ATTRIBUTE)),  # labels for attribute prediction
        pa.field("image_paths", pa.list_(pa.string())),
    ),
    path_columns=("image_paths",),
    doc="products with their category / attribute labels (labels are hidden from the model)",
)

CONTRACTS.update({c.name: c for c in (QUERIES, PRODUCT_QUERIES, LABELED_PRODUCTS)})


# ------------------------------------------------------------------------------------ training data
PAIRS = Contract(
    "pairs",
    (
        pa.field("pair_id", pa.string(), nullable=False),
        pa.field("query_text", pa.string()),
        pa.field("query_image", pa.string()),
        pa.field("query_modality", pa.string()),  # text | image | multimodal
        pa.field("item_id", pa.string()),
        pa.field("count", pa.int64()),  # distinct sessions that produced the pair
        pa.field("first_ts", pa.timestamp("us")),
        pa.field("split", pa.string()),  # train | test (by time)
        pa.field("source", pa.string()),  # strongest event behind the pair: purchase | cart | click
    ),
    path_columns=("query_image",),
    doc="one row per distinct (search query, item) positive",
)

NEGATIVE = pa.struct([("item_id", pa.string()), ("kind", pa.string()), ("score", pa.float32())])

NEGATIVES = Contract(
    "negatives",
    (
        pa.field("pair_id", pa.string(), nullable=False),
        pa.field("negatives", pa.list_(NEGATIVE)),
    ),
    doc="hard negatives per pair (kind: same_leaf | same_parent | embedding | random)",
)

QUERY_MODALITIES = ("text", "image", "multimodal")
CONTRACTS.update({c.name: c for c in (PAIRS, NEGATIVES)})


# ------------------------------------------------------------------------------------ embeddings
EMBEDDINGS = Contract(
    "embeddings",
    (
        pa.field("id", pa.string(), nullable=False),
        pa.field("vector", pa.list_(pa.float32())),  # stored as fixed_size_list<float32>[D], unit norm
    ),
    doc="one vector per product / query; metadata names the model that made them",
)
CONTRACTS[EMBEDDINGS.name] = EMBEDDINGS


def vectors_to_numpy(column, source: str = "embeddings"):
    """(N, D) float32 array from a list / fixed-size-list column; every row must have the same length."""
    import numpy as np

    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if arr.null_count:
        raise MoonError(f"{source}: column 'vector' has {arr.null_count} null row(s)")
    n = len(arr)
    if pa.types.is_fixed_size_list(arr.type):
        dim = arr.type.list_size
    else:
        lengths = pa.compute.list_value_length(arr).to_numpy(zero_copy_only=False)
        if n and (lengths != lengths[0]).any():
            raise MoonError(f"{source}: column 'vector' rows have different lengths ({lengths.min()}..{lengths.max()})")
        dim = int(lengths[0]) if n else 0
    flat = arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return flat.reshape(n, dim)


def usable_embeddings(embeddings: pa.Table, seen: set | None = None) -> tuple[pa.Table, dict[str, int], str | None]:
    """The rows of an embeddings table fit to search or score: ids seen for the first time whose vector is
    present, finite and not all zeros (a zero vector has no direction: its cosine with anything is undefined,
    so it would be stored and never found). Returns them, what was left out and why (counts), and the first id
    left out for a bad vector. (A row's first occurrence wins: one model gives one id one vector.) ``seen``: the
    ids of earlier batches, updated with this one's (one table at a time when None)."""
    import numpy as np

    ids = embeddings.column("id").to_pylist()
    vec = embeddings.column("vector")
    present = np.array(pa.compute.is_valid(vec).to_pylist(), dtype=bool) if len(ids) else np.zeros(0, bool)
    finite, nonzero = present.copy(), present.copy()
    if present.any():
        stored = vectors_to_numpy(vec.filter(pa.array(present)))  # (n_present, D)
        finite[present] = np.isfinite(stored).all(axis=1)
        nonzero[present] = (stored != 0).any(axis=1)
    keep = np.zeros(len(ids), dtype=bool)
    dropped: dict[str, int] = {}
    first_bad = None
    seen = set() if seen is None else seen
    for i, item in enumerate(ids):
        reason = ("null vector" if not present[i] else "NaN / Inf vector" if not finite[i]
                  else "zero vector" if not nonzero[i]
                  else "null id" if item is None else "duplicate id" if item in seen else None)
        if reason is None:
            seen.add(item)
            keep[i] = True
            continue
        dropped[reason] = dropped.get(reason, 0) + 1
        if first_bad is None and reason.endswith("vector"):
            first_bad = item
    return embeddings.filter(pa.array(keep)), dropped, first_bad
