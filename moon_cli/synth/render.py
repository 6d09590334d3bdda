"""Render product photos: a product silhouette on a cluttered background with distractors.

One function, ``render``, turns a picklable ``RenderSpec`` into a JPEG on disk and returns the
ground-truth box of the core product. Everything random comes from the spec's seed, so an image's
bytes depend only on its spec (not on which worker process drew it, or in what order).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from moon_cli.synth.taxonomy import SHAPES

BANNER_WORDS = ("SALE", "-50%", "NEW", "HOT", "BUY 2", "FREE", "TOP", "DEAL")
_FONT = None


@dataclass(frozen=True)
class RenderSpec:
    path: str
    seed: int
    shape: str
    aspect: float  # width / height of the silhouette
    rgb: tuple[int, int, int]
    pattern: str
    style: str = "catalog"  # catalog | closeup | query
    size: int = 128


def _font():
    global _FONT
    if _FONT is None:
        _FONT = ImageFont.load_default()
    return _FONT


def _shape_polygon(shape: str, w: int, h: int) -> list[tuple[float, float]] | None:
    """Polygon of a silhouette in a w×h box; None for shapes drawn with ellipse primitives."""
    def pts(seq):
        return [(x * (w - 1), y * (h - 1)) for x, y in seq]

    if shape == "rect":
        return pts([(0, 0), (1, 0), (1, 1), (0, 1)])
    if shape == "triangle":
        return pts([(0.5, 0), (1, 1), (0, 1)])
    if shape == "diamond":
        return pts([(0.5, 0), (1, 0.5), (0.5, 1), (0, 0.5)])
    if shape == "hexagon":
        return pts([(0.25, 0), (0.75, 0), (1, 0.5), (0.75, 1), (0.25, 1), (0, 0.5)])
    if shape == "star":
        out = []
        for k in range(10):
            r = 0.5 if k % 2 == 0 else 0.22
            a = -math.pi / 2 + k * math.pi / 5
            out.append((0.5 + r * math.cos(a), 0.5 + r * math.sin(a) * 1.05))
        return pts(out)
    if shape == "cross":
        return pts([(0.33, 0), (0.67, 0), (0.67, 0.33), (1, 0.33), (1, 0.67), (0.67, 0.67), (0.67, 1),
                    (0.33, 1), (0.33, 0.67), (0, 0.67), (0, 0.33), (0.33, 0.33)])
    if shape == "tee":
        return pts([(0, 0.1), (0.35, 0), (0.65, 0), (1, 0.1), (1, 0.35), (0.75, 0.3), (0.75, 1), (0.25, 1),
                    (0.25, 0.3), (0, 0.35)])
    if shape == "arch":
        arc = [(0.5 + 0.5 * math.cos(math.pi + k * math.pi / 8), 0.5 + 0.5 * math.sin(math.pi + k * math.pi / 8))
               for k in range(9)]
        return pts(arc + [(1, 1), (0, 1)])
    if shape == "trapezoid":
        return pts([(0.2, 0), (0.8, 0), (1, 1), (0, 1)])
    return None  # ellipse, ring, pill


def _silhouette_mask(shape: str, w: int, h: int) -> Image.Image:
    mask = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(mask)
    poly = _shape_polygon(shape, w, h)
    if poly is not None:
        d.polygon(poly, fill=255)
    elif shape == "ellipse":
        d.ellipse((0, 0, w - 1, h - 1), fill=255)
    elif shape == "ring":
        d.ellipse((0, 0, w - 1, h - 1), fill=255)
        d.ellipse((w * 0.3, h * 0.3, w * 0.7, h * 0.7), fill=0)
    elif shape == "pill":
        d.rounded_rectangle((0, 0, w - 1, h - 1), radius=min(w, h) // 2, fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return mask


def _contrast(rgb):
    lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return tuple(int(c * 0.35) for c in rgb) if lum > 110 else tuple(int(c + (255 - c) * 0.65) for c in rgb)


def _pattern_fill(pattern: str, rgb, w: int, h: int, rng: random.Random) -> Image.Image:
    img = Image.new("RGB", (w, h), rgb)
    if pattern == "solid":
        return img
    d = ImageDraw.Draw(img)
    ink = _contrast(rgb)
    step = max(4, min(w, h) // rng.randint(4, 6))
    if pattern == "striped":
        for x in range(-h, w, step):
            d.line((x, 0, x + h, h), fill=ink, width=max(1, step // 3))
    elif pattern == "dotted":
        r = max(1, step // 4)
        for y in range(step // 2, h, step):
            for x in range(step // 2, w, step):
                d.ellipse((x - r, y - r, x + r, y + r), fill=ink)
    elif pattern == "checked":
        for y in range(0, h, step):
            for x in range((y // step) % 2 * step, w, 2 * step):
                d.rectangle((x, y, x + step - 1, y + step - 1), fill=ink)
    return img


def _muted(rng: random.Random):
    base = rng.randint(90, 220)
    return tuple(max(0, min(255, base + rng.randint(-35, 35))) for _ in range(3))


def _background(size: int, rng: random.Random, clutter: int) -> Image.Image:
    img = Image.new("RGB", (size, size), _muted(rng))
    d = ImageDraw.Draw(img)
    # a floor / wall split and random furniture-like clutter in muted colours
    horizon = rng.randint(size // 3, size - size // 4)
    d.rectangle((0, horizon, size, size), fill=_muted(rng))
    for _ in range(clutter):
        x0, y0 = rng.randint(-10, size), rng.randint(-10, size)
        x1, y1 = x0 + rng.randint(6, size // 2), y0 + rng.randint(6, size // 2)
        kind = rng.random()
        if kind < 0.4:
            d.rectangle((x0, y0, x1, y1), fill=_muted(rng))
        elif kind < 0.7:
            d.line((x0, y0, x1, y1), fill=_muted(rng), width=rng.randint(1, 4))
        else:
            d.ellipse((x0, y0, x1, y1), outline=_muted(rng), width=rng.randint(1, 3))
    return img


def _paste_object(canvas: Image.Image, shape: str, aspect: float, rgb, pattern: str, side: int,
                  rng: random.Random, angle: float, center=None) -> tuple[int, int, int, int]:
    """Draw a silhouette of longest side ``side`` onto ``canvas``; return its tight box."""
    w, h = (side, max(4, int(side / aspect))) if aspect >= 1 else (max(4, int(side * aspect)), side)
    mask = _silhouette_mask(shape, w, h)
    fill = _pattern_fill(pattern, rgb, w, h, rng)
    if angle:
        mask = mask.rotate(angle, resample=Image.BILINEAR, expand=True)
        fill = fill.rotate(angle, resample=Image.BILINEAR, expand=True)
    size = canvas.size[0]
    mw, mh = mask.size
    if center is None:
        x = rng.randint(0, max(0, size - mw))
        y = rng.randint(0, max(0, size - mh))
    else:
        x, y = int(center[0] - mw / 2), int(center[1] - mh / 2)
    canvas.paste(fill, (x, y), mask)
    bx0, by0, bx1, by1 = mask.getbbox() or (0, 0, mw, mh)
    return (max(0, x + bx0), max(0, y + by0), min(size, x + bx1), min(size, y + by1))


STYLE = {  # (product side range as a fraction of the image, clutter items, max distractors)
    "catalog": ((0.45, 0.8), (2, 6), 2),
    "closeup": ((0.75, 0.95), (1, 3), 1),
    "query": ((0.3, 0.65), (4, 10), 4),
}


def render(spec: RenderSpec) -> tuple[float, float, float, float]:
    """Render ``spec`` to ``spec.path`` (JPEG); return the core product's box (x0, y0, x1, y1)."""
    rng = random.Random(spec.seed)
    (lo, hi), (c_lo, c_hi), max_distractors = STYLE[spec.style]
    size = spec.size
    img = _background(size, rng, rng.randint(c_lo, c_hi))
    # distractors that are not for sale: props of other shapes and colours, behind the product
    for _ in range(rng.randint(0, max_distractors)):
        _paste_object(img, rng.choice(SHAPES), rng.choice((0.6, 1.0, 1.6)),
                      (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255)),
                      rng.choice(("solid", "solid", "striped")), int(size * rng.uniform(0.15, 0.4)), rng,
                      angle=rng.uniform(-30, 30))
    side = int(size * rng.uniform(lo, hi))
    angle = rng.uniform(-12, 12) if rng.random() < 0.5 else 0.0
    box = _paste_object(img, spec.shape, spec.aspect, spec.rgb, spec.pattern, side, rng, angle)
    d = ImageDraw.Draw(img)
    if rng.random() < 0.35:  # a shop banner in a corner
        word = rng.choice(BANNER_WORDS)
        bx, by = rng.choice(((2, 2), (size - 40, 2), (2, size - 16), (size - 40, size - 16)))
        d.rectangle((bx, by, bx + 38, by + 13), fill=(rng.randint(150, 255), rng.randint(0, 60), rng.randint(0, 60)))
        d.text((bx + 3, by + 1), word, fill=(255, 255, 255), font=_font())
    if rng.random() < 0.25:  # a watermark across the photo
        d.text((rng.randint(0, size // 2), rng.randint(0, size - 12)), rng.choice(("shop", "©store", "sample")),
               fill=(235, 235, 235), font=_font())
    img.save(spec.path, "JPEG", quality=90)
    return tuple(float(v) for v in box)
