"""The model card (README.md) written into every checkpoint: what the model is, how it was made, how to
use it. Rendered from the checkpoint's own config and meta, so it never disagrees with them."""

from __future__ import annotations

import json
from pathlib import Path

# What is known offline about the licences of the backbones moon names; anything else: see its own card.
LICENCES = {
    "tiny": "no pretrained weights (random initialisation); the checkpoint is under moon-cli's Apache-2.0",
    "Qwen/Qwen2-VL-2B-Instruct": "Apache-2.0",
    "Qwen/Qwen2.5-VL-3B-Instruct": "Qwen Research License (non-commercial)",
    "Qwen/Qwen2.5-VL-7B-Instruct": "Apache-2.0",
}


def render_card(config, meta: dict, exported: bool = False) -> str:
    """Markdown for a checkpoint of ``config`` (MoonConfig) trained as ``meta`` (meta.json) says; ``exported``:
    the card of its `moon export` (a plain Hugging Face model)."""
    from moon_cli import __version__

    bb = config.backbone
    train = meta.get("train_config") or {}
    parts = ["MoE (guided, %d experts, top-%d)" % (config.moe.num_experts, config.moe.top_k) if config.moe.enabled
             else "no MoE", f"LoRA rank {config.lora.rank}" if config.lora.enabled else "full fine-tuning",
             f"{config.pooling.mode} pooling"]
    lines = [
        "---",
        "library_name: sentence-transformers",
        "tags: [moon, multimodal, product-embeddings, feature-extraction]",
        "---",
        "",
        "# MOON product embedding model",
        "",
        f"A {'MOON single-stream' if bb.arch == 'moon' else 'CLIP-style dual-encoder'} embedding model made by "
        f"moon-cli {__version__}: product photos, core-product crops and text in, one unit vector out.",
        "",
        "## Base",
        "",
        f"- backbone: `{bb.name}`" + (f" at revision `{bb.revision}`" if bb.revision else "") + f" ({bb.family})",
        f"- architecture: {bb.arch}; " + "; ".join(parts),
        f"- base licence: {LICENCES.get(bb.name, f'that of `{bb.name}` (see its own model card)')}",
        "",
        "## Training",
        "",
    ]
    if meta.get("stage") == "train":
        lines += [f"- objective: {meta.get('objective')}, {meta.get('step')} steps of batch {train.get('batch_size')}, "
                  f"lr {train.get('lr')}, temperature {meta.get('temperature', 0):.4f}, seed {train.get('seed')}"]
        if meta.get("command"):
            lines += [f"- command: `{meta['command']}`"]
        for name, source in (meta.get("inputs") or {}).items():
            lines += [f"- data `{name}`: `{source.get('path')}` (fingerprint {source.get('fingerprint')})"]
        if meta.get("val"):
            lines += [f"- last validation: {json.dumps(meta['val'])}"]
    else:
        lines += ["- not trained: saved as initialised"]
    evaluations = meta.get("evaluations") or {}
    if evaluations:
        lines += ["", "## Evaluation (`moon evaluate`)", "", "| bench | metric | value |", "|---|---|---|"]
        for bench, metrics in evaluations.items():
            lines += [f"| {bench} | {k} | {v:.4f} |" for k, v in metrics.items() if isinstance(v, (int, float))]
    if exported:
        lines += ["", "## Use (exported: no moon code needed)", "", "```python",
                  "from transformers import AutoModel, AutoProcessor",
                  "model, processor = AutoModel.from_pretrained(THIS_DIR), AutoProcessor.from_pretrained(THIS_DIR)",
                  "```", "",
                  f"The MOON vector is the {config.pooling.mode} pooling of the last hidden states "
                  + ("(the mean over every real token)" if config.pooling.mode == "mean" else
                     "(½ the unit mean of the photo / crop tokens + ½ the unit mean of the title, category, attribute "
                     "and query tokens)") + ", L2-normalised, over the sequence moon's processor lays out "
                  "(photos, their core-product crops, then `title:` / `category:` / `attributes:` text).", ""]
        return "\n".join(lines)
    lines += [
        "",
        "## Use",
        "",
        "```bash",
        "moon embed catalog.parquet -m THIS_DIR -o embeddings.parquet   # products; queries with --kind query",
        "```",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer  # with moon-cli installed",
        "model = SentenceTransformer(\"THIS_DIR\", trust_remote_code=True)  # the code is moon-cli's, none is read "
        "from here",
        "model.encode([\"red cotton tee\", \"photo.jpg\", {\"title\": \"...\", \"image_paths\": [\"a.jpg\"]}])",
        "```",
        "",
        "Intended use: product retrieval (text, photo or both → product; product → product), category and attribute",
        "matching, and frozen features for click-through-rate models in e-commerce search and recommendation.",
        "Vectors from different checkpoints never mix in one index. A model trained on moon's synthetic world has",
        "seen no real products: it demonstrates the pipeline, it is not a model to deploy.",
        "",
    ]
    return "\n".join(lines)


def record_evaluation(checkpoint: Path, bench: str, metrics: dict) -> None:
    """Note ``metrics`` (a `moon evaluate` headline) under ``bench`` in the checkpoint's meta.json and re-render
    its card. Both files are replaced atomically; the weights (and so the model's identity) are untouched."""
    from moon_cli.io import atomic_file
    from moon_cli.model.config import MoonConfig

    checkpoint = Path(checkpoint)
    meta_path = checkpoint / "meta.json"
    try:
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return  # a damaged meta.json is the loader's to report; an evaluation does not rewrite it
    meta.setdefault("evaluations", {})[bench] = {k: v for k, v in metrics.items() if v is not None}
    with atomic_file(meta_path) as tmp:
        tmp.write_text(json.dumps(meta, indent=2, default=str) + "\n")
    with atomic_file(checkpoint / "README.md") as tmp:
        tmp.write_text(render_card(MoonConfig.load(checkpoint / "config.json"), meta))
