"""In-loop validation: Recall@10 of held-out queries against a gallery of catalogue products."""

from __future__ import annotations

import numpy as np
import torch

from moon_cli.eval.metrics import retrieval_metrics, target_ranks
from moon_cli.model.images import InputError
from moon_cli.model.moon import MoonModel
from moon_cli.train.data import TrainData


def gallery_rows(data: TrainData, size: int, seed: int) -> list[int]:
    """Catalogue rows in the validation gallery: every validation positive plus random others up to ``size``."""
    must = sorted({ex.item for ex in data.val})
    rest = np.setdiff1d(np.arange(len(data.products)), must)
    extra = max(0, size - len(must))
    picked = np.random.default_rng([seed, 11]).permutation(rest)[:extra].tolist()
    return sorted(must + picked)


def _embed(model: MoonModel, items: list[dict], encode, batch_size: int) -> tuple[torch.Tensor, list[bool]]:
    """Embeddings of the items that load; zero rows (and ok=False) for those that do not."""
    vecs = torch.zeros((len(items), model.dim))
    ok = [True] * len(items)
    for start in range(0, len(items), batch_size):
        seqs, rows = [], []
        for i in range(start, min(start + batch_size, len(items))):
            try:
                seqs.append(encode(items[i]))
                rows.append(i)
            except InputError:
                ok[i] = False
        if seqs:
            vecs[rows] = model.embed_sequences(seqs).float().cpu()
    return vecs, ok


def validate(model: MoonModel, data: TrainData, gallery: list[int], batch_size: int = 16) -> dict[str, float]:
    """Recall@10 (and MRR) per query modality and overall; empty when there is no validation slice."""
    if not data.val:
        return {}
    products, _ = _embed(model, [data.products[i] for i in gallery], model.processor.encode_product, batch_size)
    column = {row: c for c, row in enumerate(gallery)}
    queries, ok = _embed(model, [ex.query for ex in data.val], model.processor.encode_query, batch_size)
    targets = torch.tensor([column[ex.item] for ex in data.val])
    ranks = target_ranks(queries, products, targets)
    ok_arr = np.array(ok)
    mods = np.array([ex.modality for ex in data.val])
    out = {"recall@10": retrieval_metrics(ranks[ok_arr])["recall@10"], "gallery": len(gallery)}
    for m in sorted(set(mods)):
        sel = ok_arr & (mods == m)
        if sel.any():
            out[f"{m}_recall@10"] = retrieval_metrics(ranks[sel])["recall@10"]
    return out
