"""`--ray` on `moon embed` and `moon detect`: a local Ray cluster (2 CPUs) gives the file one process writes,
and survives workers that die."""

import os
import re
import sys
import time
from functools import partial

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray

from conftest import moon_subprocess, run_moon
from moon_cli.embed.encoders import load_encoder
from moon_cli.embed.inputs import TableInput
from moon_cli.embed.remote import EmbedJob, RayEncoder
from moon_cli.embed.run import embed_to_parquet
from moon_cli.io import make_manifest, read_table, resolve_paths
from moon_cli.ray_pool import LOCAL, connect

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers unpickle this module's jobs


@pytest.fixture(scope="module")
def local_ray():
    connect(LOCAL, num_cpus=2)
    yield
    ray.shutdown()


class DiesOnceOn(EmbedJob):
    """Kills its own process the first time it meets item ``victim`` (a marker file remembers)."""

    def __init__(self, model_name, device, victim, marker):
        super().__init__(model_name, device)
        self.victim, self.marker = victim, marker

    def __call__(self, task):
        if any(it["item_id"] == self.victim for it in task[0]) and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)
        return super().__call__(task)


class AlwaysDiesOn(EmbedJob):
    def __init__(self, model_name, device, victim):
        super().__init__(model_name, device)
        self.victim = victim

    def __call__(self, task):
        if any(it["item_id"] == self.victim for it in task[0]):
            os._exit(1)
        return super().__call__(task)


def _embed(world, out, encoder):
    """The first 40 products of the small world, embedded through the library (the stage's own calls)."""
    art = read_table(world / "catalog.parquet")
    table = resolve_paths(art.table.slice(0, 40), ["image_paths"], art.base_dir, art.source)
    source = TableInput(table, art.source, None, None)
    manifest = make_manifest("embed", {"model_id": encoder.model_id, "dim": encoder.dim, "kind": "product"}, inputs=[])
    return embed_to_parquet(source, encoder, out, batch_size=8, manifest=manifest, flush_rows=16, quiet=True)


def _rows(path):
    t = pq.read_table(path)
    return t.column("id").to_pylist(), t.column("status").to_pylist(), t.column("vector").to_pylist()


def test_embed_on_ray_equals_one_process(world_template, local_ray, tmp_path):
    one, many = tmp_path / "one.parquet", tmp_path / "ray.parquet"
    assert run_moon("embed", world_template / "catalog.parquet", "-m", "tiny", "-o", one, "-q").exit_code == 0
    r = run_moon("embed", world_template / "catalog.parquet", "-m", "tiny", "-o", many, "-q", "--ray",
                 "--num-workers", 2, "--batch-size", 8)
    assert r.exit_code == 0, r.output
    assert re.search(r"ray +2 worker\(s\)", r.output)
    ids, status, vecs = _rows(one)
    ids_r, status_r, vecs_r = _rows(many)
    assert ids_r == ids and status_r == status and len(ids) == 120  # same rows, same order
    np.testing.assert_allclose(np.array(vecs_r), np.array(vecs), atol=1e-5)


@pytest.mark.scale
def test_a_killed_worker_is_replaced_and_no_row_is_lost_or_duplicated(world_template, local_ray, tmp_path):
    expected = _rows_of_one_process(world_template, tmp_path)
    victim = expected[0][21]
    enc = RayEncoder("tiny", num_workers=2, job=partial(DiesOnceOn, victim=victim, marker=str(tmp_path / "died")))
    try:
        _embed(world_template, tmp_path / "out.parquet", enc)
        assert enc.pool.workers_lost == 1
    finally:
        enc.close()
    ids, status, vecs = _rows(tmp_path / "out.parquet")
    assert (tmp_path / "died").exists()
    assert ids == expected[0] and len(set(ids)) == len(ids) == 40 and set(status) == {"ok"}
    np.testing.assert_allclose(np.array(vecs), np.array(expected[2]), atol=1e-5)


