"""Training data: (query, positive product) examples, hard negatives, a held-out validation slice, and a
sampler that mixes query modalities in a fixed ratio and whose position can be saved and restored.

Post-training examples come from `moon mine-pairs` (every split but those held out), optionally with catalogue views (a
listing's other photos as image queries for it); pre-training examples pair each product photo with the
product's own text, from the catalogue alone.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import torch

from moon_cli.data.products import crop_lookup, product_record, product_records, query_record, text_only
from moon_cli.errors import MoonError
from moon_cli.model.images import InputError
from moon_cli.model.processor import MoonProcessor, Sequence
from moon_cli.train.loss import NO_ITEM

MODALITIES = ("image", "text", "multimodal")
VIEWS = "catalogue views"  # the counts key of examples added by ``TrainData.add_catalog_views``


@dataclass
class Example:
    query: dict  # the model's query dict: text and/or image
    item: int  # catalogue row of the positive product
    modality: str  # image | text | multimodal
    key: str  # the query's identity: every item it led to is a positive, never a negative
    negatives: list[int] = field(default_factory=list)  # catalogue rows of its hard negatives


@dataclass
class TrainData:
    products: list[dict]  # catalogue rows as model product dicts (the view training encodes)
    item_ids: list[str]
    examples: list[Example]
    val: list[Example]
    positives_of: dict[str, list[int]]
    counts: dict[str, int] = field(default_factory=dict)  # what was dropped and why (for the summary)

    def add_catalog_views(self, view_size: int) -> int:
        """Add every listing photo that the product view leaves out (the photos after its first ``view_size``)
        as an image query for its own product, to the training examples only (validation keeps measuring
        shoppers' queries). Returns how many were added.

        Shoppers' photo queries are the scarcest behaviour (a few per product at best), too few for a vision
        tower to learn what identifies a product; a listing's other views are free, plentiful photos of the
        same product from another angle and distance. The photos the view itself shows are left out: matching
        a photo to itself teaches nothing (measured: it trains worse than other views alone).
        """
        views = [Example({"id": f"{p['item_id']}/view{k}", "image": image, "crop": p["crops"][k]}, i, "image",
                         f"view\x1f{image}")
                 for i, p in enumerate(self.products) for k, image in enumerate(p["images"]) if k >= view_size]
        self.examples.extend(views)
        for ex in views:
            self.positives_of[ex.key] = [ex.item]
        self.counts[VIEWS] = len(views)
        return len(views)

    def by_modality(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = defaultdict(list)
        for i, ex in enumerate(self.examples):
            out[ex.modality].append(i)
        return dict(out)


def _split_val(examples: list[Example], fraction: float, max_val: int,
               seed: int) -> tuple[list[Example], list[Example]]:
    """Hold out whole queries (by key) so no validation query was seen in training."""
    keys = sorted({ex.key for ex in examples})
    n_val = min(max_val, int(round(len(keys) * fraction)))
    if n_val == 0 or n_val >= len(keys):
        return examples, []
    rng = np.random.default_rng([seed, 7])
    val_keys = set(rng.choice(len(keys), size=n_val, replace=False).tolist())
    val_keys = {keys[i] for i in val_keys}
    return [ex for ex in examples if ex.key not in val_keys], [ex for ex in examples if ex.key in val_keys]


def build_posttrain_data(pairs: pa.Table, catalog: pa.Table, detections: pa.Table | None,
                         negatives: pa.Table | None, val_fraction: float, max_val: int, seed: int,
                         holdout_splits: list[str] = ()) -> TrainData:
    crops = crop_lookup(detections)  # catalogue photos and query photos alike
    products = [product_record(row, crops) for row in catalog.to_pylist()]
    item_ids = [p["item_id"] for p in products]
    row_of = {item: i for i, item in enumerate(item_ids)}
    neg_of: dict[str, list[int]] = {}
    if negatives is not None:
        for pid, negs in zip(negatives.column("pair_id").to_pylist(), negatives.column("negatives").to_pylist()):
            neg_of[pid] = [row_of[n["item_id"]] for n in (negs or []) if n["item_id"] in row_of]
    counts = {"pairs": pairs.num_rows, "held-out split": 0, "item not in catalogue": 0}
    examples = []
    for row in pairs.to_pylist():
        if row["split"] in holdout_splits:
            counts["held-out split"] += 1
            continue
        if row["item_id"] not in row_of:
            counts["item not in catalogue"] += 1
            continue
        query = query_record(row, crops)
        key = f"{row['query_text'] or ''}\x1f{row['query_image'] or ''}"
        examples.append(Example(query, row_of[row["item_id"]], row["query_modality"], key,
                                neg_of.get(row["pair_id"], [])))
    if not examples:
        raise MoonError("no training pairs left: the pairs table has no rows outside the held-out splits "
                        f"{list(holdout_splits)} whose item is in the catalogue ({counts}); check --catalog, "
                        f"--holdout-split and the output of `moon mine-pairs`")
    positives_of: dict[str, list[int]] = defaultdict(list)
    for ex in examples:
        positives_of[ex.key].append(ex.item)
    train, val = _split_val(examples, val_fraction, max_val, seed)
    return TrainData(products, item_ids, train, val, dict(positives_of), counts)


def build_pretrain_data(catalog: pa.Table, detections: pa.Table | None, val_fraction: float, max_val: int,
                        seed: int) -> TrainData:
    """One example per product photo: the photo (as an image query) → the product's own text."""
    full = product_records(catalog, detections)
    products = [text_only(p) for p in full]
    item_ids = [p["item_id"] for p in products]
    examples = [Example({"id": f"{p['item_id']}/image{k}", "image": img}, i, "image", p["item_id"])
                for i, p in enumerate(full) for k, img in enumerate(p["images"])]
    if not examples:
        raise MoonError("the catalogue has no product photos to pre-train on")
    positives_of = {p["item_id"]: [i] for i, p in enumerate(products)}
    train, val = _split_val(examples, val_fraction, max_val, seed)
    return TrainData(products, item_ids, train, val, positives_of, {"products": len(products), "photos": len(examples)})


class MixSampler:
    """Draws example indices: modality by ``weights`` (a pure function of the step), then the next example
    of that modality from a per-epoch permutation. ``state_dict`` is the whole data position."""

    def __init__(self, pools: dict[str, list[int]], weights: dict[str, float], seed: int, rank: int):
        self.pools = {m: pools[m] for m in MODALITIES if pools.get(m) and weights.get(m, 0) > 0}
        if not self.pools:
            raise MoonError(f"no examples of any modality with a positive weight (have: {sorted(pools)}, "
                            f"weights: {weights}); adjust --modality-mix")
        total = sum(weights[m] for m in self.pools)
        self.modalities = list(self.pools)
        self.probs = np.array([weights[m] / total for m in self.modalities])
        self.seed, self.rank = seed, rank
        self.counters = {m: 0 for m in self.pools}

    def modalities_for(self, step: int, n: int) -> list[str]:
        rng = np.random.default_rng([self.seed, self.rank, step, 1])
        return [self.modalities[i] for i in rng.choice(len(self.modalities), size=n, p=self.probs)]

    def next(self, modality: str) -> int:
        pool = self.pools[modality]
        c = self.counters[modality]
        epoch, pos = divmod(c, len(pool))
        perm = np.random.default_rng([self.seed, self.rank, epoch, MODALITIES.index(modality)]).permutation(len(pool))
        self.counters[modality] = c + 1
        return pool[perm[pos]]

    def state_dict(self) -> dict:
        return {"counters": dict(self.counters)}

    def load_state_dict(self, state: dict) -> None:
        self.counters.update(state["counters"])


@dataclass
class TrainBatch:
    queries: list[Sequence]  # B
    products: list[Sequence | None]  # B positives, then B·H hard-negative slots (None = empty slot)
    product_ids: torch.Tensor  # (B + B·H,) catalogue rows, NO_ITEM for empty slots
    positive_ids: torch.Tensor  # (B, P) every positive of each query, NO_ITEM-padded
    modalities: list[str]


class BatchBuilder:
    """Encodes examples into a fixed-size batch; an example whose query or positive cannot be loaded is
    skipped (and counted) and the next one taken, so every rank always contributes the same shapes."""

    def __init__(self, data: TrainData, processor: MoonProcessor, sampler: MixSampler, batch_size: int,
                 hard_per_query: int, seed: int, rank: int, max_positives: int = 16):
        self.data, self.processor, self.sampler = data, processor, sampler
        self.B, self.H, self.P = batch_size, hard_per_query, max_positives
        self.seed, self.rank = seed, rank
        self.skipped: dict[str, int] = defaultdict(int)
        self.failed: set[int] = set()
        self.last_error = ""

    def _encode_example(self, ex: Example) -> tuple[Sequence, Sequence]:
        return self.processor.encode_query(ex.query), self.processor.encode_product(self.data.products[ex.item])

    def build(self, step: int) -> TrainBatch:
        queries, positives, hard, hard_ids, pos_ids, mods, chosen = [], [], [], [], [], [], []
        rng = np.random.default_rng([self.seed, self.rank, step, 2])
        for modality in self.sampler.modalities_for(step, self.B):
            for _ in range(len(self.data.examples) + 1):
                i = self.sampler.next(modality)
                if i in self.failed:
                    continue
                ex = self.data.examples[i]
                try:
                    q, p = self._encode_example(ex)
                    break
                except InputError as exc:
                    self.failed.add(i)
                    self.skipped["example (image failed to load)"] += 1
                    self.last_error = str(exc)
            else:
                raise MoonError(f"every {modality} example failed to load; last error: {self.last_error}")
            queries.append(q)
            positives.append(p)
            mods.append(modality)
            chosen.append(ex)
            known = self.data.positives_of.get(ex.key, [ex.item])[: self.P]
            pos_ids.append(known + [NO_ITEM] * (self.P - len(known)))
            picks = rng.permutation(len(ex.negatives))[: self.H].tolist() if ex.negatives else []
            for slot in range(self.H):
                seq, item = None, NO_ITEM
                if slot < len(picks):
                    item = ex.negatives[picks[slot]]
                    try:
                        seq = self.processor.encode_product(self.data.products[item])
                    except InputError:
                        self.skipped["hard negative (image failed to load)"] += 1
                        item = NO_ITEM
                hard.append(seq)
                hard_ids.append(item)
        ids = [ex.item for ex in chosen] + hard_ids
        return TrainBatch(queries, positives + hard, torch.tensor(ids, dtype=torch.long),
                          torch.tensor(pos_ids, dtype=torch.long), mods)
