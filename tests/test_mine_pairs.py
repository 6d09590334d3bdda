from collections import defaultdict

import pyarrow as pa
import pyarrow.parquet as pq

from moon_cli.contracts import BEHAVIOR, PAIRS
from moon_cli.io import read_table

from conftest import moon_subprocess, run_moon


def independent_pairs(behavior_path, events=("purchase",)):
    """Distinct (query, item) search positives by a plain Python walk over each session."""
    rows = read_table(behavior_path, BEHAVIOR).table.to_pylist()
    sessions = defaultdict(list)
    for r in rows:
        sessions[r["session_id"]].append(r)
    out = set()
    for evs in sessions.values():
        query = None
        for r in sorted(evs, key=lambda r: r["ts"]):
            if r["query_text"] is not None or r["query_image"] is not None:
                query = (r["query_text"], r["query_image"])
            if r["event"] in events and query is not None:
                out.add((*query, r["item_id"]))
    return out


def mined(path):
    t = read_table(path, PAIRS).table.to_pylist()
    return t, {(r["query_text"], r["query_image"], r["item_id"]) for r in t}


def test_pair_count_matches_an_independent_count(world, tmp_path):
    out = tmp_path / "pairs.parquet"
    r = run_moon("mine-pairs", world / "behavior.parquet", "-o", out, "--max-per-user", 0, "--max-per-query", 0)
    assert r.exit_code == 0, r.output
    rows, got = mined(out)
    expected = independent_pairs(world / "behavior.parquet")
    assert len(rows) == len(got) == len(expected) and got == expected
    assert {r["query_modality"] for r in rows} == {"text", "image", "multimodal"}
    for row in rows:
        assert row["query_modality"] == ("multimodal" if row["query_text"] and row["query_image"] else
                                         "image" if row["query_image"] else "text")
    assert len({r["pair_id"] for r in rows}) == len(rows)
    # split by time: every test pair is first seen no earlier than every train pair
    train = [r["first_ts"] for r in rows if r["split"] == "train"]
    test = [r["first_ts"] for r in rows if r["split"] == "test"]
    assert test and max(train) <= min(test)


def test_weaker_events_are_opt_in_and_labelled(world, tmp_path):
    out = tmp_path / "p.parquet"
    assert run_moon("mine-pairs", world / "behavior.parquet", "-o", out, "--events", "purchase,cart",
                    "--max-per-user", 0, "--max-per-query", 0).exit_code == 0
    rows, got = mined(out)
    assert got == independent_pairs(world / "behavior.parquet", ("purchase", "cart"))
    assert {r["source"] for r in rows} == {"purchase", "cart"}


def test_items_missing_from_the_catalogue_are_dropped_and_counted(world, tmp_path):
    cat = pq.read_table(world / "catalog.parquet")
    half = cat.slice(0, cat.num_rows // 2)
    pq.write_table(half, world / "half.parquet")
    out = tmp_path / "p.parquet"
    r = run_moon("mine-pairs", world / "behavior.parquet", "-o", out, "--catalog", world / "half.parquet",
                 "--max-per-user", 0, "--max-per-query", 0)
    assert r.exit_code == 0
    rows, _ = mined(out)
    kept = set(half.column("item_id").to_pylist())
    assert rows and all(r["item_id"] in kept for r in rows)
    dropped = len(independent_pairs(world / "behavior.parquet")) - len(rows)
    assert dropped > 0 and f"{dropped} not in catalogue" in r.output


def test_caps_per_query_and_per_user(world, tmp_path):
    out = tmp_path / "p.parquet"
    assert run_moon("mine-pairs", world / "behavior.parquet", "-o", out, "--max-per-query", 1,
                    "--max-per-user", 0).exit_code == 0
    rows, _ = mined(out)
    per_query = defaultdict(int)
    for r in rows:
        per_query[(r["query_text"], r["query_image"])] += 1
    assert max(per_query.values()) == 1
    assert len(rows) < len(independent_pairs(world / "behavior.parquet"))
    assert run_moon("mine-pairs", world / "behavior.parquet", "-o", tmp_path / "u.parquet", "--max-per-user", 1,
                    "--max-per-query", 0).exit_code == 0
    capped, _ = mined(tmp_path / "u.parquet")
    assert len(capped) < len(independent_pairs(world / "behavior.parquet"))


def test_test_from_date_splits_by_time(world, tmp_path):
    out = tmp_path / "p.parquet"
    assert run_moon("mine-pairs", world / "behavior.parquet", "-o", out, "--test-from", "2024-04-01").exit_code == 0
    rows, _ = mined(out)
    for r in rows:
        assert (r["split"] == "test") == (r["first_ts"].isoformat() >= "2024-04-01")


def test_missing_column_is_one_line_and_writes_nothing(world, tmp_path):
    beh = pq.read_table(world / "behavior.parquet").drop_columns(["event"])
    pq.write_table(beh, tmp_path / "bad.parquet")
    r = run_moon("mine-pairs", tmp_path / "bad.parquet", "-o", tmp_path / "p.parquet")
    assert r.exit_code == 1
    assert "'event'" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "p.parquet").exists()


