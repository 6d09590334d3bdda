"""MOON checkpoints in the ecosystem's own formats.

- A checkpoint of a LoRA-trained hub backbone also holds peft's adapter files (``adapter_config.json``,
  ``adapter_model.safetensors``): ``PeftModel.from_pretrained(AutoModel.from_pretrained(BASE), CKPT)`` loads
  them with no moon code. ``model.safetensors`` stays moon's own file (every trained tensor: adapters, MoE
  experts, routers).
- ``export_hf``: a plain Hugging Face model directory of the backbone family (``model_type`` qwen2_5_vl, …),
  LoRA merged, with its processor — loadable by ``AutoModel`` / ``AutoModelForImageTextToText`` /
  ``AutoProcessor``. Only for checkpoints without the guided MoE: transformers has no module for MOON's
  experts, so an MoE checkpoint is refused and pointed to sentence-transformers, which runs moon's code.
  A ``mini`` checkpoint is refused too: its backbone is moon's own module, not a transformers architecture.
  MOON's embedding is the pooled last hidden state (the card says how to pool); the LM head is the
  hub model's, or, for a random-init preset that never had one, tied to the token embeddings.
"""

from __future__ import annotations

from pathlib import Path

from moon_cli.errors import MoonError

PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors")
ST_ROUTE = ("load it with sentence-transformers instead (SentenceTransformer(CKPT, trust_remote_code=True) with "
            "moon-cli installed), or `moon embed -m CKPT`")


def write_peft_adapter(backbone, directory: Path) -> None:
    """peft's own adapter files for a LoRA-wrapped backbone (its README is replaced by moon's card)."""
    backbone.save_pretrained(str(directory))


def _processor_classes(family: str):
    from transformers import (Qwen2_5_VLProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor, Qwen3VLProcessor,
                              Qwen3VLVideoProcessor)

    return {"qwen2_vl": (Qwen2VLProcessor, Qwen2VLVideoProcessor),
            "qwen2_5_vl": (Qwen2_5_VLProcessor, Qwen2VLVideoProcessor),
            "qwen3_vl": (Qwen3VLProcessor, Qwen3VLVideoProcessor)}[family]


def check_exportable(config, source) -> None:
    from moon_cli.model import mini

    if config.backbone.family == mini.FAMILY:
        raise MoonError(f"{source}: a `mini` checkpoint cannot be exported as a transformers model — its backbone "
                        f"(EfficientNet-Lite0 + projector + MiniLM layers) is moon's own module; {ST_ROUTE}")
    if config.moe.enabled:
        raise MoonError(f"{source}: trained with the guided MoE, which no transformers architecture has (its experts "
                        f"and routers would be dropped and the vectors would change); {ST_ROUTE}. Checkpoints "
                        f"trained with --no-moe export")


def export_hf(model, source: str, out: Path) -> dict:
    """Write ``model`` (a loaded MoonModel without MoE) to ``out`` as a plain Hugging Face model directory."""
    import torch

    from moon_cli.model import backbone as bb
    from moon_cli.model.preset import is_preset

    check_exportable(model.config, source)
    model.merge_lora()
    base, family = model.base, model.config.backbone.family
    full_cls = bb._classes(family)[2]
    if is_preset(model.config.backbone.name):
        full = full_cls(base.config)  # a random-init preset never had an LM head: tie it to the token embeddings
        with torch.no_grad():
            full.lm_head.weight.copy_(base.get_input_embeddings().weight)
    else:
        full = full_cls.from_pretrained(model.config.backbone.name, revision=model.config.backbone.revision,
                                        dtype=base.dtype)
    full.model = base
    full.config.architectures = [full_cls.__name__]
    full.save_pretrained(str(out))
    processor_cls, video_cls = _processor_classes(family)
    processor_cls(image_processor=model.processor.image_processor, tokenizer=model.processor.tokenizer,
                  video_processor=video_cls()).save_pretrained(str(out))
    return {"model_type": full.config.model_type, "class": full_cls.__name__,
            "parameters": sum(p.numel() for p in full.parameters())}
