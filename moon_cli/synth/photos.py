"""The photos of a world: what to render for a product (a listing's views, a query shot) and where."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from moon_cli.synth.products import Product, sub_seed
from moon_cli.synth.render import RenderSpec
from moon_cli.synth.taxonomy import COLORS


@dataclass
class Photo:
    """One image to render and record in boxes.parquet."""
    spec: RenderSpec
    source: str  # catalog | query | bench
    item_id: str


def photo_of(p: Product, path: Path, seed: int, style: str, size: int, source: str) -> Photo:
    return Photo(RenderSpec(str(path), seed, p.leaf.shape, p.leaf.aspect, COLORS[p.color][0], p.pattern, style, size),
                 source, p.item_id)


def listing_photos(p: Product, directory: Path, stem: str, world_seed: int, size: int, source: str,
                   rng: random.Random) -> list[Photo]:
    """A listing's photos: 1–4 views, the first a catalogue shot, the rest catalogue shots or close-ups."""
    n = rng.choice((1, 2, 2, 3, 3, 4))
    return [photo_of(p, directory / f"{stem}_{k}.jpg", sub_seed(world_seed, source, stem, k),
                     "catalog" if k == 0 or rng.random() < 0.5 else "closeup", size, source)
            for k in range(n)]
