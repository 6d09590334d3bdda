"""`moon ctr`'s experiment: every embedding version × sequence length × seed, trained and scored on one time split;
the report (ctr.json, report.md) written atomically."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from moon_cli.ctr.run import ID_ONLY, CTRConfig, content_table, fit_and_score, markdown, summarise
from moon_cli.errors import MoonError


def run_ctr(behavior: str, catalog: str, embeddings: list[tuple[str, str]], cfg: CTRConfig, specs: list[str],
            quiet: bool = False) -> dict:
    """The report of one experiment. ``embeddings``: (label, path) per version; an empty label is read from the
    file's manifest (the model), else its name. ``specs``: what the user typed, for the record."""
    from moon_cli.contracts import BEHAVIOR, CATALOG
    from moon_cli.ctr.data import build_ctr_data
    from moon_cli.io import read_table
    from moon_cli.progress import progress

    t0 = time.perf_counter()
    data = build_ctr_data(read_table(behavior, BEHAVIOR).table, read_table(catalog, CATALOG).table,
                          max(cfg.seq_lens), cfg.test_fraction, source=behavior)
    variants, coverage = {ID_ONLY: None}, {}
    for (label, path), spec in zip(embeddings, specs):
        label, variants_table, coverage_text = _version(data, label, path)
        if label in variants:
            raise MoonError(f"--embeddings {spec}: the label '{label}' is used twice; name them LABEL=PATH")
        variants[label], coverage[label] = variants_table, coverage_text
    runs = []
    jobs = [(v, L, s) for v in variants for L in cfg.seq_lens for s in cfg.seeds]
    for variant, seq_len, seed in progress(jobs, desc="ctr", unit="model", quiet=quiet, leave=False):
        runs.append({"variant": variant, "seq_len": seq_len, "seed": seed,
                     **fit_and_score(data, variants[variant], seq_len, seed, cfg)})
    return {"behavior": behavior, "catalog": catalog, "embeddings": list(specs), "coverage": coverage,
            "config": asdict(cfg), "data": {**data.counts, "test from": str(data.cut)}, "runs": runs,
            "summary": summarise(runs), "seconds": time.perf_counter() - t0, "variants": len(variants)}


def _version(data, label: str, path: str):
    """One embedding version: its label, its content table, and how much of the catalogue it covers."""
    from moon_cli.contracts import EMBEDDINGS, usable_embeddings, vectors_to_numpy
    from moon_cli.io import read_table

    art = read_table(path, EMBEDDINGS, columns=["id", "vector"])
    label = label or art.manifest.get("params", {}).get("model") or Path(path).stem
    usable, dropped, _ = usable_embeddings(art.table)  # null / NaN / zero vectors count as missing items
    table, missing = content_table(data, usable.column("id").to_pylist(), vectors_to_numpy(usable.column("vector"),
                                                                                           path))
    if missing == len(data.item_ids):
        raise MoonError(f"{path}: none of its ids is a catalogue item_id with a usable vector; embed the "
                        f"catalogue given to --catalog" + (f" (left out: {dropped})" if dropped else ""))
    coverage = f"{len(data.item_ids) - missing} of {len(data.item_ids)} items" + (
        "; left out: " + ", ".join(f"{n} {why}" for why, n in dropped.items()) if dropped else "")
    return label, table, coverage


def write_ctr_report(output: Path, report: dict) -> None:
    from moon_cli.io import atomic_dir

    record = {k: v for k, v in report.items() if k not in ("seconds", "variants")}
    with atomic_dir(output, overwrite=True) as tmp:
        (tmp / "ctr.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
        (tmp / "report.md").write_text("# CTR with frozen embeddings\n\nTest impressions from "
                                       f"{report['data']['test from']} "
                                       f"(time split); mean ± std over seeds {report['config']['seeds']}.\n\n"
                                       + markdown(report["summary"]))