def test_empty_log_gives_an_empty_table_and_a_warning(tmp_path):
    pq.write_table(BEHAVIOR.schema.empty_table(), tmp_path / "empty.parquet")
    r = run_moon("mine-pairs", tmp_path / "empty.parquet", "-o", tmp_path / "p.parquet")
    assert r.exit_code == 0, r.output
    assert "warning" in r.output and "empty" in r.output
    assert pq.read_table(tmp_path / "p.parquet").num_rows == 0


def test_folder_input_and_stdin_pipe(world, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    beh = pq.read_table(world / "behavior.parquet")
    # two daily files in another folder: query_image paths must still resolve (they are stored relative)
    half = beh.num_rows // 2
    for i, part in enumerate((beh.slice(0, half), beh.slice(half))):
        pq.write_table(part.set_column(4, "query_image", pa.array(
            [None if p is None else str(world / p) for p in part.column("query_image").to_pylist()])),
            logs / f"day{i}.parquet")
    assert run_moon("mine-pairs", logs, "-o", tmp_path / "a.parquet", "--max-per-user", 0, "--max-per-query",
                    0).exit_code == 0
    _, from_folder = mined(tmp_path / "a.parquet")
    assert from_folder == independent_pairs(world / "behavior.parquet")
    res = moon_subprocess(f"cat {world / 'behavior.parquet'} | moon mine-pairs - -o - --max-per-user 0 "
                          f"--max-per-query 0 | moon inspect - --contract pairs --json")
    assert res.returncode == 0, res.stderr
    assert f'"rows": {len(from_folder)}' in res.stdout.decode()


def test_queries_recorded_only_on_the_search_event_are_carried_to_the_purchase(world, tmp_path):
    """Logs that put the query on the first event only: purchases inherit their session's latest query."""
    import pyarrow.compute as pc

    beh = pq.read_table(world / "behavior.parquet")
    sparse = beh.sort_by([("session_id", "ascending"), ("ts", "ascending")])
    first = pc.not_equal(sparse.column("session_id"), pa.concat_arrays([pa.array([None], pa.string()),
                                                                        sparse.column("session_id").combine_chunks()[:-1]]))
    first = pc.fill_null(first, True)
    for name in ("query_text", "query_image"):
        idx = sparse.schema.get_field_index(name)
        sparse = sparse.set_column(idx, name, pc.if_else(first, sparse.column(name), pa.scalar(None, pa.string())))
    pq.write_table(sparse, world / "sparse.parquet")
    assert run_moon("mine-pairs", world / "sparse.parquet", "-o", tmp_path / "p.parquet", "--max-per-user", 0,
                    "--max-per-query", 0).exit_code == 0
    _, got = mined(tmp_path / "p.parquet")
    assert got == independent_pairs(world / "behavior.parquet")


def test_unknown_event_values_are_warned_about_and_an_all_unknown_log_is_refused(world, tmp_path):
    import pyarrow as pa
    import pyarrow.compute as pc

    beh = pq.read_table(world / "behavior.parquet")
    upper = beh.set_column(beh.schema.get_field_index("event"), "event", pc.utf8_upper(beh.column("event")))
    pq.write_table(upper, tmp_path / "upper.parquet")
    r = run_moon("mine-pairs", tmp_path / "upper.parquet", "-o", tmp_path / "p.parquet")
    assert r.exit_code == 1 and "'PURCHASE'" in r.output and "lower case" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "p.parquet").exists()
    events = beh.column("event").to_pylist()
    events[0] = "Purchase"
    mixed = beh.set_column(beh.schema.get_field_index("event"), "event", pa.array(events, pa.string()))
    pq.write_table(mixed, tmp_path / "mixed.parquet")
    r = run_moon("mine-pairs", tmp_path / "mixed.parquet", "-o", tmp_path / "p.parquet")
    assert r.exit_code == 0 and "warning" in r.output and "'Purchase' 1" in r.output
