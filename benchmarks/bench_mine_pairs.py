"""Benchmark: `moon mine-pairs` on a generated 10-million-event log, beside a bare polars scan of the
same file and a straightforward pandas implementation (each in its own process, for peak memory).

    python benchmarks/bench_mine_pairs.py [--events 10000000] [--dir runs/bench-mine]   (needs pandas)
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def generate(path: Path, n_events: int, seed: int = 0) -> None:
    """A behaviour log: sessions of 10 events; 35 % text, 35 % image, 15 % both, 15 % no query."""
    rng = np.random.default_rng(seed)
    n_sessions = n_events // 10
    n_items, n_texts, n_images = 200_000, 50_000, 300_000
    session = np.arange(n_events) // 10
    kind = rng.choice(4, size=n_sessions, p=[0.35, 0.35, 0.15, 0.15])[session]
    text_idx = rng.integers(0, n_texts, n_sessions)[session]
    image_idx = rng.integers(0, n_images, n_sessions)[session]
    event = rng.choice(4, size=n_events, p=[0.80, 0.12, 0.03, 0.05])

    def strings(prefix, indices, n, valid=None):
        dictionary = pa.array([f"{prefix}{i}" for i in range(n)])
        arr = pa.DictionaryArray.from_arrays(pa.array(indices.astype(np.int32), mask=None if valid is None else ~valid),
                                             dictionary)
        return arr.cast(pa.string())

    table = pa.table({
        "user_id": strings("u", rng.integers(0, 100_000, n_sessions)[session], 100_000),
        "session_id": strings("s", session, n_sessions),
        "ts": pa.array((1_709_251_200_000_000 + session * 9_000_000 + np.arange(n_events) % 10 * 30_000_000)
                       .astype("datetime64[us]")),
        "query_text": strings("query words ", text_idx, n_texts, valid=np.isin(kind, (0, 2))),
        "query_image": strings("queries/q", image_idx, n_images, valid=np.isin(kind, (1, 2))),
        "item_id": strings("p", rng.integers(0, n_items, n_events), n_items),
        "event": pa.DictionaryArray.from_arrays(pa.array(event.astype(np.int32)),
                                                pa.array(["impression", "click", "cart",
                                                          "purchase"])).cast(pa.string()),
    })
    pq.write_table(table, path, row_group_size=1_000_000)


MOON = """
table, stats = mine_pairs([Path(PATH)], max_per_user=0, max_per_query=0)
print(table.num_rows)
"""

SCAN = """
df = pl.scan_parquet(PATH).select(pl.all().null_count()).collect(engine="streaming")
print(df.height)
"""

PANDAS = """
df = pd.read_parquet(PATH)
df = df.sort_values(["session_id", "ts"])
has_query = df["query_text"].notna() | df["query_image"].notna()
key = (df["query_text"].fillna("\\x00") + "\\x01" + df["query_image"].fillna("\\x00")).where(has_query)
df["query"] = key.groupby(df["session_id"]).ffill()
pos = df[(df["event"] == "purchase") & df["query"].notna()]
pairs = pos.groupby(["query", "item_id"]).agg(count=("session_id", "nunique"), first_ts=("ts", "min")).reset_index()
print(len(pairs))
"""


def run(code: str, path: Path) -> dict:
    # imports happen before the clock starts, for every implementation alike
    imports = ("from pathlib import Path\nimport polars as pl\nimport pandas as pd\n"
               "from moon_cli.data.pairs import mine_pairs\n")
    wrapper = (f"PATH = {str(path)!r}\nimport time, resource\n{imports}t0 = time.perf_counter()\n{code}\n"
               "print('SECONDS', time.perf_counter() - t0)\n"
               "print('PEAK_MB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n")
    out = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, check=True).stdout.split("\n")
    values = {line.split()[0]: float(line.split()[1]) for line in out if line.startswith(("SECONDS", "PEAK_MB"))}
    return {"rows": out[0].strip(), "seconds": values["SECONDS"], "peak_mb": values["PEAK_MB"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--dir", default="runs/bench-mine")
    args = ap.parse_args()
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"behavior_{args.events}.parquet"
    if not path.exists():
        t0 = time.perf_counter()
        generate(path, args.events)
        print(f"generated {args.events:,} events in {time.perf_counter() - t0:.1f} s "
              f"({path.stat().st_size / 1e6:.0f} MB)")
    results = {name: run(code, path) for name, code in (("moon mine-pairs", MOON), ("bare polars scan", SCAN),
                                                         ("pandas", PANDAS))}
    print("| implementation | output rows | seconds | peak RSS (MB) |\n|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['rows']} | {r['seconds']:.1f} | {r['peak_mb']:.0f} |")
    m, s, p = results["moon mine-pairs"], results["bare polars scan"], results["pandas"]
    print(f"moon / scan time: {m['seconds'] / s['seconds']:.2f}x (target <= 2x); pandas / moon time: "
          f"{p['seconds'] / m['seconds']:.1f}x (target >= 5x); moon peak {m['peak_mb']:.0f} MB (target <= 2048)")
    (d / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
