"""The real-photo bench (benchmarks/real_photos.py) and untrained mini on it (slow: downloads two Debian packages
once, then ~8 min on 2 cores). Run with `pytest -m slow tests/test_real_photos.py`; MOON_REAL_DEBS keeps the
.deb files between runs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    import real_photos

    out = tmp_path_factory.mktemp("real") / "bench"
    debs = Path(os.environ.get("MOON_REAL_DEBS") or tmp_path_factory.mktemp("debs"))
    real_photos.build(out, debs)
    return out


def test_bench_has_300_described_photos_that_open(bench):
    photos = pq.read_table(bench / "photos.parquet").to_pylist()
    assert len(photos) >= 300
    descriptions = [p["description"].lower() for p in photos]
    assert len(set(descriptions)) == len(descriptions)  # one relevant photo per query
    assert all(p["description"].strip() for p in photos)
    for p in photos[::25]:
        with Image.open(bench / p["path"]) as img:
            assert min(img.size) > 16


def test_untrained_mini_beats_the_conse_reference_and_reads_photos_like_lite0(bench):
    from bench_real import measure

    results = measure(bench, ["mini", "conse", "efficientnet-lite0"], "cpu")
    mini, conse, lite0 = results["mini"], results["conse"], results["efficientnet-lite0"]
    for task in ("text-to-photo", "photo-to-text"):
        assert mini[task]["recall@10"] >= conse[task]["recall@10"] > 3 * conse[task]["chance@10"], task
        assert lite0[task] is None  # photos only: n/a where the task needs text
    assert mini["photo-to-photo"]["recall@10"] >= lite0["photo-to-photo"]["recall@10"] - 0.01
