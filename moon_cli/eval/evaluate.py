"""`moon evaluate`: the MBE-style tasks for one model — retrieval (image / text / multimodal / product
queries against the gallery) and zero-shot classification and attribute prediction (nearest label text).
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from moon_cli.data.products import crop_lookup, product_record, query_record
from moon_cli.embed.encoders import Encoder
from moon_cli.eval.bench import RETRIEVAL_TASKS, Bench
from moon_cli.eval.metrics import chance_recall, recall_curve, retrieval_metrics, target_ranks
from moon_cli.progress import progress


def encode_all(encoder: Encoder, items: list[dict], kind: str, batch_size: int, desc: str, quiet: bool):
    """(N, D) vectors (zero rows where an item failed), the ok mask, and the first error."""
    vectors = torch.zeros((len(items), encoder.dim))
    ok = np.zeros(len(items), dtype=bool)
    first_error = None
    for s in progress(range(0, len(items), batch_size), desc=desc, quiet=quiet, leave=False):
        enc = encoder.encode(items[s:s + batch_size], kind)
        if enc.ok:
            vectors[[s + i for i in enc.ok]] = enc.vectors
            ok[[s + i for i in enc.ok]] = True
        if enc.errors and first_error is None:
            first_error = next(iter(enc.errors.values()))
    return vectors, ok, first_error


def _hidden_labels(product: dict) -> dict:
    """Zero-shot: the product is seen through its photos and title only."""
    return {**product, "category_path": [], "attributes": []}


def _classify(vectors: torch.Tensor, ok: np.ndarray, labels: list[str], truth: list[str | None], encoder: Encoder,
              batch_size: int, centre: torch.Tensor) -> dict | None:
    """Zero-shot label accuracy: the label whose vector is nearest to the product's wins (rows without a truth
    are left out).

    ``accuracy`` is the bias-free score: product vectors are centred by ``centre`` (the gallery's mean vector)
    and label vectors by the label set's own mean before the cosine. In anisotropic embedding spaces the raw
    argmax (``accuracy_raw``, kept beside it) hands most products to the one label nearest to the space's
    common direction; centring removes that shared component without looking at the evaluated products
    (non-transductive). ``top_label_share`` is the share of products given the most-predicted label,
    ``chance`` the accuracy of a uniform guess and ``majority`` that of always guessing the commonest truth.
    """
    lab_vecs, lab_ok, _ = encode_all(encoder, [{"id": f"label {t}", "text": t} for t in labels], "query",
                                     batch_size, "labels", True)
    if not lab_ok.any():
        return None  # the model cannot read label text (an image-only baseline)
    keep = np.array([t is not None and t in labels for t in truth])
    if not keep.any():
        return None
    target = np.array([labels.index(t) if t in labels else -1 for t in truth])
    raw = (vectors @ lab_vecs.T).argmax(1).numpy()  # (N,)
    centred_labels = F.normalize(lab_vecs - lab_vecs[torch.from_numpy(lab_ok)].mean(0), dim=-1)  # (C, D)
    centred_products = F.normalize(vectors - centre, dim=-1)  # (N, D)
    scores = centred_products @ centred_labels.T  # (N, C)
    scores[:, ~torch.from_numpy(lab_ok)] = -torch.inf  # a label that failed to encode is never predicted
    pred = scores.argmax(1).numpy()  # (N,)
    accuracy = lambda p: float(((p == target) & ok)[keep].mean())  # noqa: E731 - a failed product counts as wrong
    top_share = float(np.bincount(pred[keep & ok], minlength=len(labels)).max() / max(1, int((keep & ok).sum())))
    majority = float(np.bincount(target[keep], minlength=len(labels)).max() / int(keep.sum()))
    return {"accuracy": accuracy(pred), "accuracy_raw": accuracy(raw), "top_label_share": top_share,
            "chance": 1.0 / len(labels), "majority": majority, "n": int(keep.sum()), "classes": len(labels)}


def evaluate(bench: Bench, encoder: Encoder, detections=None, batch_size: int = 16, quiet: bool = False) -> dict:
    started = time.perf_counter()
    crops = crop_lookup(detections)
    gallery_items = [product_record(r, crops) for r in bench.gallery.to_pylist()]
    gallery, gallery_ok, gallery_err = encode_all(encoder, gallery_items, "product", batch_size, "gallery", quiet)
    row_of = {p["item_id"]: i for i, p in enumerate(gallery_items)}
    results: dict = {"retrieval": {}, "classification": {}, "attributes": {}, "notes": []}
    centre = gallery[torch.from_numpy(gallery_ok)].mean(0) if gallery_ok.any() else torch.zeros(encoder.dim)  # (D,)
    if not gallery_ok.all():
        results["notes"].append(f"{int((~gallery_ok).sum())} gallery product(s) failed to encode: {gallery_err}")

    for task, (_, kind) in RETRIEVAL_TASKS.items():
        table = bench.tasks.get(task)
        if table is None:
            continue
        rows = [r for r in table.to_pylist() if r["item_id"] in row_of]
        items = [query_record(r, crops) if kind == "query" else product_record(r, crops) for r in rows]
        if not gallery_ok.any():  # e.g. a photo-only baseline on a gallery of texts
            results["retrieval"][task] = {"n": len(rows), "n/a": f"the model cannot encode the gallery ({gallery_err})"}
            continue
        vecs, ok, err = encode_all(encoder, items, kind, batch_size, task, quiet)
        if not ok.any():
            results["retrieval"][task] = {"n": len(rows), "n/a": f"the model cannot encode these queries ({err})"}
            continue
        targets = torch.tensor([row_of[r["item_id"]] for r in rows])
        ranks = target_ranks(vecs, gallery, targets)
        ranks[~ok] = len(gallery_items)  # a query that failed to encode finds nothing
        metrics = retrieval_metrics(ranks)
        results["retrieval"][task] = {**metrics, **chance_recall(len(gallery_items)), "n": len(rows),
                                      "errors": int((~ok).sum()), "curve": recall_curve(ranks, 50)}

    if "classification" in bench.tasks:
        rows = bench.tasks["classification"].to_pylist()
        vecs, ok, _ = encode_all(encoder, [_hidden_labels(product_record(r, crops)) for r in rows], "product",
                                 batch_size, "classification", quiet)
        for level, labels in enumerate(bench.category_levels):
            truth = [(r["category_path"] or [None] * (level + 1))[level] if len(r["category_path"] or []) > level
                     else None for r in rows]
            res = _classify(vecs, ok, labels, truth, encoder, batch_size, centre)
            results["classification"][f"level{level + 1}"] = res or {"n/a": "the model cannot encode label text"}

    if "attributes" in bench.tasks:
        rows = bench.tasks["attributes"].to_pylist()
        vecs, ok, _ = encode_all(encoder, [_hidden_labels(product_record(r, crops)) for r in rows], "product",
                                 batch_size, "attributes", quiet)
        for name, values in bench.attribute_values.items():
            truth = [next((f"{name}: {a['value']}" for a in (r["attributes"] or []) if a and a["name"] == name), None)
                     for r in rows]
            res = _classify(vecs, ok, [f"{name}: {v}" for v in values], truth, encoder, batch_size, centre)
            results["attributes"][name] = res or {"n/a": "the model cannot encode label text"}

    results["seconds"] = time.perf_counter() - started
    results["gallery"] = len(gallery_items)
    return results


def headline(results: dict) -> dict[str, float | None]:
    """One number per paper column: Recall@10 per retrieval task, mean accuracy for the label tasks."""
    out: dict[str, float | None] = {}
    for task in RETRIEVAL_TASKS:
        r = results["retrieval"].get(task)
        if r is not None:
            out[task] = r.get("recall@10")
    for group in ("classification", "attributes"):
        accs = [v["accuracy"] for v in results[group].values() if "accuracy" in v]
        if results[group]:
            out[group] = float(np.mean(accs)) if accs else None
    return out
