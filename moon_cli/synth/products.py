"""Products, titles and the words shoppers type.

Products come in families: a base model and variants that differ in exactly one attribute (usually
the colour) — the same-leaf look-alikes that MOON's hard-negative sampler targets. Titles are noisy
the way marketplace titles are: synonyms, marketing words, missing, reordered and occasionally wrong
attributes.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from moon_cli.synth.taxonomy import BRANDS, COLORS, MARKETING, MATERIALS, PATTERNS, Leaf


def sub_seed(*keys) -> int:
    """A stable 63-bit seed from any keys (Python's hash() is salted per process, this is not)."""
    return int.from_bytes(hashlib.sha256(repr(keys).encode()).digest()[:8], "little") >> 1


@dataclass
class Product:
    item_id: str
    leaf: Leaf
    color: str
    pattern: str
    material: str
    brand: str
    family: int

    def attributes(self) -> list[dict]:
        return [{"name": "color", "value": self.color}, {"name": "pattern", "value": self.pattern},
                {"name": "material", "value": self.material}, {"name": "brand", "value": self.brand}]


def make_products(n: int, leaves: list[Leaf], rng: random.Random) -> list[Product]:
    products: list[Product] = []
    family = 0
    while len(products) < n:
        leaf = rng.choice(leaves)
        base = dict(color=rng.choice(list(COLORS)), pattern=rng.choices(list(PATTERNS), weights=(5, 2, 2, 2))[0],
                    material=rng.choice(MATERIALS[leaf.root]), brand=rng.choice(BRANDS))
        variants = [base]
        for _ in range(rng.choice((0, 0, 1, 2, 3))):
            v = dict(variants[0])
            attr = rng.choices(("color", "pattern", "material"), weights=(6, 2, 2))[0]
            pool = {"color": list(COLORS), "pattern": list(PATTERNS), "material": MATERIALS[leaf.root]}[attr]
            v[attr] = rng.choice(pool)
            if v not in variants:
                variants.append(v)
        for v in variants:
            if len(products) < n:
                products.append(Product(f"p{len(products):06d}", leaf, family=family, **v))
        family += 1
    return products


def _maybe_typo(word: str, rng: random.Random, p: float) -> str:
    if len(word) < 4 or rng.random() >= p:
        return word
    i = rng.randrange(1, len(word) - 1)
    if rng.random() < 0.5:
        return word[:i] + word[i + 1:]  # dropped letter
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]  # swapped letters


def color_word(color: str, rng: random.Random, p_synonym: float = 0.3) -> str:
    return rng.choice(COLORS[color][1]) if rng.random() < p_synonym else color


def leaf_word(leaf: Leaf, rng: random.Random, p_synonym: float = 0.35) -> str:
    return rng.choice(leaf.synonyms) if rng.random() < p_synonym else leaf.name


def make_title(p: Product, rng: random.Random) -> str:
    """A seller's title: noisy, partial, reordered; 3 % carry a wrong colour."""
    color = p.color if rng.random() > 0.03 else rng.choice(list(COLORS))
    parts: list[str] = []
    if rng.random() < 0.8:
        parts.append(p.brand)
    attrs = []
    if rng.random() < 0.85:
        attrs.append(color_word(color, rng))
    if p.pattern != "solid" and rng.random() < 0.7:
        attrs.append(rng.choice([p.pattern] + PATTERNS[p.pattern]))
    if rng.random() < 0.7:
        attrs.append(p.material)
    rng.shuffle(attrs)
    parts += attrs + [leaf_word(p.leaf, rng)]
    if rng.random() < 0.5:
        marketing = rng.sample(MARKETING, rng.randint(1, 2))
        parts = marketing + parts if rng.random() < 0.5 else parts + marketing
    title = " ".join(parts)
    return title.title() if rng.random() < 0.3 else title


def make_text_query(p: Product, rng: random.Random) -> str:
    """What a shopper types for ``p``: a product word plus 0–2 attribute words, lower case, with typos."""
    words = [leaf_word(p.leaf, rng, 0.4)]
    extras = [color_word(p.color, rng, 0.25)]
    if p.pattern != "solid":
        extras.append(rng.choice([p.pattern] + PATTERNS[p.pattern]))
    extras += [p.material, p.brand]
    k = rng.choices((0, 1, 2), weights=(2, 5, 3))[0]
    chosen = rng.sample(extras, min(k, len(extras)))
    words = chosen + words if rng.random() < 0.8 else words + chosen
    return " ".join(_maybe_typo(w.lower(), rng, 0.12) for w in words)


def make_modifier(p: Product, rng: random.Random) -> str:
    """The text half of a multimodal query: 'like this, but red'."""
    c = color_word(p.color, rng, 0.25)
    return rng.choice((f"in {c}", f"{c} one", f"same but {c}", f"{c} version", f"{c} {leaf_word(p.leaf, rng)}"))
