"""Users, sessions and the events they leave in a behaviour log.

Users have tastes (favourite root categories and colours). A session starts with a text query, an
image query (a new photo of the wanted product), both (a photo of a similar product plus a colour
modifier), or none (a feed visit). A noisy legacy search engine shows impressions — the wanted product
only sometimes, same-category look-alikes often — users click noisily, more often on products in their
favourite colours and categories, and mostly purchase what they wanted.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from moon_cli.synth.products import Product, make_modifier, make_text_query

START = datetime(2024, 3, 1)
LOG_DAYS = 42  # six weeks of behaviour; the bench comes from the days after
MODALITY_WEIGHTS = {"text": 0.35, "image": 0.35, "multimodal": 0.15, "feed": 0.15}
HIT_RATE = {"text": 0.7, "image": 0.55, "multimodal": 0.55, "feed": 0.5}  # legacy engine shows the wanted item
N_IMPRESSIONS = 8


@dataclass
class QueryPhoto:
    """An image query to render: a new photo of ``product`` (query style)."""
    path: str
    product: Product
    seed: int


@dataclass
class Log:
    rows: dict[str, list] = field(default_factory=lambda: {k: [] for k in
                                  ("user_id", "session_id", "ts", "query_text", "query_image", "item_id", "event")})
    photos: list[QueryPhoto] = field(default_factory=list)

    def add(self, user, session, ts, qtext, qimage, item, event):
        for k, v in zip(self.rows, (user, session, ts, qtext, qimage, item, event)):
            self.rows[k].append(v)


class Catalogue:
    """Indexes over products for O(1) sampling."""

    def __init__(self, products: list[Product]):
        self.products = products
        self.by_root: dict[str, list[Product]] = {}
        self.by_root_color: dict[tuple[str, str], list[Product]] = {}
        self.by_leaf: dict[int, list[Product]] = {}
        self.by_mid: dict[str, list[Product]] = {}
        for p in products:
            self.by_root.setdefault(p.leaf.root, []).append(p)
            self.by_root_color.setdefault((p.leaf.root, p.color), []).append(p)
            self.by_leaf.setdefault(p.leaf.index, []).append(p)
            self.by_mid.setdefault(p.leaf.path[1], []).append(p)
        self.roots = sorted(self.by_root)

    def similar_other_color(self, p: Product, rng: random.Random) -> Product | None:
        same_family = [q for q in self.by_leaf[p.leaf.index] if q.family == p.family and q.color != p.color]
        pool = same_family or [q for q in self.by_leaf[p.leaf.index] if q.color != p.color]
        return rng.choice(pool) if pool else None


def simulate(catalogue: Catalogue, n_users: int, n_sessions: int, rng: random.Random, photo_dir: str,
             seed: int) -> Log:
    from moon_cli.synth.products import sub_seed

    users = []
    for u in range(n_users):
        fav_roots = rng.sample(catalogue.roots, rng.choice((1, 1, 2)))
        users.append({"id": f"u{u:05d}", "roots": fav_roots,
                      "colors": rng.sample(sorted({p.color for p in catalogue.products}), 2),
                      "activity": rng.paretovariate(1.5)})
    weights = [u["activity"] for u in users]
    modalities, mod_weights = list(MODALITY_WEIGHTS), list(MODALITY_WEIGHTS.values())
    log = Log()
    for s in range(n_sessions):
        user = rng.choices(users, weights=weights)[0]
        root = rng.choice(user["roots"]) if rng.random() < 0.8 else rng.choice(catalogue.roots)
        pool = catalogue.by_root_color.get((root, rng.choice(user["colors"]))) if rng.random() < 0.5 else None
        wanted = rng.choice(pool or catalogue.by_root[root])
        modality = rng.choices(modalities, weights=mod_weights)[0]
        sid = f"s{s:07d}"
        qtext = qimage = None
        if modality == "multimodal":
            ref = catalogue.similar_other_color(wanted, rng)
            if ref is None:
                modality = "image"
            else:
                qtext = make_modifier(wanted, rng)
                qimage = f"{photo_dir}/{sid}.jpg"
                log.photos.append(QueryPhoto(qimage, ref, sub_seed(seed, "query", sid)))
        if modality == "text":
            qtext = make_text_query(wanted, rng)
        elif modality == "image":
            qimage = f"{photo_dir}/{sid}.jpg"
            log.photos.append(QueryPhoto(qimage, wanted, sub_seed(seed, "query", sid)))

        shown = _legacy_results(catalogue, wanted, modality, rng)
        t = START + timedelta(seconds=rng.uniform(0, LOG_DAYS * 86400))
        for item in shown:
            log.add(user["id"], sid, t, qtext, qimage, item.item_id, "impression")
        clicked = []
        for item in shown:
            p_click = 0.75 if item is wanted else (0.12 if item.leaf is wanted.leaf else 0.04) * _taste(user, item)
            if rng.random() < p_click:
                t += timedelta(seconds=rng.randint(3, 60))
                log.add(user["id"], sid, t, qtext, qimage, item.item_id, "click")
                clicked.append(item)
        buy = None
        if wanted in clicked:
            if rng.random() < 0.4:
                t += timedelta(seconds=rng.randint(10, 120))
                log.add(user["id"], sid, t, qtext, qimage, wanted.item_id, "cart")
            if rng.random() < 0.7:
                buy = wanted
        elif clicked and rng.random() < 0.1:
            buy = rng.choice(clicked)  # noise: a look-alike bought instead
        if buy is not None:
            t += timedelta(seconds=rng.randint(20, 600))
            log.add(user["id"], sid, t, qtext, qimage, buy.item_id, "purchase")
    return log


def _taste(user: dict, item: Product) -> float:
    """How much a user's tastes raise the odds of clicking a product they did not come for: a favourite
    colour (seen only in the product's photos and text — what content embeddings can carry and IDs cannot)
    and a favourite root category."""
    return (2.5 if item.color in user["colors"] else 1.0) * (1.5 if item.leaf.root in user["roots"] else 0.6)


def _legacy_results(catalogue: Catalogue, wanted: Product, modality: str, rng: random.Random) -> list[Product]:
    shown: list[Product] = []
    if rng.random() < HIT_RATE[modality]:
        shown.append(wanted)
    for pool, k in ((catalogue.by_leaf[wanted.leaf.index], 3), (catalogue.by_mid[wanted.leaf.path[1]], 2)):
        for q in rng.sample(pool, min(k, len(pool))):
            if q is not wanted and q not in shown:
                shown.append(q)
    while len(shown) < N_IMPRESSIONS:
        q = rng.choice(catalogue.products)
        if q is not wanted and q not in shown:
            shown.append(q)
        elif len(catalogue.products) <= N_IMPRESSIONS:
            break
    rng.shuffle(shown)
    return shown
