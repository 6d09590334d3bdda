"""The marketplace's vocabulary: a 3-level category tree, attribute types, and the words people use.

Visible attributes (colour, pattern) change how a product looks; text-only attributes (material,
brand) appear only in titles and attribute lists. Each leaf category has its own silhouette.
"""

from __future__ import annotations

from dataclasses import dataclass

# root -> level 2 -> leaves; each leaf: (name, synonyms used by sellers and shoppers)
TREE: dict[str, dict[str, list[tuple[str, list[str]]]]] = {
    "Apparel": {
        "Tops": [("T-shirt", ["tee", "tshirt"]), ("Shirt", ["button-down", "blouse"]),
                 ("Hoodie", ["sweatshirt", "pullover"])],
        "Bottoms": [("Jeans", ["denim pants"]), ("Shorts", ["short pants"]), ("Skirt", ["midi skirt"])],
        "Footwear": [("Sneakers", ["trainers", "running shoes"]), ("Boots", ["ankle boots"]),
                     ("Sandals", ["flip flops"])],
    },
    "Home": {
        "Kitchen": [("Mug", ["coffee cup", "cup"]), ("Teapot", ["tea kettle"]), ("Bowl", ["salad bowl"])],
        "Decor": [("Vase", ["flower pot"]), ("Lamp", ["desk light", "table lamp"]), ("Wall clock", ["clock"])],
        "Textiles": [("Pillow", ["cushion"]), ("Rug", ["carpet", "mat"]), ("Towel", ["bath towel"])],
    },
    "Electronics": {
        "Phones": [("Smartphone", ["mobile phone", "cellphone"]), ("Phone case", ["phone cover"]),
                   ("Charger", ["power adapter"])],
        "Audio": [("Headphones", ["headset"]), ("Speaker", ["bluetooth speaker"]), ("Earbuds", ["wireless earphones"])],
        "Computers": [("Laptop", ["notebook"]), ("Keyboard", ["mechanical keyboard"]), ("Mouse", ["wireless mouse"])],
    },
    "Sports": {
        "Fitness": [("Dumbbell", ["hand weight"]), ("Yoga mat", ["exercise mat"]), ("Kettlebell", ["kettle bell"])],
        "Outdoor": [("Tent", ["camping tent"]), ("Backpack", ["rucksack", "daypack"]), ("Water bottle", ["flask"])],
        "Ball games": [("Football", ["soccer ball"]), ("Basketball", ["hoop ball"]), ("Tennis racket", ["racquet"])],
    },
}

# colour name -> (RGB, synonyms); visible
COLORS: dict[str, tuple[tuple[int, int, int], list[str]]] = {
    "red": ((206, 32, 41), ["crimson", "scarlet"]),
    "blue": ((30, 80, 200), ["navy", "cobalt"]),
    "green": ((40, 160, 60), ["emerald", "olive"]),
    "yellow": ((240, 210, 30), ["lemon", "mustard"]),
    "black": ((20, 20, 20), ["jet black", "ebony"]),
    "white": ((245, 245, 245), ["ivory", "snow white"]),
    "pink": ((240, 120, 170), ["rose", "blush"]),
    "purple": ((120, 50, 160), ["violet", "lilac"]),
    "orange": ((245, 130, 20), ["tangerine"]),
    "brown": ((120, 75, 40), ["chocolate", "tan"]),
    "grey": ((128, 128, 128), ["gray", "charcoal"]),
    "teal": ((0, 140, 140), ["turquoise", "aqua"]),
}

PATTERNS: dict[str, list[str]] = {  # visible
    "solid": ["plain"],
    "striped": ["stripes", "stripe"],
    "dotted": ["polka dot", "dots"],
    "checked": ["plaid", "checkered"],
}

# text-only attributes; materials are plausible per root category
MATERIALS: dict[str, list[str]] = {
    "Apparel": ["cotton", "linen", "wool", "polyester", "leather", "denim"],
    "Home": ["ceramic", "glass", "bamboo", "cotton", "metal", "wool"],
    "Electronics": ["plastic", "aluminium", "silicone", "metal", "glass"],
    "Sports": ["rubber", "nylon", "steel", "foam", "plastic", "leather"],
}

BRANDS = [
    "Aurora", "Bolt", "Cedar", "Dune", "Ember", "Fjord", "Granite", "Harbor", "Iris", "Juniper",
    "Kite", "Lumen", "Meadow", "Nimbus", "Orchid", "Pioneer", "Quartz", "Ridge", "Sierra", "Tundra",
]

ATTRIBUTE_TYPES = ("color", "pattern", "material", "brand")
VISIBLE_ATTRIBUTES = ("color", "pattern")

MARKETING = [
    "hot sale", "new arrival", "2024 new", "free shipping", "best seller", "limited edition", "premium",
    "top quality", "gift idea", "official store", "clearance", "trending",
]

# silhouettes: (shape kind, aspect width/height); one per leaf, assigned in tree order
SHAPES = ("rect", "ellipse", "triangle", "diamond", "hexagon", "star", "cross", "tee", "arch", "trapezoid", "ring",
          "pill")
ASPECTS = (0.6, 1.0, 1.6)


@dataclass(frozen=True)
class Leaf:
    index: int
    path: tuple[str, str, str]  # root, level 2, leaf
    synonyms: tuple[str, ...]
    shape: str
    aspect: float

    @property
    def name(self) -> str:
        return self.path[-1]

    @property
    def root(self) -> str:
        return self.path[0]


def leaves() -> list[Leaf]:
    out = []
    for root, mids in TREE.items():
        for mid, items in mids.items():
            for name, synonyms in items:
                i = len(out)
                # shape and aspect cycle at different rates so every leaf gets a distinct pair
                out.append(Leaf(i, (root, mid, name), tuple(synonyms), SHAPES[i % len(SHAPES)],
                                ASPECTS[(i // len(SHAPES)) % len(ASPECTS)]))
    return out


def category_names(level: int) -> list[str]:
    """All distinct category names at ``level`` (0 = root), in tree order."""
    seen: dict[str, None] = {}
    for leaf in leaves():
        seen.setdefault(leaf.path[level], None)
    return list(seen)


def attribute_values(name: str) -> list[str]:
    if name == "color":
        return list(COLORS)
    if name == "pattern":
        return list(PATTERNS)
    if name == "material":
        return sorted({m for ms in MATERIALS.values() for m in ms})
    if name == "brand":
        return list(BRANDS)
    raise KeyError(name)
