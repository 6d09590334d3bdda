"""Backbones of the Qwen2-VL family (Qwen2-VL, Qwen2.5-VL, Qwen3-VL): the presets' (model/preset.py), and any hub
id or local path.

Only the base model (vision tower + language model, no LM head) is kept: MOON pools hidden states.
``trust_remote_code`` is never used.
"""

from __future__ import annotations

import torch

from moon_cli.errors import MoonError
from moon_cli.model.preset import PAPER_BACKBONE, PRESETS, load

SUPPORTED_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")


def _classes(family: str):
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLModel, Qwen2VLConfig,
                              Qwen2VLForConditionalGeneration, Qwen2VLModel, Qwen3VLConfig,
                              Qwen3VLForConditionalGeneration, Qwen3VLModel)

    return {
        "qwen2_vl": (Qwen2VLConfig, Qwen2VLModel, Qwen2VLForConditionalGeneration),
        "qwen2_5_vl": (Qwen2_5_VLConfig, Qwen2_5_VLModel, Qwen2_5_VLForConditionalGeneration),
        "qwen3_vl": (Qwen3VLConfig, Qwen3VLModel, Qwen3VLForConditionalGeneration),
    }[family]


def preset_backbone_config(name: str, tokenizer):
    """A Qwen2.5-VL / Qwen3-VL config for a random-init preset, wired to ``tokenizer``'s special-token ids."""
    from moon_cli.model.tokenizer import BOS, EOS, IMAGE_PAD, VIDEO_PAD, VISION_END, VISION_START

    p = load(name)
    config_cls = _classes(p.family)[0]
    _check_settings(p, config_cls)
    ids = dict(zip(("vs", "ve", "img", "vid", "bos", "eos"),
                   tokenizer.convert_tokens_to_ids([VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD, BOS, EOS])))
    return config_cls(
        text_config=dict(p.text, vocab_size=max(p.vocab_size, len(tokenizer)), bos_token_id=ids["bos"],
                         eos_token_id=ids["eos"], pad_token_id=tokenizer.pad_token_id),
        vision_config=dict({"patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2}, **p.vision),
        image_token_id=ids["img"], video_token_id=ids["vid"], vision_start_token_id=ids["vs"],
        vision_end_token_id=ids["ve"],
    )


def _check_settings(p, config_cls) -> None:
    """Every [text] / [vision] key of a preset file is a setting of its family's config (Hugging Face would keep a
    misspelt key as a stray attribute and build the default in its place)."""
    defaults = config_cls()
    for table, sub in (("text", defaults.text_config), ("vision", defaults.vision_config)):
        unknown = [k for k in getattr(p, table) if not hasattr(sub, k)]
        if unknown:
            raise MoonError(f"{p.source}: {table}.{unknown[0]} is not a setting of {type(sub).__name__}")


def init_preset_weights(model, name: str) -> None:
    """Preset-specific initialisation on top of the Hugging Face default (see ``embedding_std``)."""
    std = load(name).embedding_std
    if std is None:
        return
    with torch.no_grad():
        model.get_input_embeddings().weight.normal_(0.0, std)
        # visual tokens at the same scale as text tokens, so neither drowns the other in the residual stream
        out = [m for m in model.visual.merger.modules() if isinstance(m, torch.nn.Linear)][-1]
        out.weight.normal_(0.0, std / out.in_features ** 0.5 * 2.0)  # ×2: GELU halves the input's spread
        out.bias.zero_()


def build_from_config(hf_config, attn_implementation: str = "sdpa", dtype: str = "float32"):
    """A random-init base model (vision + language) from a Qwen2-VL-family config."""
    family = hf_config.model_type
    model_cls = _classes(family)[1]
    hf_config._attn_implementation = attn_implementation
    model = model_cls(hf_config)
    return model.to(getattr(torch, dtype))


def check_family(hf_config, name: str) -> str:
    family = getattr(hf_config, "model_type", None)
    if family not in SUPPORTED_FAMILIES:
        raise MoonError(f"backbone '{name}' is a '{family}' model; supported: Qwen2-VL / Qwen2.5-VL / Qwen3-VL models "
                        f"(model types {', '.join(SUPPORTED_FAMILIES)}, e.g. {PAPER_BACKBONE}) or the presets "
                        f"{', '.join(PRESETS)}")
    return family


def load_hub_config(name: str, revision: str | None = None):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name, revision=revision)
    except (OSError, ValueError) as exc:
        raise MoonError(f"cannot load backbone '{name}': {str(exc).splitlines()[0]} — give a local path, a "
                        f"reachable hub id, or the preset 'tiny'") from None


def load_pretrained(name: str, revision: str | None, attn_implementation: str, dtype: str):
    """The base model of a Qwen2-VL-family checkpoint (hub id or local path); the LM head is dropped."""
    hf_config = load_hub_config(name, revision)
    family = check_family(hf_config, name)
    full_cls = _classes(family)[2]
    full = full_cls.from_pretrained(name, revision=revision, dtype=getattr(torch, dtype),
                                    attn_implementation=attn_implementation)
    return full.model, family
