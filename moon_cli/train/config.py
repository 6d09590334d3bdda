"""How a run trains: the one dataclass `moon train`'s plan fills (moon_cli/train/plan.py) and run.json records.

The values here are the defaults of every backbone; a preset's recipe (recipes.toml) changes some of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    objective: str = "posttrain"  # posttrain (query → purchased product) | pretrain (photo → own text)
    steps: int = 200
    batch_size: int = 16
    lr: float = 2e-4
    new_lr: float | None = None  # rate of the weights with no pretrained value (projector, routers); None = lr
    # train only those new weights (LLaVA's feature-alignment stage: the projector learns to speak to the
    # pretrained layers while they, and what they know, stay as they are)
    freeze_pretrained: bool = False
    weight_decay: float = 0.01
    warmup: float = 0.05  # share of steps with linear warm-up
    temperature: float = 0.05  # initial τ
    learn_temperature: bool = True
    temperature_lr: float = 1e-2  # own rate for log(1/τ): at the model's rate a raw 1/τ never moved in a run
    hard_negatives: int = 1  # hard negatives per query drawn from --negatives each step
    use_hard_negatives: bool = True
    catalog_views: bool = False  # also train on listings' other photos as image queries (posttrain)
    queue_size: int = 512
    use_queue: bool = True
    use_gather: bool = True
    matryoshka_dims: list[int] = field(default_factory=list)
    # weight of the intra-product image↔text alignment term (MOON2.0): each product's visual-token mean
    # against its own text-token mean, InfoNCE over the batch's products (0 = off, the paper's MOON)
    align_weight: float = 0.0
    grad_cache: bool = False
    chunk_size: int = 8
    modality_mix: dict[str, float] = field(default_factory=lambda: {"image": 12, "text": 3, "multimodal": 2})
    val_every: int = 50
    val_fraction: float = 0.1  # held out only when val_every > 0: otherwise every pair trains
    holdout_splits: list[str] = field(default_factory=list)  # mine-pairs splits kept out of training (e.g. test)
    max_val: int = 500
    val_gallery: int = 1000
    checkpoint_every: int = 50
    keep_checkpoints: int = 2
    max_nan_steps: int = 3
    grad_clip: float = 1.0
    bf16: bool = False
    gradient_checkpointing: bool = False
    fsdp: bool = False  # shard the model over the ranks (FSDP2; moon_cli/train/fsdp.py) instead of replicating it
    seed: int = 0
