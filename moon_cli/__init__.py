"""moon: MOON multimodal product representation learning as composable CLI stages."""

__version__ = "0.1.0"
