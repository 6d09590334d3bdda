"""The presets, kept as data: ``presets/NAME.toml``, one file each — a backbone's shape (``family``, ``text``,
``vision``, ``vocab_size``, ``embedding_std``) and the MoonConfig sections it sets (``[model.*]``).

A preset may start from another: ``inherits = "tiny"`` takes the parent's tables and merges its own into them
(tables merge key by key, other values replace), and ``unset = ["vision.window_size"]`` drops a parent's key.
How a preset trains is not here: that is ``moon_cli/train/recipes.toml``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from moon_cli.errors import MoonError
from moon_cli.model.config import MoonConfig

PRESET_DIR = Path(__file__).with_name("presets")
PAPER_BACKBONE = "Qwen/Qwen2.5-VL-3B-Instruct"
FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "moon_mini")  # moon_mini: pretrained parts (model/mini.py)
KEYS = ("inherits", "unset", "family", "vocab_size", "embedding_std", "text", "vision", "model")
PRESETS = tuple(sorted(p.stem for p in PRESET_DIR.glob("*.toml")))


@dataclass(frozen=True)
class Preset:
    name: str
    family: str
    source: Path  # the file it was read from (errors name it)
    text: dict = field(default_factory=dict)  # the HF text config's settings (random-init families)
    vision: dict = field(default_factory=dict)  # the HF vision config's settings
    vocab_size: int = 0
    embedding_std: float | None = None  # token-embedding init scale (random init); None: Hugging Face's
    model: dict = field(default_factory=dict)  # MoonConfig sections: {"input": {...}, "pooling": {...}, ...}

    @property
    def random_init(self) -> bool:
        return self.family != "moon_mini"

    def config(self) -> MoonConfig:
        """MoonConfig's defaults with this preset's sections, its name and family filled in."""
        config = MoonConfig.from_dict(self.model, f"{self.source} [model]")
        config.backbone.name, config.backbone.family = self.name, self.family
        return config


def preset_config(name: str) -> MoonConfig:
    """The model configuration a preset starts from."""
    return load(name).config()


def is_preset(name: str) -> bool:
    return name in PRESETS


@cache
def load(name: str) -> Preset:
    if name not in PRESETS:
        raise MoonError(f"unknown preset '{name}'; available presets: {', '.join(PRESETS)} "
                        f"(or a Qwen2-VL / Qwen2.5-VL / Qwen3-VL hub id or local path, e.g. {PAPER_BACKBONE})")
    path = PRESET_DIR / f"{name}.toml"
    data = _read(path, ())
    if data.get("family") not in FAMILIES:
        raise MoonError(f"{path}: family '{data.get('family')}' is not one of {', '.join(FAMILIES)}")
    preset = Preset(name=name, source=path, **data)
    preset.config()  # a [model] key MoonConfig does not know fails here, naming the file
    return preset


def _read(path: Path, chain: tuple[str, ...]) -> dict:
    """The file's settings with its parents' merged under them."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise MoonError(f"{path}: not a readable preset file ({exc})") from None
    unknown = [k for k in data if k not in KEYS]
    if unknown:
        raise MoonError(f"{path}: unknown key '{unknown[0]}'; a preset file knows {', '.join(KEYS)}")
    parent, unset = data.pop("inherits", None), data.pop("unset", [])
    if parent is not None:
        if parent not in PRESETS:
            raise MoonError(f"{path}: inherits = '{parent}', which is no preset ({', '.join(PRESETS)})")
        if parent in chain or parent == path.stem:
            raise MoonError(f"{path}: inherits = '{parent}' runs in a circle "
                            f"({' → '.join((*chain, path.stem, parent))})")
        data = _merged(_read(PRESET_DIR / f"{parent}.toml", (*chain, path.stem)), data)
    for dotted in unset:
        *tables, key = dotted.split(".")
        table = data
        for t in tables:
            table = table.get(t, {})
        if key not in table:
            raise MoonError(f"{path}: unset = '{dotted}', a key its parent does not set")
        del table[key]
    return data


def _merged(base: dict, child: dict) -> dict:
    out = dict(base)
    for key, value in child.items():
        out[key] = _merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out
