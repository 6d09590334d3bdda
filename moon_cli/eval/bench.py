"""Reading an MBE-style bench directory (the layout `moon synth` writes; see its bench/README.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from moon_cli.contracts import CATALOG, LABELED_PRODUCTS, PRODUCT_QUERIES, QUERIES
from moon_cli.errors import MoonError, warn
from moon_cli.io import read_json_report, read_table

RETRIEVAL_TASKS = {  # task → (contract, query kind)
    "image_to_product": (QUERIES, "query"),
    "text_to_product": (QUERIES, "query"),
    "multimodal_to_product": (QUERIES, "query"),
    "product_to_product": (PRODUCT_QUERIES, "product"),
}
LABEL_TASKS = {"classification": LABELED_PRODUCTS, "attributes": LABELED_PRODUCTS}
DEFAULT_FILES = {"image_to_product": "image_queries.parquet", "text_to_product": "text_queries.parquet",
                 "multimodal_to_product": "multimodal_queries.parquet", "product_to_product": "product_queries.parquet",
                 "classification": "classification.parquet", "attributes": "attributes.parquet"}


@dataclass
class Bench:
    root: Path
    gallery: pa.Table
    tasks: dict[str, pa.Table] = field(default_factory=dict)
    category_levels: list[list[str]] = field(default_factory=list)
    attribute_values: dict[str, list[str]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def _attribute_values(tables: list[pa.Table], types: list[str] | None) -> dict[str, list[str]]:
    values: dict[str, set[str]] = {}
    for t in tables:
        for attrs in t.column("attributes").to_pylist():
            for a in attrs or []:
                if a and a.get("value"):
                    values.setdefault(a["name"], set()).add(a["value"])
    names = types or sorted(values)
    return {n: sorted(values.get(n, ())) for n in names if values.get(n)}


def load_bench(root: Path) -> Bench:
    root = Path(root)
    index = root / "bench.json"
    if not index.is_file():
        raise MoonError(f"{root}: no bench.json; a bench directory holds bench.json (gallery + task files), "
                        f"as `moon synth` writes under WORLD/bench")
    spec = read_json_report(index, ("gallery",), "`moon synth` (or by hand: the gallery Parquet and task files)")
    gallery = read_table(root / spec["gallery"], CATALOG).table
    bench = Bench(root, gallery)
    named = spec.get("tasks") or {}
    files = {**DEFAULT_FILES, **named}
    for task, name in files.items():
        path = root / name
        if not path.is_file():
            bench.skipped.append(task)
            if task in named or not named:  # a bench that names its tasks is not missing the others
                warn(f"warning: {root}: task '{task}' skipped: {name} is missing")
            continue
        contract = RETRIEVAL_TASKS[task][0] if task in RETRIEVAL_TASKS else LABEL_TASKS[task]
        bench.tasks[task] = read_table(path, contract).table
    labels = read_json_report(root / "labels.json", (), "`moon synth`") if (root / "labels.json").is_file() else {}
    levels = labels.get("category_levels")
    if not levels:  # derive from the gallery: names per level
        depth = max((len(p or []) for p in gallery.column("category_path").to_pylist()), default=0)
        levels = [sorted({p[i] for p in gallery.column("category_path").to_pylist() if p and len(p) > i})
                  for i in range(depth)]
    bench.category_levels = levels
    attr = labels.get("attributes")
    if isinstance(attr, dict):
        bench.attribute_values = {k: list(v) for k, v in attr.items()}
    else:
        sources = [gallery] + [bench.tasks[t] for t in ("attributes",) if t in bench.tasks]
        bench.attribute_values = _attribute_values(sources, attr)
    return bench
