"""`moon embed --ray`: the same encoders, run by a pool of Ray actors (one model load per actor, one GPU each
where the cluster has GPUs). Only the encoding moves; reading the input, resuming, the parts and the output are
the local path's (``embed/run.py``), so the file is the one a single process writes.

Photos are read by the workers: on a cluster, the catalogue's paths must resolve on every node (shared storage).
"""

from __future__ import annotations

from functools import partial
from typing import Iterable, Iterator

import torch

from moon_cli.embed.encoders import Encoded, Encoder, load_encoder
from moon_cli.ray_pool import RayPool, cluster_gpus, default_workers


class EmbedJob:
    """What one Ray actor holds: an encoder, loaded once."""

    def __init__(self, model_name: str, device: str | None):
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.encoder = load_encoder(model_name, device)

    def info(self) -> dict:
        e = self.encoder
        return {"model_id": e.model_id, "dim": e.dim, "modalities": tuple(e.modalities)}

    def __call__(self, task: tuple[list[dict], str]) -> Encoded:
        items, kind = task
        return self.encoder.encode(items, kind)


class RayEncoder(Encoder):
    def __init__(self, model_name: str, *, num_workers: int | None = None, device: str | None = None,
                 cpus_per_worker: float = 1, max_retries: int = 3, job: type = EmbedJob):
        gpus = cluster_gpus()
        num_workers = num_workers or default_workers(cpus_per_worker)
        self.pool = RayPool(partial(job, model_name, device), num_workers, cpus_per_worker=cpus_per_worker,
                            gpus_per_worker=1 if gpus and device != "cpu" else 0, max_retries=max_retries)
        info = self.pool.info()  # a model that cannot load fails here, with its own message
        self.name, self.model_id, self.dim = model_name, info["model_id"], info["dim"]
        self.modalities = info["modalities"]
        self.num_workers = num_workers

    def encode_batches(self, batches: Iterable[list], kind: str) -> Iterator[tuple[list, Encoded]]:
        def failed(rows: list, message: str) -> Encoded:
            return Encoded(torch.zeros((0, self.dim)), [], {i: message for i in range(len(rows))})

        yield from self.pool.map(batches, lambda rows: ([it.item for it in rows], kind), failed)

    def close(self) -> None:
        self.pool.close()
