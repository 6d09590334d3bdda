"""Fan batches out to a pool of Ray actors that each load their model once (`--ray` on `moon embed` and
`moon detect`); results come back in submission order, so the output is the same file a single process writes.

Failures are handled here rather than by Ray Data's actor pool: with its defaults (``max_restarts=-1``) a row
that kills its worker is retried forever, and with a finite budget the pool stalled once the actor was out of
restarts (measured on Ray 2.60: no progress for 5 minutes). So:

- a worker that dies (killed, out of memory, a segfault in a decoder) is replaced and its batch resubmitted;
- a batch that has killed ``max_retries`` workers is split in halves until the row that does it is alone, and
  that row is given to the caller's ``on_failure`` (a per-row error), the rest completes;
- an exception raised *inside* a worker (a model that cannot load, a bug) is not retried: it ends the run with
  its one-line message, as the local path would.

Ray is an optional dependency (``pip install 'moon-cli[ray]'``); nothing here imports it at module level.
"""

from __future__ import annotations

import os
import socket
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from moon_cli.errors import MoonError

RAY_EXTRA = "pip install 'moon-cli[ray]'"
LOCAL = "local"  # `--ray` without an address: start a Ray instance on this machine


def _ray():
    try:
        import ray
    except ImportError:
        raise MoonError(f"--ray needs Ray, which is not installed: {RAY_EXTRA}") from None
    return ray


def _reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after Ray's own minute-long retries, when nothing listens at ``address``."""
    host_port = address.split("://", 1)[-1].rstrip("/")
    host, _, port = host_port.rpartition(":")
    if not host:
        host, port = host_port, "6379"  # Ray's default GCS port
    if not port.isdigit():
        raise MoonError(f"--ray {address}: not a Ray address; give HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise MoonError(f"--ray {address}: cannot reach a Ray cluster there ({exc.strerror or exc}); start one with "
                        f"`ray start --head` or pass --ray alone for a local one") from None


def connect(address: str, num_cpus: int | None = None) -> None:
    """Join the cluster at ``address`` ('auto', HOST:PORT, ray://HOST:PORT) or start a local one (LOCAL)."""
    ray = _ray()
    if ray.is_initialized():
        return
    import logging

    quiet = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    if address == LOCAL:
        ray.init(num_cpus=num_cpus or os.cpu_count(), **quiet)
        return
    if address != "auto":
        _reachable(address)
    try:
        ray.init(address=address, **{k: v for k, v in quiet.items() if k != "include_dashboard"})
    except ConnectionError as exc:
        raise MoonError(f"--ray {address}: {str(exc).splitlines()[0]}") from None


def cluster_gpus() -> int:
    return int(_ray().cluster_resources().get("GPU", 0))


