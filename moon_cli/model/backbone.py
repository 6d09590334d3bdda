"""Backbones of the Qwen2-VL family (Qwen2-VL, Qwen2.5-VL, Qwen3-VL): the presets, and any hub id or local path.

Only the base model (vision tower + language model, no LM head) is kept: MOON pools hidden states.
``trust_remote_code`` is never used.
"""

from __future__ import annotations

import torch

from moon_cli.errors import MoonError

SUPPORTED_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
PAPER_BACKBONE = "Qwen/Qwen2.5-VL-3B-Instruct"


def _classes(family: str):
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLModel, Qwen2VLConfig,
                              Qwen2VLForConditionalGeneration, Qwen2VLModel, Qwen3VLConfig,
                              Qwen3VLForConditionalGeneration, Qwen3VLModel)

    return {
        "qwen2_vl": (Qwen2VLConfig, Qwen2VLModel, Qwen2VLForConditionalGeneration),
        "qwen2_5_vl": (Qwen2_5_VLConfig, Qwen2_5_VLModel, Qwen2_5_VLForConditionalGeneration),
        "qwen3_vl": (Qwen3VLConfig, Qwen3VLModel, Qwen3VLForConditionalGeneration),
    }[family]


# Random-init presets of the real architecture — the model's shape and how it reads and pools its input; the
# training recipe that suits each lives beside TrainConfig (train/trainer.py, RECIPES).
# "tiny": trains on 2 CPU cores in minutes (≈5 M params).
# "qwen2.5-vl-3b-shape": Qwen2.5-VL-3B's dimensions with random weights, for throughput benchmarks.
PRESETS = {
    "tiny": dict(
        text=dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=4096,
                  rope_parameters={"rope_type": "default", "mrope_section": [8, 12, 12], "rope_theta": 1e6}),
        vision=dict(depth=4, hidden_size=192, intermediate_size=384, num_heads=3, out_hidden_size=256,
                    window_size=112, fullatt_block_indexes=[3]),
        vocab_size=1024,
        # Token embeddings at unit scale, not the 0.02 of a pretrained model's init: a random-init stack then
        # starts as a bag of token vectors (mean pooling keeps which words a text holds) instead of
        # collapsing every sequence onto one direction, which contrastive training on CPU cannot undo fast.
        embedding_std=1.0,
        # one photo (+ its crop) per product: visual tokens dominate the cost on CPU (4 photos ran ~2× slower;
        # 2 photos ran 1.2× slower and scored no better on the reproduce world, seed 0). The crop is scaled to
        # the photo's area: image→product 0.075 → 0.130 there.
        input=dict(max_images=1, magnify_crops=True),
        # balanced pooling: on the reproduce world (seed 0) multimodal 0.015 → 0.135, product→product
        # 0.78 → 0.985, attributes 0.31 → 0.585 against the plain mean (README "What made the tiny model learn")
        pooling=dict(mode="balanced"),
    ),
    # "tiny-qwen3": the same scale on the Qwen3-VL architecture (16-px patches, DeepStack visual features fed
    # into the first decoder layers), so CPU tests cover the family of Qwen3-VL-Embedding
    "tiny-qwen3": dict(
        family="qwen3_vl",
        text=dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=64, max_position_embeddings=4096,
                  rope_parameters={"rope_type": "default", "mrope_section": [8, 12, 12], "mrope_interleaved": True,
                                   "rope_theta": 1e6}),
        vision=dict(depth=4, hidden_size=192, intermediate_size=384, num_heads=3, out_hidden_size=256, patch_size=16,
                    deepstack_visual_indexes=[1, 2], num_position_embeddings=256),
        vocab_size=1024,
        embedding_std=1.0,
        input=dict(max_images=1, magnify_crops=True),
        pooling=dict(mode="balanced"),
    ),
    # "mini": pretrained parts from registry wheels — EfficientNet-Lite0 (ImageNet) + a trained projector +
    # all-MiniLM-L6-v2's layers, one sequence (model/mini.py); not random-init, so its vision stays frozen.
    "mini": dict(
        family="moon_mini",
        # 192 px: the ImageNet classifier behind the visual prior needs it (ConSE on the real-photo bench, text →
        # photo R@10: 0.340 at 128 px, 0.417 at 192, 0.447 at 224); the batch norms folded into the convolutions
        # keep the tower's speed (123 photos/s at 192 against 130 at 128 before); the 6 × 6 map pools to 4 × 4
        input=dict(max_images=1, image_size=192, magnify_crops=True),
        # the zero-training prior's weights (model/prior.py), measured on the real-photo bench
        pooling=dict(mode="balanced", prior_anchor=0.4, prior_detail=0.45, prior_colour=0.35),
    ),
    "qwen2.5-vl-3b-shape": dict(
        text=dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                  num_key_value_heads=2, max_position_embeddings=128000,
                  rope_parameters={"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1e6}),
        vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                    window_size=112, fullatt_block_indexes=[7, 15, 23, 31]),
        vocab_size=151936,
    ),
}


def preset_family(name: str) -> str:
    """The backbone family a preset builds: qwen2_5_vl / qwen3_vl (random init) or moon_mini (pretrained parts)."""
    if name not in PRESETS:
        raise MoonError(f"unknown preset '{name}'; available presets: {', '.join(PRESETS)} "
                        f"(or a Qwen2-VL / Qwen2.5-VL / Qwen3-VL hub id or local path, e.g. {PAPER_BACKBONE})")
    return PRESETS[name].get("family", "qwen2_5_vl")


def is_random_init(name: str) -> bool:
    return preset_family(name) != "moon_mini"


def preset_backbone_config(name: str, tokenizer):
    """A Qwen2.5-VL / Qwen3-VL config for a random-init preset, wired to ``tokenizer``'s special-token ids."""
    from moon_cli.model.tokenizer import BOS, EOS, IMAGE_PAD, VIDEO_PAD, VISION_END, VISION_START

    config_cls = _classes(preset_family(name))[0]  # an unknown name is refused here
    p = PRESETS[name]
    ids = dict(zip(("vs", "ve", "img", "vid", "bos", "eos"),
                   tokenizer.convert_tokens_to_ids([VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD, BOS, EOS])))
    return config_cls(
        text_config=dict(p["text"], vocab_size=max(p["vocab_size"], len(tokenizer)), bos_token_id=ids["bos"],
                         eos_token_id=ids["eos"], pad_token_id=tokenizer.pad_token_id),
        vision_config=dict({"patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2}, **p["vision"]),
        image_token_id=ids["img"], video_token_id=ids["vid"], vision_start_token_id=ids["vs"],
        vision_end_token_id=ids["ve"],
    )


def init_preset_weights(model, name: str) -> None:
    """Preset-specific initialisation on top of the Hugging Face default (see ``embedding_std``)."""
    std = PRESETS[name].get("embedding_std")
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
