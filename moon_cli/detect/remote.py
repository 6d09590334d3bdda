"""`moon detect --ray`: the detector run by a pool of Ray actors (loaded once per actor); the output is the
table a single process writes, in the same order. Crops are written by the workers into the crops directory,
so on a cluster it must be shared storage, like the photos."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa

from moon_cli.detect.predict import _detect, batched, failed_table, load_detector
from moon_cli.ray_pool import RayPool, default_workers


class DetectJob:
    """What one Ray actor holds: the detector, loaded once."""

    def __init__(self, weights: str, crops_dir: str, conf: float):
        self.detector, self.imgsz = load_detector(Path(weights))
        self.crops_dir, self.conf = Path(crops_dir), conf

    def info(self) -> dict:
        return {"imgsz": self.imgsz}

    def __call__(self, paths: list[str]) -> pa.Table:
        return _detect(paths, self.detector, self.imgsz, self.crops_dir, self.conf)


class RayDetector:
    def __init__(self, weights: Path, crops_dir: Path, conf: float, *, num_workers: int | None = None,
                 cpus_per_worker: float = 1, max_retries: int = 3, job: type = DetectJob):
        crops_dir.mkdir(parents=True, exist_ok=True)
        num_workers = num_workers or default_workers(cpus_per_worker)  # detection runs on the workers' CPUs
        self.pool = RayPool(partial(job, str(weights), str(crops_dir), conf), num_workers,
                            cpus_per_worker=cpus_per_worker, max_retries=max_retries)
        self.imgsz = self.pool.info()["imgsz"]  # weights that cannot load fail here, with their own message
        self.num_workers = num_workers

    def detect_batches(self, paths: Iterable[str], batch_size: int) -> Iterator[pa.Table]:
        for _, table in self.pool.map(batched(paths, batch_size), lambda rows: rows, failed_table):
            yield table

    def close(self) -> None:
        self.pool.close()