def default_workers(cpus_per_worker: float) -> int:
    """One worker per GPU in the cluster; on a CPU-only cluster, as many as its cores allow."""
    res = _ray().cluster_resources()
    return int(res.get("GPU", 0)) or max(1, int(res.get("CPU", 1) // cpus_per_worker))


class _Worker:
    """One actor: builds its job once (a model load), then runs batches through it. Exceptions in the build are
    kept and re-raised by every call, so a model that cannot load ends the run with its message."""

    def __init__(self, make: Callable, threads: int):
        import torch

        torch.set_num_threads(max(1, threads))
        try:
            self.job, self.error = make(), None
        except Exception as exc:  # noqa: BLE001 - handed back to the driver, which decides
            self.job, self.error = None, exc

    def info(self):
        if self.error is not None:
            raise self.error
        return getattr(self.job, "info", lambda: None)()

    def run(self, batch):
        if self.error is not None:
            raise self.error
        return self.job(batch)


@dataclass
class _Chunk:
    start: int  # position of its first row in the whole stream: results are yielded in this order
    rows: list
    tries: int = 0


class RayPool:
    """``num_workers`` actors, each running ``make()`` once; ``map`` streams batches through them."""

    def __init__(self, make: Callable, num_workers: int, *, cpus_per_worker: float = 1, gpus_per_worker: float = 0,
                 max_retries: int = 3):
        ray = _ray()
        self._ray = ray
        have = ray.cluster_resources()
        for what, each, option in (("CPU", cpus_per_worker, "--cpus-per-worker"), ("GPU", gpus_per_worker, "GPUs")):
            if each and num_workers * each > have.get(what, 0):  # a worker that cannot be placed would wait forever
                raise MoonError(f"--num-workers {num_workers} × {each:g} {what} ({option}) needs "
                                f"{num_workers * each:g} "
                                f"{what}s; the Ray cluster has {have.get(what, 0):g}: ask for fewer workers")
        self._actor_cls = ray.remote(_Worker).options(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker,
                                                      max_restarts=0, max_task_retries=0)
        self._make, self._threads = make, max(1, int(cpus_per_worker))
        self.max_retries = max_retries
        self.workers_lost = 0
        self._actors = [self._new_actor() for _ in range(num_workers)]

    def _new_actor(self):
        return self._actor_cls.remote(self._make, self._threads)

    def info(self):
        """What the job reports about itself (e.g. the model's id and dimension), from the first worker; a job
        that failed to build raises its own error here."""
        return self._call(self._actors[0].info.remote())

    def _call(self, ref):
        try:
            return self._ray.get(ref)
        except self._ray.exceptions.RayTaskError as exc:
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            if isinstance(cause, MoonError):
                raise MoonError(cause.message) from None
            first = (str(cause).strip().splitlines() or [type(cause).__name__])[-1]
            raise MoonError(f"a Ray worker failed: {type(cause).__name__}: {first[:300]}") from None

    def map(self, batches: Iterable[list], to_task: Callable[[list], object],
            on_failure: Callable[[list, str], object]) -> Iterator[tuple[list, object]]:
        """Yield ``(batch, result)`` in input order. ``to_task`` turns a batch into what a worker receives;
        ``on_failure(rows, message)`` stands in for the result of rows that kept killing workers."""
        ray = self._ray
        source = iter(batches)
        todo: deque[_Chunk] = deque()
        in_flight: dict = {}  # ref → (chunk, actor index)
        finished: dict[int, tuple[list, object]] = {}
        idle = list(range(len(self._actors)))
        offset, next_out, exhausted = 0, 0, False
        window = 2 * len(self._actors)  # results held for ordering + batches in flight stay bounded

        while True:
            while idle:  # retries first; new batches only while the window has room
                if not todo:
                    if exhausted or len(in_flight) + len(finished) >= window:
                        break
                    rows = next(source, None)
                    if rows is None:
                        exhausted = True
                        break
                    todo.append(_Chunk(offset, list(rows)))
                    offset += len(rows)
                chunk, a = todo.popleft(), idle.pop()
                in_flight[self._actors[a].run.remote(to_task(chunk.rows))] = (chunk, a)
            while next_out in finished:
                rows, result = finished.pop(next_out)
                next_out += len(rows)
                yield rows, result
            if not in_flight:
                if exhausted and not todo:
                    return
                continue
            [ref], _ = ray.wait(list(in_flight), num_returns=1)
            chunk, a = in_flight.pop(ref)
            try:
                finished[chunk.start] = (chunk.rows, self._call(ref))
            except ray.exceptions.RayActorError:  # the worker process died: replace it, retry or isolate the rows
                self.workers_lost += 1
                self._actors[a] = self._new_actor()
                chunk.tries += 1
                if chunk.tries < self.max_retries:
                    todo.appendleft(chunk)
                elif len(chunk.rows) > 1:  # halves get one try each before splitting again
                    half, tries = len(chunk.rows) // 2, self.max_retries - 1
                    todo.extendleft([_Chunk(chunk.start + half, chunk.rows[half:], tries),
                                     _Chunk(chunk.start, chunk.rows[:half], tries)])
                else:
                    finished[chunk.start] = (chunk.rows, on_failure(
                        chunk.rows, f"the worker died {chunk.tries} times on this row (out of memory, or a crash "
                                    f"in a decoder?); the other rows went on"))
            idle.append(a)

    def close(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors = []
