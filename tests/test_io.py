import os
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from moon_cli.contracts import CATALOG
from moon_cli.errors import MoonError
from moon_cli.io import TableWriter, make_manifest, read_table, write_table

from conftest import moon_subprocess


def small_catalog(image_root):
    return pa.table({
        "item_id": ["a", "b"],
        "title": ["red mug", "blue tee"],
        "category_path": [["Home", "Kitchen", "Mug"], ["Apparel", "Tops", "T-shirt"]],
        "attributes": [[{"name": "color", "value": "red"}], None],
        "image_paths": [[f"{image_root}/a.jpg"], [f"{image_root}/b.jpg", "/elsewhere/b2.jpg"]],
    })


def test_manifest_round_trips_and_paths_are_stored_relative(tmp_path):
    out = tmp_path / "w" / "catalog.parquet"
    manifest = make_manifest("test", {"k": 1}, seed=5)
    write_table(small_catalog(tmp_path / "w" / "images"), out, contract=CATALOG, manifest=manifest)
    raw = pq.read_table(out)
    # beneath the artifact's directory: relative; elsewhere: left absolute
    assert raw.column("image_paths").to_pylist() == [["images/a.jpg"], ["images/b.jpg", "/elsewhere/b2.jpg"]]
    art = read_table(out, CATALOG)
    assert art.manifest == manifest
    assert art.table.column("image_paths").to_pylist()[0] == [str(tmp_path / "w" / "images" / "a.jpg")]
    assert art.table.column("attributes").to_pylist()[1] is None


def test_moved_artifact_resolves_paths_against_its_new_directory(tmp_path):
    out = tmp_path / "w" / "catalog.parquet"
    write_table(small_catalog(tmp_path / "w" / "images"), out, contract=CATALOG)
    os.rename(tmp_path / "w", tmp_path / "moved")
    art = read_table(tmp_path / "moved" / "catalog.parquet", CATALOG)
    assert art.table.column("image_paths").to_pylist()[1][0] == str(tmp_path / "moved" / "images" / "b.jpg")


def test_refuses_to_overwrite_without_flag(tmp_path):
    out = tmp_path / "t.parquet"
    write_table(small_catalog(tmp_path), out, contract=CATALOG)
    before = out.read_bytes()
    with pytest.raises(MoonError, match="--overwrite"):
        write_table(small_catalog(tmp_path).slice(0, 1), out, contract=CATALOG)
    assert out.read_bytes() == before
    write_table(small_catalog(tmp_path).slice(0, 1), out, contract=CATALOG, overwrite=True)
    assert pq.read_table(out).num_rows == 1


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path):
    out = tmp_path / "t.parquet"
    write_table(small_catalog(tmp_path), out, contract=CATALOG)
    before = out.read_bytes()
    table = small_catalog(tmp_path)
    with pytest.raises(RuntimeError):
        with TableWriter(out, table.schema, contract=CATALOG, overwrite=True) as w:
            w.write(table.slice(0, 1))
            raise RuntimeError("crash mid-write")
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]  # no temporary left behind


def test_stdout_to_stdin_pipe_between_processes(tmp_path):
    """A real Unix pipe: one process writes an Arrow stream to stdout, another reads it from '-'."""
    writer = (
        "import pyarrow as pa; from moon_cli.io import write_table, make_manifest; from moon_cli.contracts import "
        "CATALOG;"
        "t = pa.table({'item_id': ['a'], 'title': ['t'], 'category_path': [['x']], 'attributes': [[]],"
        " 'image_paths': [['/abs/a.jpg']], 'extra': [7]});"
        "write_table(t, '-', contract=CATALOG, manifest=make_manifest('w'))"
    )
    reader = (
        "from moon_cli.io import read_table; from moon_cli.contracts import CATALOG;"
        "a = read_table('-', CATALOG); print(a.table.num_rows, a.table.column('extra')[0], a.manifest['stage'],"
        " a.table.column('image_paths')[0])"
    )
    res = moon_subprocess(f'"{sys.executable}" -c "{writer}" | "{sys.executable}" -c "{reader}"', text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["1", "7", "w", "['/abs/a.jpg']"]


def test_parquet_file_piped_into_stdin_is_read(tmp_path):
    out = tmp_path / "t.parquet"
    write_table(small_catalog(tmp_path), out, contract=CATALOG)
    res = moon_subprocess(f"cat {out} | moon inspect - --contract catalog", text=True)
    assert res.returncode == 0, res.stderr
    assert "2 rows" in res.stdout


def test_garbage_on_stdin_is_a_one_line_error():
    res = moon_subprocess("echo 'not arrow' | moon inspect -", text=True)
    assert res.returncode == 1
    assert "stdin is not an Arrow IPC stream" in res.stderr and "Traceback" not in res.stderr


def test_writing_binary_stream_to_a_terminal_is_refused(monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    with pytest.raises(MoonError, match="terminal"):
        write_table(small_catalog("/x"), "-", contract=CATALOG)


def test_outputs_get_the_umask_mode_not_0600(tmp_path):
    import os
    import stat

    import pyarrow as pa

    from moon_cli.io import atomic_dir, write_table

    old = os.umask(0o022)
    try:
        write_table(pa.table({"a": [1]}), tmp_path / "t.parquet")
        with atomic_dir(tmp_path / "d") as d:
            (d / "f").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "t.parquet").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


def test_a_killed_writers_temporary_files_are_removed_by_the_next_writer(tmp_path):
    import pyarrow as pa

    from moon_cli.io import write_table

    (tmp_path / ".out.parquet.abc123.tmp").write_bytes(b"half a file")  # what a kill -9 leaves
    (tmp_path / ".other.parquet.x.tmp").write_bytes(b"someone else's")
    write_table(pa.table({"a": [1]}), tmp_path / "out.parquet")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [".other.parquet.x.tmp", "out.parquet"]


def test_inspect_counts_rows_by_status(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from conftest import run_moon

    pq.write_table(pa.table({"id": ["a", "b", "c"], "status": ["error", "error", "ok"]}), tmp_path / "e.parquet")
    r = run_moon("inspect", tmp_path / "e.parquet")
    assert r.exit_code == 0 and "3 rows (error 2, ok 1)" in r.output
