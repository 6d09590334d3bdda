"""The held-out bench in the spirit of MOON's MBE benchmark (see BENCH_README for the file formats).

Queries come from after the behaviour log's time span and are freshly generated: new photos (other
backgrounds, positions, scales, distractors), newly phrased text queries, and new listings of
gallery products by other sellers (new titles and photos).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from moon_cli.contracts import LABELED_PRODUCTS, PRODUCT_QUERIES, QUERIES, Contract
from moon_cli.io import write_table
from moon_cli.synth.behavior import Catalogue
from moon_cli.synth.photos import listing_photos, photo_of
from moon_cli.synth.products import make_modifier, make_text_query, make_title, sub_seed
from moon_cli.synth.taxonomy import ATTRIBUTE_TYPES, attribute_values, category_names

TASKS: dict[str, tuple[str, Contract]] = {  # task -> (file, contract)
    "image_to_product": ("image_queries.parquet", QUERIES),
    "text_to_product": ("text_queries.parquet", QUERIES),
    "multimodal_to_product": ("multimodal_queries.parquet", QUERIES),
    "product_to_product": ("product_queries.parquet", PRODUCT_QUERIES),
    "classification": ("classification.parquet", LABELED_PRODUCTS),
    "attributes": ("attributes.parquet", LABELED_PRODUCTS),
}

BENCH_README = """\
# Bench (MBE-style evaluation tasks)

Written by `moon synth`; read by `moon evaluate`. Paths inside tables are relative to this directory.
A user's own bench uses the same files; a missing task file skips that task.

| file | task | columns |
|---|---|---|
| `bench.json` | index | `gallery`: the catalogue Parquet that retrieval searches (relative path) |
| `image_queries.parquet` | image query -> product | `query_id`, `query_image`, `query_text` (null), `item_id` (target) |
| `text_queries.parquet` | text query -> product | `query_id`, `query_text`, `query_image` (null), `item_id` |
| `multimodal_queries.parquet` | image + text -> product | `query_id`, `query_text` (a modifier such as "in red"), `query_image` (a photo of a *similar* product), `item_id` |
| `product_queries.parquet` | product -> product | `query_id`, `title`, `category_path`, `attributes`, `image_paths` (another seller's listing), `item_id` (the gallery listing) |
| `classification.parquet` | category classification | `query_id`, `title`, `image_paths`, `category_path` (label at every level), `attributes` |
| `attributes.parquet` | attribute prediction | `query_id`, `title`, `image_paths`, `attributes` (labels), `category_path` |
| `labels.json` | label sets | `category_levels`: names per level (root first); `attributes`: values per attribute type |

Classification and attribute prediction are zero-shot: the product is embedded from its images and
title only (category path and attributes hidden), each label's text is embedded, and the nearest label
wins.
"""


@dataclass
class Bench:
    tables: dict[str, dict[str, list]] = field(default_factory=dict)
    photos: list = field(default_factory=list)


def make_bench(cat: Catalogue, bench_dir: Path, seed: int, size: int, n_per_task: int) -> Bench:
    rng = random.Random(sub_seed(seed, "bench"))
    img_dir = bench_dir / "images"
    bench = Bench()
    pick = lambda: rng.choice(cat.products)  # noqa: E731

    def query_rows(kind):
        rows = {"query_id": [], "query_text": [], "query_image": [], "item_id": []}
        for i in range(n_per_task):
            target, qid = pick(), f"{kind}{i:05d}"
            text = image = None
            if kind == "mm":
                ref = cat.similar_other_color(target, rng)
                if ref is None:
                    continue
                text = make_modifier(target, rng)
            if kind in ("img", "mm"):
                image = img_dir / f"{qid}.jpg"
                bench.photos.append(photo_of(ref if kind == "mm" else target, image, sub_seed(seed, "bench", qid),
                                             "query", size, "bench"))
            if kind == "txt":
                text = make_text_query(target, rng)
            for k, v in zip(rows, (qid, text, None if image is None else str(image), target.item_id)):
                rows[k].append(v)
        return rows

    bench.tables["image_to_product"] = query_rows("img")
    bench.tables["text_to_product"] = query_rows("txt")
    bench.tables["multimodal_to_product"] = query_rows("mm")

    def listing_rows(kind, with_target):
        rows = {k: [] for k in ("query_id", "title", "category_path", "attributes", "image_paths")}
        if with_target:
            rows["item_id"] = []
        for i in range(n_per_task):
            p, qid = pick(), f"{kind}{i:05d}"
            shots = listing_photos(p, img_dir, qid, seed, size, "bench", rng)
            bench.photos += shots
            for k, v in zip(("query_id", "title", "category_path", "attributes", "image_paths"),
                            (qid, make_title(p, rng), list(p.leaf.path), p.attributes(), [ph.spec.path for ph in shots])):
                rows[k].append(v)
            if with_target:
                rows["item_id"].append(p.item_id)
        return rows

    bench.tables["product_to_product"] = listing_rows("dup", True)
    bench.tables["classification"] = listing_rows("cls", False)
    bench.tables["attributes"] = listing_rows("attr", False)
    return bench


def write_bench(bench: Bench, bench_dir: Path, manifest) -> dict[str, int]:
    counts = {}
    for task, (filename, contract) in TASKS.items():
        counts[task] = write_table(pa.table(bench.tables[task], schema=contract.schema), bench_dir / filename,
                                   contract=contract, manifest=manifest(f"bench/{task}"))
    labels = {"category_levels": [category_names(level) for level in range(3)],
              "attributes": {name: attribute_values(name) for name in ATTRIBUTE_TYPES}}
    (bench_dir / "labels.json").write_text(json.dumps(labels, indent=2) + "\n")
    (bench_dir / "bench.json").write_text(json.dumps({"gallery": "../catalog.parquet", "tasks": {
        t: f for t, (f, _) in TASKS.items()}}, indent=2) + "\n")
    (bench_dir / "README.md").write_text(BENCH_README)
    return counts
