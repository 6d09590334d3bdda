"""`moon export`: a checkpoint as a plain Hugging Face model directory (no moon code needed to load it)."""

from pathlib import Path

import click

from moon_cli.options import echo_summary, output_option, overwrite_option, quiet_option


@click.command("export")
@click.argument("checkpoint", type=click.Path(file_okay=False, path_type=Path))
@output_option("Directory for the Hugging Face model (config.json with the family's model_type, weights, processor).",
               kind="dir")
@overwrite_option
@quiet_option
def export(checkpoint, output, overwrite, quiet):
    """Export CHECKPOINT (a `moon train` output trained with --no-moe) as a Hugging Face model directory: the
    backbone family's model_type, LoRA merged, tokenizer + image processor, and the model card. It loads with
    AutoModel / AutoModelForImageTextToText / AutoProcessor; MOON's vector is the mean of the last hidden
    states, pooled as the card says. Guided-MoE and `mini` checkpoints are refused (no transformers module
    holds them): load those with sentence-transformers or `moon embed`.

    \b
    Example (each runs in tests/test_docs.py):
      moon export model-dense -o exported
    """
    import json
    import time

    from moon_cli.io import atomic_dir, ensure_new_dir
    from moon_cli.model.card import render_card
    from moon_cli.model.config import MoonConfig
    from moon_cli.model.export import check_exportable, export_hf
    from moon_cli.model.moon import MoonModel
    from moon_cli.model.resolve import resolve

    ensure_new_dir(output, overwrite)
    ref = resolve(checkpoint)
    if ref.kind != "checkpoint":
        from moon_cli.errors import MoonError

        raise MoonError(f"{checkpoint}: not a moon checkpoint directory (config.json + model.safetensors from "
                        f"`moon train`)")
    check_exportable(MoonConfig.load(checkpoint / "config.json"), checkpoint)  # before loading any weights
    t0 = time.perf_counter()
    model = MoonModel.from_pretrained(ref)
    meta_path = checkpoint / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    with atomic_dir(output, overwrite=overwrite) as tmp:
        summary = export_hf(model, str(checkpoint), tmp)
        (tmp / "README.md").write_text(render_card(model.config, meta, exported=True))
    if not quiet:
        echo_summary(f"moon export: wrote {output}", {
            "model": f"{summary['class']} (model_type {summary['model_type']}), {summary['parameters']:,} parameters",
            "time": f"{time.perf_counter() - t0:.1f} s"})
