"""Mine search-query → item positives from behaviour logs with polars (lazy, streaming).

A positive is a search query (text, image, or both) followed in the same session by a purchase (by
default; carts and clicks are opt-in, weaker sources). A purchase's query is the latest query its
session issued before it; purchases in sessions with no query (feeds) are not search positives.
Output: one row per distinct (query, item), de-duplicated, with per-user and per-query caps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from moon_cli.contracts import BEHAVIOR, PAIRS, check_schema
from moon_cli.errors import MoonError

STDIN = Path("-")
EVENT_RANK = {"purchase": 3, "cart": 2, "click": 1}  # strongest source wins when a pair has several
KNOWN_EVENTS = ("impression", *EVENT_RANK)  # the behaviour contract's event values (case-sensitive)


@dataclass
class MineStats:
    files: int = 0
    events: int = 0
    search_events: int = 0
    feed_events: int = 0
    pairs_before_filters: int = 0
    dropped_not_in_catalog: int = 0
    capped_per_user: int = 0
    capped_per_query: int = 0
    pairs: int = 0
    unknown_events: dict = field(default_factory=dict)  # event values outside KNOWN_EVENTS → count (never mined)
    by_modality: dict = field(default_factory=dict)
    by_split: dict = field(default_factory=dict)
    seconds: float = 0.0


def behavior_files(inputs: list[str]) -> list[Path]:
    """Expand files and folders (recursively, *.parquet) into a sorted list of behaviour files."""
    files: list[Path] = []
    for raw in inputs:
        if raw == "-":
            files.append(STDIN)
            continue
        p = Path(raw)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*.parquet") if q.is_file())
            if not found:
                raise MoonError(f"{p}: folder holds no .parquet behaviour files")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise MoonError(f"{p}: no such file or folder")
    if files.count(STDIN) > 1:
        raise MoonError("'-' (stdin) can be given only once")
    for f in files:
        if f is STDIN:
            continue
        try:
            schema = pq.read_schema(f)
        except (pa.ArrowInvalid, OSError) as exc:
            raise MoonError(f"{f}: not a readable Parquet file ({exc})") from None
        check_schema(schema, BEHAVIOR, str(f))
    return files


def _row_count(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows


def mine_pairs(files: list[Path], events: tuple[str, ...] = ("purchase",), catalog_ids: pa.Array | None = None,
               test_from: datetime | None = None, test_fraction: float | None = 0.1, max_per_user: int = 0,
               max_per_query: int = 0) -> tuple[pa.Table, MineStats]:
    """The pairs table (PAIRS contract, query_image paths absolute) and what happened on the way."""
    import polars as pl

    t0 = time.perf_counter()
    stats = MineStats(files=len(files))
    bad = [e for e in events if e not in EVENT_RANK]
    if bad:
        raise MoonError(f"--events: unknown event(s) {bad}; choose from {', '.join(EVENT_RANK)}")

    frames = []
    for f in files:
        if f is STDIN:  # an Arrow stream (or Parquet) on stdin: read, validated, paths resolved
            from moon_cli.io import read_table

            source, base = pl.from_arrow(read_table("-", BEHAVIOR).table).lazy(), "/"
        else:
            source, base = pl.scan_parquet(f), str(f.resolve().parent)
        ts = pl.col("ts")  # a log exported from text (CSV, JSON) holds ISO 8601 strings: parsed, strictly
        ts = ts.str.to_datetime(time_unit="us", strict=True) if source.collect_schema()["ts"] == pl.String else ts
        lf = source.select(
            pl.col("user_id").cast(pl.String), pl.col("session_id").cast(pl.String), ts.cast(pl.Datetime("us")),
            pl.col("query_text").cast(pl.String), pl.col("query_image").cast(pl.String),
            pl.col("item_id").cast(pl.String), pl.col("event").cast(pl.String),
        ).with_columns(
            # relative image paths resolve against the behaviour file's own directory
            query_image=pl.when(pl.col("query_image").is_null() | pl.col("query_image").str.starts_with("/"))
            .then(pl.col("query_image")).otherwise(pl.lit(base + "/") + pl.col("query_image"))
        )
        frames.append(lf)
    lf = pl.concat(frames) if frames else None

    stats.events = sum(_row_count(f) for f in files) if STDIN not in files else int(
        lf.select(pl.len()).collect().item())

    has_query = pl.col("query_text").is_not_null() | pl.col("query_image").is_not_null()
    positives = lf.filter(pl.col("event").is_in(list(events)))
    keys = ["user_id", "q_text", "q_image", "item_id"]
    # 1. positive events that carry their query (well-formed logs): aggregate while streaming
    direct = positives.filter(has_query).rename({"query_text": "q_text", "query_image": "q_image"})
    # 2. positive events without one (the log records the query only on the search event, or a feed
    #    visit): take the latest query their session issued before them — a small as-of join
    missing_lf = positives.filter(~has_query).select("user_id", "session_id", "ts", "item_id", "event")

    rank = pl.col("event").replace_strict(EVENT_RANK, return_dtype=pl.Int8)

    def per_user_pair(frame):
        return frame.with_columns(rank=rank).group_by(keys).agg(
            sessions=pl.col("session_id").n_unique(), first_ts=pl.col("ts").min(), rank=pl.col("rank").max(),
            events=pl.len())

    # one pass over the log feeds both outputs (common subplans are shared)
    unknown_lf = lf.filter(~pl.col("event").is_in(list(KNOWN_EVENTS))).group_by("event").agg(n=pl.len())
    try:
        collected, missing, unknown = pl.collect_all([per_user_pair(direct), missing_lf, unknown_lf],
                                                     engine="streaming")
    except (pl.exceptions.ComputeError, pl.exceptions.InvalidOperationError) as exc:
        first = (str(exc).strip().splitlines() or ["?"])[0]
        raise MoonError(f"{', '.join(map(str, files))}: a column cannot be read as the behavior contract asks "
                        f"({first[:200]}); 'ts' needs timestamps or ISO 8601 text such as "
                        f"2024-05-01 12:30:00") from None
    stats.unknown_events = dict(sorted(unknown.iter_rows(), key=lambda kv: (-kv[1], str(kv[0]))))
    query_cols = ("session_id", "ts", pl.col("query_text").alias("q_text"), pl.col("query_image").alias("q_image"))
    if missing.height:
        query_rows = (lf.filter(has_query & pl.col("session_id").is_in(missing["session_id"].unique().implode()))
                      .select(*query_cols).collect(engine="streaming"))
    else:  # nothing to look up: skip the second pass over the log
        query_rows = lf.select(*query_cols).head(0).collect()
    # both sides are sorted by ts here; polars cannot verify that within "by" groups, so it is told
    filled = missing.sort("ts").join_asof(query_rows.sort("ts"), on="ts", by="session_id", strategy="backward",
                                          check_sortedness=False)
    filled = filled.filter(pl.col("q_text").is_not_null() | pl.col("q_image").is_not_null())
    if filled.height:  # merge the two sources; a pair seen both ways adds up its sessions
        collected = pl.concat([collected, per_user_pair(filled.lazy()).collect()]).group_by(keys).agg(
            pl.col("sessions").sum(), pl.col("first_ts").min(), pl.col("rank").max(), pl.col("events").sum())
    stats.search_events = int(collected["events"].sum() or 0)
    stats.feed_events = missing.height - filled.height
    if max_per_user > 0:  # a heavy user contributes at most N distinct pairs (their earliest)
        before = collected.height
        collected = collected.sort(["user_id", "first_ts", "item_id"]).filter(
            pl.int_range(pl.len()).over("user_id") < max_per_user)
        stats.capped_per_user = before - collected.height

    pairs = collected.group_by(["q_text", "q_image", "item_id"]).agg(
        count=pl.col("sessions").sum().cast(pl.Int64), first_ts=pl.col("first_ts").min(), rank=pl.col("rank").max(),
    )
    stats.pairs_before_filters = pairs.height

    if catalog_ids is not None:
        known = pl.from_arrow(pa.chunked_array([catalog_ids]).cast(pa.string())).alias("item_id").to_frame().unique()
        kept = pairs.join(known, on="item_id", how="semi")
        stats.dropped_not_in_catalog = pairs.height - kept.height
        pairs = kept

    if max_per_query > 0:  # a popular query contributes at most N items (its most frequent)
        before = pairs.height
        pairs = pairs.sort(["count", "first_ts", "item_id"], descending=[True, False, False]).filter(
            pl.int_range(pl.len()).over(["q_text", "q_image"]) < max_per_query)
        stats.capped_per_query = before - pairs.height

    if test_from is not None:
        cutoff = test_from
    elif test_fraction and pairs.height:
        cutoff = pairs.select(pl.col("first_ts").quantile(1 - test_fraction, "nearest")).item()
    else:
        cutoff = None
    modality = (pl.when(pl.col("q_text").is_not_null() & pl.col("q_image").is_not_null()).then(pl.lit("multimodal"))
                .when(pl.col("q_image").is_not_null()).then(pl.lit("image")).otherwise(pl.lit("text")))
    split = (pl.lit("train") if cutoff is None
             else pl.when(pl.col("first_ts") >= cutoff).then(pl.lit("test")).otherwise(pl.lit("train")))
    inverse_rank = {v: k for k, v in EVENT_RANK.items()}
    pairs = (
        pairs.sort(["first_ts", "q_text", "q_image", "item_id"], nulls_last=True)
        .with_columns(
            pair_id=pl.format("pr{}", pl.int_range(pl.len()).cast(pl.String).str.zfill(8)),
            query_modality=modality, split=split,
            source=pl.col("rank").replace_strict(inverse_rank, return_dtype=pl.String),
        )
        .select("pair_id", pl.col("q_text").alias("query_text"), pl.col("q_image").alias("query_image"),
                "query_modality", "item_id", "count", "first_ts", "split", "source")
    )
    table = pairs.to_arrow().cast(PAIRS.schema)
    stats.pairs = table.num_rows
    stats.by_modality = dict(pairs.group_by("query_modality").len().sort("query_modality").iter_rows())
    stats.by_split = dict(pairs.group_by("split").len().sort("split").iter_rows())
    stats.seconds = time.perf_counter() - t0
    return table, stats
