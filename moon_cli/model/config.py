"""MOON model configuration: small nested dataclasses, saved as ``config.json`` beside the weights."""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from moon_cli.errors import MoonError


@dataclass
class BackboneConfig:
    arch: str = "moon"  # moon: one sequence reads the whole product; dual: separate image / text towers (baseline)
    name: str = "tiny"  # "tiny" (random-init preset) or a Hugging Face id / local path (Qwen2-VL family)
    revision: str | None = None  # hub revision of ``name`` (recorded for reproducibility)
    family: str = "qwen2_5_vl"  # qwen2_vl | qwen2_5_vl
    dtype: str = "float32"  # float32 | bfloat16
    attn_implementation: str = "sdpa"
    freeze_vision: bool = True  # the vision tower is frozen by default (the paper tunes the LLM)
    gradient_checkpointing: bool = False


@dataclass
class InputConfig:
    image_size: int = 112  # images are resized to at most image_size² pixels (28 px per LLM token)
    max_images: int = 4  # product photos used per product (the rest are dropped)
    use_crops: bool = True  # add a crop of the core product beside each photo (when a box is known)
    # scale each crop up to its photo's area (aspect kept), so the core product gets as many visual tokens as
    # the photo instead of the 4-16 of its native size: the crop then magnifies the product, not only isolates it
    magnify_crops: bool = False
    max_text_tokens: int = 96  # per text field group (title / category / attributes / query)


@dataclass
class MoEConfig:
    enabled: bool = True
    layers: list[int] | None = None  # decoder layers whose FFN becomes a guided MoE; None = upper half
    num_experts: int = 4  # routed experts
    top_k: int = 1
    designated: bool = True  # category / attribute experts that category / attribute tokens always use
    balance_weight: float = 0.01  # weight of the load-balancing loss


@dataclass
class LoRAConfig:
    enabled: bool = False  # tiny trains fully (nothing pretrained to preserve); hub backbones use LoRA
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                                        "gate_proj", "up_proj", "down_proj"])


POOLING_MODES = ("mean", "balanced")  # model/pooling.py implements each


def check_mode(mode: str, source: str = "pooling.mode") -> str:
    if mode not in POOLING_MODES:
        raise MoonError(f"{source}: unknown pooling mode '{mode}'; use one of {', '.join(POOLING_MODES)}")
    return mode


@dataclass
class PoolingConfig:
    mode: str = "mean"  # mean | balanced (model/pooling.py); the paper's is mean; presets may choose another
    matryoshka_dims: list[int] = field(default_factory=list)  # prefix sizes served (and trained) besides the full one
    # weights of a backbone's zero-training visual prior in balanced pooling's visual half (model/prior.py; `mini`):
    # the ImageNet class anchor (photos in the text's space) and the feature detail (photos apart from each other)
    prior_anchor: float = 0.0
    prior_detail: float = 0.0
    prior_colour: float = 0.0  # the basic colour terms' share of the anchor (model/prior.py)


@dataclass
class MoonConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    input: InputConfig = field(default_factory=InputConfig)
    moe: MoEConfig = field(default_factory=MoEConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    pooling: PoolingConfig = field(default_factory=PoolingConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "MoonConfig":
        kwargs = {}
        for f in dataclasses.fields(cls):
            sub = data.get(f.name, {})
            sub_cls = f.default_factory().__class__
            known = {g.name for g in dataclasses.fields(sub_cls)}
            unknown = set(sub) - known
            if unknown:
                raise MoonError(f"{source}: unknown key(s) {sorted(unknown)} in '{f.name}'; known: {sorted(known)}")
            kwargs[f.name] = sub_cls(**sub)
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise MoonError(f"{source}: unknown section(s) {sorted(unknown)}")
        check_mode(kwargs["pooling"].mode, f"{source}: pooling.mode")
        return cls(**kwargs)

    @classmethod
    def load(cls, path: Path) -> "MoonConfig":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise MoonError(f"{path}: cannot read the model config ({exc})") from None
        return cls.from_dict(data, str(path))

    def assign(self, other: "MoonConfig") -> None:
        """Take ``other``'s values in place, keeping the section objects (a model's processor holds its input
        section)."""
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            for g in dataclasses.fields(mine):
                setattr(mine, g.name, copy.deepcopy(getattr(theirs, g.name)))

    def updated(self, overrides: dict, source: str = "overrides") -> "MoonConfig":
        """A copy with nested overrides applied, e.g. ``{"moe": {"enabled": False}}`` (``source``: where they came
        from, for errors)."""
        data = self.to_dict()
        for section, values in overrides.items():
            data.setdefault(section, {}).update(values)
        return MoonConfig.from_dict(data, source)
