"""The shared MOON model package: no click, no artifact I/O.

    from moon_cli.model import MoonModel
    model = MoonModel.from_preset("tiny")
    vecs = model.encode_products([{"title": ..., "category_path": [...], "attributes": [...], "images": [...]}])
"""

from moon_cli.model.config import MoonConfig
from moon_cli.model.images import InputError
from moon_cli.model.moe import GuidedMoE, load_balancing_loss
from moon_cli.model.moon import MoonModel, MoonOutput
from moon_cli.model.pooling import POOLING_MODES, balanced_pool, mean_pool
from moon_cli.model.processor import Batch, MoonProcessor, TokenType

__all__ = ["MoonModel", "MoonConfig", "MoonOutput", "MoonProcessor", "Batch", "TokenType", "GuidedMoE",
           "InputError", "load_balancing_loss", "mean_pool", "balanced_pool", "POOLING_MODES"]
