import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from moon_cli.embed.encoders import Encoder, load_encoder
from moon_cli.embed.inputs import FolderInput
from moon_cli.embed.run import embed_to_parquet, parts_dir
from moon_cli.io import make_manifest, read_manifest

from conftest import run_moon


@pytest.fixture(scope="module")
def photo_folder(world_template, tmp_path_factory):
    """Good photos in nested folders, odd colour modes and names, and broken files."""
    root = tmp_path_factory.mktemp("photos")
    src = sorted((world_template / "images").glob("*.jpg"))[:4]
    (root / "shoes" / "summer").mkdir(parents=True)
    shutil.copy(src[0], root / "a.jpg")
    shutil.copy(src[1], root / "shoes" / "summer" / "b.jpg")
    Image.open(src[2]).convert("L").save(root / "gray.png")
    Image.open(src[2]).convert("RGBA").save(root / "rgba.png")
    Image.open(src[3]).convert("CMYK").save(root / "cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90°
    Image.open(src[3]).save(root / "rotated.jpg", exif=exif)
    shutil.copy(src[0], root / "商品 é.jpg")
    (root / "empty.jpg").write_bytes(b"")
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00garbage" * 20)
    (root / "notes.png").write_text("this is text, not a picture")
    data = (root / "a.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 3])
    return root


BROKEN = {"empty.jpg", "corrupt.jpg", "notes.png", "truncated.jpg"}


def rows_of(path):
    return pq.read_table(path).to_pylist()


def test_folder_one_row_per_image_errors_in_rows_unit_vectors(photo_folder, tmp_path):
    out = tmp_path / "e.parquet"
    r = run_moon("embed", photo_folder, "-m", "tiny", "-o", out, "--quiet", "--batch-size", 3)
    assert r.exit_code == 0, r.output
    rows = rows_of(out)
    ids = {row["id"] for row in rows}
    assert len(rows) == 11 and "shoes/summer/b.jpg" in ids and "商品 é.jpg" in ids
    bad = {row["id"] for row in rows if row["status"] == "error"}
    assert bad == BROKEN
    assert all(row["error"] and row["vector"] is None for row in rows if row["status"] == "error")
    vecs = np.array([row["vector"] for row in rows if row["status"] == "ok"], dtype=np.float32)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert read_manifest(pq.read_schema(out))["params"]["model_id"] == "preset:tiny:seed0"
    r = run_moon("embed", photo_folder, "-m", "tiny", "-o", out, "--quiet", "--resume")
    assert r.exit_code == 0 and "7 ok" not in r.output and "already done" in r.output
    assert rows_of(out) == rows


class Interrupt(Exception):
    pass


class DiesAfter(Encoder):
    """An encoder that is killed after ``n`` batches (what a SIGKILL mid-run leaves behind)."""

    def __init__(self, inner, n):
        self.inner, self.n = inner, n
        self.name, self.model_id, self.dim = inner.name, inner.model_id, inner.dim

    def encode(self, items, kind):
        if self.n == 0:
            raise Interrupt
        self.n -= 1
        return self.inner.encode(items, kind)


def test_an_interrupted_run_resumed_equals_an_uninterrupted_one(photo_folder, tmp_path):
    encoder = load_encoder("tiny")
    manifest = make_manifest("embed", {"model": "tiny", "model_id": encoder.model_id, "dim": encoder.dim})
    straight, broken = tmp_path / "straight.parquet", tmp_path / "broken.parquet"
    kw = dict(batch_size=2, manifest=manifest, flush_rows=2, quiet=True)
    embed_to_parquet(FolderInput(photo_folder, None), encoder, straight, **kw)
    with pytest.raises(Interrupt):
        embed_to_parquet(FolderInput(photo_folder, None), DiesAfter(encoder, 3), broken, **kw)
    assert not broken.exists() and len(list(parts_dir(broken).glob("part-*"))) == 3
    stats = embed_to_parquet(FolderInput(photo_folder, None), encoder, broken, resume=True, **kw)
    assert stats.skipped_done == 6
    a, b = rows_of(straight), rows_of(broken)
    assert [r["id"] for r in a] == [r["id"] for r in b]
    for x, y in zip(a, b):
        assert x["status"] == y["status"]
        if x["vector"] is not None:
            np.testing.assert_allclose(x["vector"], y["vector"], atol=1e-5)
    assert not parts_dir(broken).exists()


def test_catalogue_dim_and_shards(world_template, tmp_path):
    cat = world_template / "catalog.parquet"
    parts = []
    for i in range(2):
        out = tmp_path / f"s{i}.parquet"
        r = run_moon("embed", cat, "-m", "tiny", "-o", out, "--dim", 64, "--shard", f"{i}/2", "--quiet",
                     "--batch-size", 32)
        assert r.exit_code == 0, r.output
        parts.append(rows_of(out))
    ids = [row["id"] for p in parts for row in p]
    assert len(ids) == len(set(ids)) == pq.read_metadata(cat).num_rows
    assert parts[0] and parts[1]
    v = np.array(parts[0][0]["vector"])
    assert v.shape == (64,) and abs(np.linalg.norm(v) - 1) < 1e-5
    assert {"title", "category_path"} <= set(parts[0][0])  # catalogue columns pass through


def test_bad_model_and_bad_shard_are_one_line_errors(world_template, tmp_path):
    r = run_moon("embed", world_template / "catalog.parquet", "-m", tmp_path / "no-such-model", "-o",
                 tmp_path / "e.parquet")
    assert r.exit_code != 0 and "does not exist" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "e.parquet").exists()
    r = run_moon("embed", world_template / "catalog.parquet", "-m", "tiny", "-o", tmp_path / "e.parquet",
                 "--shard", "2/2")
    assert r.exit_code == 2


def test_two_writers_to_one_output_one_succeeds_the_other_is_refused(world, tmp_path):
    """Two `moon embed -o same.parquet` at once: the second is refused at once, the first writes every row."""
    import subprocess
    import sys
    import time

    from moon_cli.io import lock_path, output_lock

    import pyarrow as pa

    # a catalogue large enough that the first writer is still embedding when the second one starts
    base = pq.read_table(world / "catalog.parquet")
    copies = [base.set_column(0, "item_id", pa.array([f"{i}-{k}" for i in base.column("item_id").to_pylist()]))
              for k in range(4)]
    cat, out = world / "catalog_x4.parquet", tmp_path / "same.parquet"
    pq.write_table(pa.concat_tables(copies), cat)  # beside the photos its relative paths point to
    n_rows = pq.read_metadata(cat).num_rows
    cmd = [sys.executable, "-m", "moon_cli.cli", "embed", str(cat), "-m", "tiny", "-o", str(out), "-q",
           "--batch-size", "8", "--overwrite"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not lock_path(out).exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, "the first writer must still be running for this test to mean anything"
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert second.returncode == 1 and "another moon process is writing" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr and len(second.stderr.strip().splitlines()) == 1
    assert first.wait(timeout=300) == 0, first.stderr.read()
    assert sorted(r["id"] for r in rows_of(out)) == sorted(set(r["id"] for r in rows_of(out)))
    assert len(rows_of(out)) == n_rows and not parts_dir(out).exists() and not lock_path(out).exists()
    # the same rule for every table stage and for a run holding the lock in this process
    with output_lock(tmp_path / "held.parquet"):
        r = run_moon("embed", cat, "-m", "tiny", "-o", tmp_path / "held.parquet", "-q")
        assert r.exit_code == 1 and "another moon process is writing" in r.output
    assert not (tmp_path / "held.parquet").exists()


def test_resume_refuses_a_run_with_another_dim_kind_or_detections(world_template, tmp_path):
    cat, out = world_template / "catalog.parquet", tmp_path / "e.parquet"
    assert run_moon("embed", cat, "-m", "tiny", "-o", out, "--dim", 64, "-q", "--batch-size", 32).exit_code == 0
    before = out.read_bytes()
    r = run_moon("embed", cat, "-m", "tiny", "-o", out, "--dim", 128, "--resume", "-q")
    assert r.exit_code == 1 and "dim 64" in r.output and "128" in r.output and "Traceback" not in r.output
    assert out.read_bytes() == before  # nothing mixed in
    r = run_moon("embed", cat, "-m", "tiny", "-o", out, "--dim", 64, "--resume", "-q")
    assert r.exit_code == 0 and out.read_bytes() != b""
    assert {len(row["vector"]) for row in rows_of(out)} == {64}


def test_rows_with_a_null_id_are_counted_and_named_not_silently_dropped(world, tmp_path):
    import pyarrow as pa

    table = pq.read_table(world / "catalog.parquet").slice(0, 6)
    ids = table.column("item_id").to_pylist()
    ids[1] = ids[4] = None
    table = table.set_column(table.schema.get_field_index("item_id"), "item_id", pa.array(ids, pa.string()))
    pq.write_table(table, world / "c.parquet")  # beside the photos its paths point to
    r = run_moon("embed", world / "c.parquet", "-m", "tiny", "-o", tmp_path / "e.parquet", "-q")
    assert r.exit_code == 0, r.output
    assert "6 in" in r.output and "2 input row(s) with a null item_id (rows 1, 4)" in r.output
    assert len(rows_of(tmp_path / "e.parquet")) == 4


def test_stdout_output_piped_input_base_dir_and_every_row_failing(world_template, tmp_path):
    """`-o -` streams Arrow to stdout (no file named '-'); a catalogue piped on - resolves its photo paths
    against --base-dir; when every row fails the exit code says so."""
    import pyarrow as pa

    from conftest import moon_subprocess

    cat = world_template / "catalog.parquet"
    small = pq.read_table(cat).slice(0, 3)
    pq.write_table(small, tmp_path / "small.parquet")  # relative photo paths now point nowhere from tmp_path
    r = moon_subprocess(f"cd {tmp_path} && moon embed {cat} -m tiny -o - -q --batch-size 32", timeout=300)
    assert r.returncode == 0, r.stderr
    streamed = pa.ipc.open_stream(r.stdout).read_all()
    assert streamed.num_rows == pq.read_metadata(cat).num_rows and set(streamed.column("status").to_pylist()) == {"ok"}
    assert not (tmp_path / "-").exists() and b"wrote stdout" in r.stderr
    piped = f"cat {tmp_path / 'small.parquet'} | moon embed - -m tiny -o {tmp_path / 'e.parquet'} -q"
    r = moon_subprocess(f"cd {tmp_path} && {piped}", timeout=300)
    assert r.returncode == 1 and b"every row failed" in r.stderr and b"--base-dir" in r.stderr
    r = moon_subprocess(f"{piped} --overwrite --base-dir {world_template}", timeout=300)
    assert r.returncode == 0, r.stderr
    assert {row["status"] for row in rows_of(tmp_path / "e.parquet")} == {"ok"}


def test_a_product_table_without_photos_needs_text_only(world_template, tmp_path):
    pq.write_table(pq.read_table(world_template / "catalog.parquet").drop_columns(["image_paths"]).slice(0, 4),
                   tmp_path / "text.parquet")
    r = run_moon("embed", tmp_path / "text.parquet", "-m", "tiny", "-o", tmp_path / "e.parquet", "-q")
    assert r.exit_code == 1 and "image_paths" in r.output and "--text-only" in r.output
    assert not (tmp_path / "e.parquet").exists()
    r = run_moon("embed", tmp_path / "text.parquet", "-m", "tiny", "-o", tmp_path / "e.parquet", "-q", "--text-only")
    assert r.exit_code == 0 and len(rows_of(tmp_path / "e.parquet")) == 4
