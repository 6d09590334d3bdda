"""Benchmark: `moon serve` under load beside the same work in-process, in one run.

200 text and 200 image queries of a synthetic world (the bench's own queries, cycled), k 10:
- in-process: batch-1 query encoding (SearchEngine.embed) + index search (Searcher.search), one query at a time;
- the service: `moon serve` started as its own process, one client sending the queries one after another,
  then 8 concurrent clients.
Reports p50 / p95 latency and queries/s per path, and the goal: service p50 ≤ 1.3× in-process p50.

    python benchmarks/bench_service.py WORLD_DIR INDEX_DIR [-m MODEL] [--queries 200]
"""

import argparse
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq


def queries(world: Path, task: str, n: int) -> list[dict]:
    rows = pq.read_table(world / "bench" / f"{task}_queries.parquet").to_pylist()
    out = []
    for i in range(n):
        row = rows[i % len(rows)]
        image = (world / "bench" / row["query_image"]).read_bytes() if row.get("query_image") else None
        out.append({"text": row.get("query_text"), "image": image})
    return out


def summary(latencies_s: list[float], wall_s: float) -> tuple[float, float, float]:
    ms = np.array(latencies_s) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95)), len(ms) / wall_s


def in_process(index_dir: Path, model: str, batch: list[dict]) -> tuple[float, float, float]:
    from moon_cli.serve.engine import SearchEngine

    engine = SearchEngine(index_dir, model, memory="auto")
    for q in batch[:3]:  # warm-up
        engine.searcher.search(engine.embed([{"id": "q", **q}])[0], 10)
    latencies = []
    t0 = time.perf_counter()
    for q in batch:
        s = time.perf_counter()
        vectors, _ = engine.embed([{"id": "q", **q}])
        engine.searcher.search(vectors, 10)
        latencies.append(time.perf_counter() - s)
    return summary(latencies, time.perf_counter() - t0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(client, q: dict):
    if q["image"] is not None:
        data = {"k": "10", **({"text": q["text"]} if q["text"] else {})}
        return client.post("/search", data=data, files={"image": ("q.jpg", q["image"], "image/jpeg")})
    return client.post("/search", json={"text": q["text"], "k": 10})


def through_service(url: str, batch: list[dict], clients: int) -> tuple[float, float, float]:
    import httpx

    def run(part: list[dict]) -> list[float]:
        out = []
        with httpx.Client(base_url=url, timeout=300) as client:
            request(client, part[0])  # connect + warm-up, not timed
            for q in part:
                s = time.perf_counter()
                r = request(client, q)
                out.append(time.perf_counter() - s)
                assert r.status_code == 200, r.text
        return out

    parts = [batch[i::clients] for i in range(clients)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = [x for part in pool.map(run, parts) for x in part]
    return summary(latencies, time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("world", type=Path)
    ap.add_argument("index", type=Path)
    ap.add_argument("-m", "--model", default="tiny")
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    import httpx

    work = {"text": queries(args.world, "text", args.queries), "image": queries(args.world, "image", args.queries)}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "moon_cli.cli", "serve", str(args.index), "-m", args.model,
                               "--port", str(port), "--memory", "auto"], stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        info = httpx.get(f"{url}/info").json()
        rows = []
        for kind, batch in work.items():
            base = in_process(args.index, args.model, batch)
            one = through_service(url, batch, 1)
            eight = through_service(url, batch, 8)
            rows.append((kind, base, one, eight))
    finally:
        server.terminate()
        server.wait(timeout=30)

    print(f"\n`moon serve` vs in-process: {args.queries} text and {args.queries} image queries, k 10, model "
          f"{info['model']}, {info['rows']:,} products, {info['search']}; os.cpu_count() = {os.cpu_count()}\n")
    print("| queries | path | p50 ms | p95 ms | queries/s |")
    print("|---|---|---|---|---|")
    for kind, base, one, eight in rows:
        for name, (p50, p95, qps) in (("in-process (embed + search, batch 1)", base), ("service, 1 client", one),
                                      ("service, 8 concurrent clients", eight)):
            print(f"| {kind} | {name} | {p50:.1f} | {p95:.1f} | {qps:.1f} |")
    print()
    for kind, base, one, _ in rows:
        print(f"- {kind}: service p50 / in-process p50 = {one[0] / base[0]:.2f}× (goal ≤ 1.3×)")


if __name__ == "__main__":
    main()
