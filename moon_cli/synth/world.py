"""Build a whole synthetic world on disk: catalogue, images, boxes, behaviour log and bench.

Layout of OUT_DIR (paths inside tables are relative to the table's directory):

    catalog.parquet   behavior.parquet   boxes.parquet   world.json
    images/           product photos (several per product)
    queries/          photos used as image queries in the behaviour log
    bench/            held-out evaluation tasks, see bench/README.md
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import time
from pathlib import Path

import pyarrow as pa

from moon_cli.contracts import BEHAVIOR, BOXES, CATALOG
from moon_cli.io import make_manifest, write_table
from moon_cli.synth import bench as bench_mod
from moon_cli.synth.behavior import Catalogue, simulate
from moon_cli.synth.photos import Photo, listing_photos, photo_of
from moon_cli.synth.products import make_products, make_title, sub_seed
from moon_cli.synth.render import RenderSpec, render
from moon_cli.synth.taxonomy import leaves
from moon_cli.progress import progress as progress_bar


def _render_one(spec: RenderSpec):
    return render(spec)


def render_all(photos: list[Photo], workers: int, progress: bool) -> list[tuple[float, ...]]:
    specs = [ph.spec for ph in photos]
    bar = progress_bar(total=len(specs), desc="render", unit="img", quiet=not progress, leave=False)
    boxes: list[tuple[float, ...]] = []
    if workers <= 1 or len(specs) < 200:
        for spec in specs:
            boxes.append(render(spec))
            bar.update()
    else:
        ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
        with ctx.Pool(workers) as pool:
            for box in pool.imap(_render_one, specs, chunksize=64):
                boxes.append(box)
                bar.update()
    bar.close()
    return boxes


def build_world(out: Path, n_products: int, seed: int, image_size: int = 128, workers: int | None = None,
                progress: bool = True) -> dict:
    """Generate every table and image of a world into the (empty) directory ``out``; return a summary."""
    t0 = time.perf_counter()
    for sub in ("images", "queries", "bench/images"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    leaf_list = leaves()
    products = make_products(n_products, leaf_list, random.Random(sub_seed(seed, "products")))

    # catalogue: one listing per product
    cat_rng = random.Random(sub_seed(seed, "catalog"))
    photos: list[Photo] = []
    catalog = {k: [] for k in ("item_id", "title", "category_path", "attributes", "image_paths", "family_id")}
    for p in products:
        shots = listing_photos(p, out / "images", p.item_id, seed, image_size, "catalog", cat_rng)
        photos += shots
        catalog["item_id"].append(p.item_id)
        catalog["title"].append(make_title(p, cat_rng))
        catalog["category_path"].append(list(p.leaf.path))
        catalog["attributes"].append(p.attributes())
        catalog["image_paths"].append([ph.spec.path for ph in shots])
        catalog["family_id"].append(p.family)

    # behaviour log (and its query photos)
    cat_index = Catalogue(products)
    log = simulate(cat_index, n_users=max(10, n_products // 4), n_sessions=3 * n_products,
                   rng=random.Random(sub_seed(seed, "behavior")), photo_dir=str(out / "queries"), seed=seed)
    photos += [photo_of(q.product, Path(q.path), q.seed, "query", image_size, "query") for q in log.photos]

    # bench: later days, unseen queries and listings
    bench = bench_mod.make_bench(cat_index, out / "bench", seed, image_size,
                                 n_per_task=max(50, min(1000, n_products // 5)))
    photos += bench.photos

    boxes = render_all(photos, workers or os.cpu_count() or 1, progress)

    def manifest(table: str) -> dict:
        return make_manifest("synth", {"products": n_products, "image_size": image_size, "table": table}, seed)
    n_catalog = write_table(pa.table(catalog, schema=CATALOG.schema.append(pa.field("family_id", pa.int64()))),
                            out / "catalog.parquet", contract=CATALOG, manifest=manifest("catalog"))
    n_behavior = write_table(pa.table(log.rows, schema=BEHAVIOR.schema), out / "behavior.parquet", contract=BEHAVIOR,
                             manifest=manifest("behavior"))
    boxes_table = pa.table({
        "image_path": [ph.spec.path for ph in photos],
        "bbox": pa.array([list(b) for b in boxes], BOXES.field("bbox").type),
        "source": [ph.source for ph in photos],
        "item_id": [ph.item_id for ph in photos],
        "width": pa.array([image_size] * len(photos), pa.int32()),
        "height": pa.array([image_size] * len(photos), pa.int32()),
    })
    n_boxes = write_table(boxes_table, out / "boxes.parquet", contract=BOXES, manifest=manifest("boxes"))
    bench_counts = bench_mod.write_bench(bench, out / "bench", manifest)

    events = {}
    for e in log.rows["event"]:
        events[e] = events.get(e, 0) + 1
    elapsed = time.perf_counter() - t0
    summary = {
        "seed": seed,
        "products": n_catalog,
        "families": len({p.family for p in products}),
        "leaf_categories": len({p.leaf.index for p in products}),
        "images": len(photos),
        "behavior_rows": n_behavior,
        "events": events,
        "sessions": len(set(log.rows["session_id"])),
        "users": len(set(log.rows["user_id"])),
        "boxes": n_boxes,
        "bench": bench_counts,
        "seconds": round(elapsed, 2),
        "products_per_second": round(n_catalog / elapsed, 1),
    }
    (out / "world.json").write_text(json.dumps({k: v for k,
                                                v in summary.items() if k not in ("seconds", "products_per_second")},
                                               indent=2, sort_keys=True) + "\n")
    return summary
