"""The training plan: the one place that decides a run's complete model and training configuration.

    plan(resolve("mini"), {"steps": 60}, Variant(arch="dual"))
        →  TrainPlan(train=TrainConfig(...), config=MoonConfig(...))

Each value comes from the first of: the user's flag → the start model's recipe (``recipes.toml``: a preset's,
also for a checkpoint trained from it) → ``TrainConfig``'s default. The model's configuration is the start
model's (a preset file, a checkpoint's config.json, or the defaults with LoRA for a hub backbone), then the user's
``--config`` overrides (a new model only), then what the variant asks (``--arch dual``, ``--no-moe``,
``--no-crops``, ``--matryoshka``, ``--gradient-checkpointing``). Pure: nothing is loaded but a config.json.
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from pathlib import Path

from moon_cli.errors import MoonError
from moon_cli.model.config import MoonConfig
from moon_cli.model.preset import preset_config
from moon_cli.model.resolve import CONFIG, ModelRef
from moon_cli.train.config import TrainConfig

RECIPES = Path(__file__).with_name("recipes.toml")
TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig))


@dataclass(frozen=True)
class Variant:
    """What the ablation flags change about the model itself."""
    arch: str = "moon"  # moon | dual (the CLIP-style baseline: two towers, one photo, no crops, no MoE)
    use_moe: bool = True
    use_crops: bool = True


@dataclass
class TrainPlan:
    start: ModelRef  # the model training starts from
    train: TrainConfig
    config: MoonConfig  # the model's configuration once built (a checkpoint's family and LoRA stay its own)
    recipe: dict = field(default_factory=dict)  # what the start model's recipe set
    add_moe: bool = False  # a dense checkpoint gains the guided MoE (experts copied from its trained FFNs)

    def to_dict(self) -> dict:
        return {"model": self.start.name, "kind": self.start.kind, "recipe": self.recipe,
                "train": asdict(self.train), "model_config": self.config.to_dict()}


@cache
def recipes() -> dict[str, dict]:
    """preset → the TrainConfig values its recipe sets (parents merged in)."""
    try:
        data = tomllib.loads(RECIPES.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise MoonError(f"{RECIPES}: not a readable recipe file ({exc})") from None
    out: dict[str, dict] = {}
    for name in data:
        out[name] = _recipe(data, name, ())
    return out


def _recipe(data: dict, name: str, chain: tuple[str, ...]) -> dict:
    table = dict(data[name])
    parent = table.pop("inherits", None)
    unknown = [k for k in table if k not in TRAIN_KEYS]
    if unknown:
        raise MoonError(f"{RECIPES}: [{name}] {unknown[0]} is not a training setting; known: {', '.join(TRAIN_KEYS)}")
    if parent is None:
        return table
    if parent not in data or parent in (*chain, name):
        raise MoonError(f"{RECIPES}: [{name}] inherits = '{parent}', which is "
                        + ("no recipe" if parent not in data else "a circle"))
    return {**_recipe(data, parent, (*chain, name)), **table}


def recipe_for(ref: ModelRef) -> dict:
    """The training defaults of the model ``ref`` names: its preset's recipe (none for a hub backbone)."""
    return dict(recipes().get(ref.preset, {})) if ref.preset else {}


def plan(ref: ModelRef, flags: dict, variant: Variant = Variant(), overrides: dict | None = None) -> TrainPlan:
    """The complete configuration of a run. ``flags``: TrainConfig fields the user gave (None: not given)."""
    unknown = set(flags) - set(TRAIN_KEYS)
    if unknown:
        raise ValueError(f"plan(): {sorted(unknown)} are not TrainConfig fields")
    given = {k: v for k, v in flags.items() if v is not None}
    recipe = recipe_for(ref)
    values = {**asdict(TrainConfig()), **recipe, **given}
    if variant.arch == "dual" or values["grad_cache"]:  # the alignment term needs MOON's one sequence
        if given.get("align_weight"):
            raise MoonError(f"moon train: --align-weight aligns the photo and text tokens of MOON's one sequence; it "
                            f"does not combine with {'--arch dual' if variant.arch == 'dual' else '--grad-cache'}")
        values["align_weight"] = 0.0  # a recipe's term applies where it can
    train = TrainConfig(**values)
    if train.objective == "pretrain" and train.catalog_views:
        raise MoonError("moon train: --catalog-views is a post-training option; --objective pretrain already "
                        "trains on every catalogue photo")
    config, add_moe = _model_config(ref, variant, overrides or {})
    if train.matryoshka_dims:
        config.pooling.matryoshka_dims = list(train.matryoshka_dims)
    if train.gradient_checkpointing:
        config.backbone.gradient_checkpointing = True
    return TrainPlan(start=ref, train=train, config=config, recipe=recipe, add_moe=add_moe)


def _model_config(ref: ModelRef, variant: Variant, overrides: dict) -> tuple[MoonConfig, bool]:
    if ref.kind == "baseline":
        raise MoonError(f"model '{ref.name}' is a pretrained reference baseline, not a MOON model; it embeds "
                        f"(`moon embed`, `moon evaluate`) but cannot be trained as MOON")
    if ref.kind == "checkpoint":
        return _checkpoint_config(ref, variant, overrides)
    if ref.kind == "preset":
        config = preset_config(ref.name)
    else:  # a hub backbone: LoRA on the LLM, the paper's recipe
        config = MoonConfig()
        config.backbone.name = ref.name
        config.lora.enabled = True
    changes = copy.deepcopy(overrides)
    if not variant.use_moe:
        changes.setdefault("moe", {})["enabled"] = False
    if variant.arch == "dual":  # two towers, one photo per product, no crops, no MoE
        changes.setdefault("backbone", {})["arch"] = "dual"
        changes.setdefault("moe", {})["enabled"] = False
        changes.setdefault("input", {}).update(use_crops=False, max_images=1)
    if not variant.use_crops:
        changes.setdefault("input", {})["use_crops"] = False
    return config.updated(changes), False


def _checkpoint_config(ref: ModelRef, variant: Variant, overrides: dict) -> tuple[MoonConfig, bool]:
    """Continue from a checkpoint (e.g. a pre-training run) as the variant asks: a dense checkpoint gets the guided
    MoE (MOON Embedding's variants all start from one pre-trained model), ``--arch dual`` reads it with two towers;
    an MoE checkpoint cannot drop its experts. Of ``--config``, only ``moe`` applies (to the experts added)."""
    config = MoonConfig.load(ref.path / CONFIG)
    if not variant.use_moe and config.moe.enabled:
        raise MoonError(f"--no-moe: the checkpoint {ref.name} was trained with the guided MoE; start the ablation "
                        f"from a dense checkpoint (pre-train with --no-moe) or a new model")
    add_moe = False
    if variant.arch == "dual":
        if config.moe.enabled:
            raise MoonError(f"--arch dual: the checkpoint {ref.name} has the guided MoE; the dual encoder has none "
                            f"— start it from a dense checkpoint (pre-train with --no-moe)")
        config.backbone.arch = "dual"
        config.input.use_crops, config.input.max_images = False, 1
    elif variant.use_moe and not config.moe.enabled:
        start = preset_config(ref.preset) if ref.preset else MoonConfig()
        config.moe = start.updated({"moe": overrides.get("moe", {})}).moe
        add_moe = True
    config.input.use_crops = config.input.use_crops and variant.use_crops
    return config, add_moe