@pytest.mark.scale
def test_a_row_that_kills_every_worker_gets_status_error_and_the_rest_completes(world_template, local_ray, tmp_path):
    expected = _rows_of_one_process(world_template, tmp_path)
    victim = expected[0][5]
    enc = RayEncoder("tiny", num_workers=2, max_retries=2, job=partial(AlwaysDiesOn, victim=victim))
    try:
        stats = _embed(world_template, tmp_path / "out.parquet", enc)
    finally:
        enc.close()
    ids, status, vecs = _rows(tmp_path / "out.parquet")
    assert ids == expected[0]
    assert [i for i, s in zip(ids, status) if s != "ok"] == [victim] and stats.errors == 1
    error = pq.read_table(tmp_path / "out.parquet").column("error").to_pylist()[5]
    assert "worker died" in error
    ok = [i for i, s in enumerate(status) if s == "ok"]
    np.testing.assert_allclose(np.array([vecs[i] for i in ok]), np.array([expected[2][i] for i in ok]), atol=1e-5)


def _rows_of_one_process(world, tmp_path):
    out = tmp_path / "local.parquet"
    _embed(world, out, load_encoder("tiny", "cpu"))
    return _rows(out)


def test_a_model_that_cannot_load_on_the_workers_is_one_line(world_template, local_ray, tmp_path):
    out = tmp_path / "e.parquet"
    r = run_moon("embed", world_template / "catalog.parquet", "-m", tmp_path / "nowhere", "-o", out, "--ray")
    assert r.exit_code == 1 and "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    assert "nowhere" in r.output and not out.exists()


@pytest.mark.scale
def test_detect_on_ray_equals_one_process(world_template, local_ray, tmp_path, detector):
    one, many = tmp_path / "one" / "d.parquet", tmp_path / "ray" / "d.parquet"
    assert run_moon("detect", world_template / "catalog.parquet", "--detector", detector, "-o", one,
                    "-q").exit_code == 0
    r = run_moon("detect", world_template / "catalog.parquet", "--detector", detector, "-o", many, "-q",
                 "--ray", "--num-workers", 2, "--batch-size", 16)
    assert r.exit_code == 0, r.output
    a, b = pq.read_table(one), pq.read_table(many)
    assert a.column("image_path").to_pylist() == b.column("image_path").to_pylist()
    assert a.column("status").to_pylist() == b.column("status").to_pylist()
    assert [p and os.path.basename(p) for p in a.column("crop_path").to_pylist()] == \
           [p and os.path.basename(p) for p in b.column("crop_path").to_pylist()]
    np.testing.assert_allclose(np.array(a.column("score").to_pylist(), float),
                               np.array(b.column("score").to_pylist(), float), atol=1e-5)


def test_more_workers_than_the_cluster_can_place_is_refused_not_a_hang(world_template, local_ray, tmp_path):
    out, cpus = tmp_path / "e.parquet", int(ray.cluster_resources()["CPU"])  # the Ray this process joined
    r = run_moon("embed", world_template / "catalog.parquet", "-m", "tiny", "-o", out, "--ray",
                 "--num-workers", cpus + 1)
    assert r.exit_code == 1 and f"needs {cpus + 1} CPUs; the Ray cluster has {cpus}" in r.output and not out.exists()


def test_without_ray_installed_it_is_one_line_naming_the_extra(world_template, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    out = tmp_path / "e.parquet"
    r = run_moon("embed", world_template / "catalog.parquet", "-m", "tiny", "-o", out, "--ray")
    assert r.exit_code == 1 and "moon-cli[ray]" in r.output and len(r.output.strip().splitlines()) == 1
    assert not out.exists()


def test_an_unreachable_ray_address_fails_in_seconds(world_template, tmp_path):
    out = tmp_path / "e.parquet"
    t0 = time.perf_counter()
    r = moon_subprocess(f"moon embed {world_template / 'catalog.parquet'} -m tiny -o {out} --ray 127.0.0.1:9")
    took = time.perf_counter() - t0
    assert r.returncode == 1 and b"cannot reach a Ray cluster" in r.stderr and b"Traceback" not in r.stderr
    assert took < 60 and not out.exists()  # the model load and imports, not Ray's minute of retries
