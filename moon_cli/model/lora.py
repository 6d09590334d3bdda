"""LoRA on the language model's linear layers (attention, shared FFN and experts) through peft.

The vision tower gets no adapters. The MoE routers are new weights: they stay fully trainable.
"""

from __future__ import annotations

from torch import nn

from moon_cli.model.config import LoRAConfig


def target_regex(targets: list[str]) -> str:
    # language-model linears only: "...language_model.layers.3.mlp.experts.1.gate_proj" matches,
    # "...visual.blocks.0.mlp.gate_proj" does not
    return r".*language_model\.layers\.\d+\..*(" + "|".join(targets) + r")$"


def apply_lora(backbone: nn.Module, cfg: LoRAConfig) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                        target_modules=target_regex(cfg.targets), bias="none")
    model = get_peft_model(backbone, config)
    for name, param in model.named_parameters():
        if ".router." in name:
            param.requires_grad = True
    return model


def merge_lora(backbone: nn.Module) -> nn.Module:
    """Fold the adapters into the base weights; returns the plain backbone."""
    return backbone.merge_and_unload()
