"""`moon train`: contrastive post-training (query → purchased product) or catalogue pre-training of MOON."""

from pathlib import Path

import click

from moon_cli.options import (Number, device_option, echo_summary, model_option, output_option, overwrite_option,
                              quiet_option, seed_option)


def _dims(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        dims = sorted({int(d) for d in text.split(",") if d.strip()})
    except ValueError:
        raise click.BadParameter(f"'{text}' is not a comma-separated list of sizes, e.g. 64,128") from None
    if any(d <= 0 for d in dims):
        raise click.BadParameter("sizes must be positive")
    return dims


def _mix(text: str) -> dict[str, float]:
    parts = text.split(":")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 3 or any(v < 0 for v in values) or sum(values) <= 0:
        raise click.BadParameter(f"'{text}' is not IMAGE:TEXT:MULTIMODAL weights, e.g. 12:3:2")
    return dict(zip(("image", "text", "multimodal"), values))


@click.command("train")
@click.argument("pairs", required=False)
@click.option("--catalog", required=True, help="Catalogue Parquet (products, their photos and text).")
@output_option("Checkpoint directory: the final model, checkpoints/, train_log.jsonl.", kind="dir")
@click.option("--objective", type=click.Choice(["posttrain", "pretrain"]), default="posttrain", show_default=True,
              help="posttrain: query → purchased product (needs PAIRS); pretrain: each product photo → its own text.")
@click.option("--negatives", default=None, help="Hard negatives from `moon sample-negatives`.")
@click.option("--detections", default=None, help="Core-product crops from `moon detect` (added beside each photo).")
@click.option("--no-crops", is_flag=True, help="Ablation: no core-product crops.")
@model_option("The model to start from (a pre-training run, for post-training).", default="tiny")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="JSON of model-config overrides for a new model, e.g. {\"moe\": {\"num_experts\": 8}}.")
@click.option("--steps", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=2), default=16, show_default=True, help="Queries per step per process.")
@click.option("--lr", type=Number(min=0, min_open=True), default=None,
              help="Peak learning rate [default: the model's recipe].")
@click.option("--new-lr", type=Number(min=0, min_open=True), default=None,
              help="Learning rate of the weights with no pretrained value (mini's projector, MoE routers) "
                   "[default: the model's recipe, else --lr].")
@click.option("--freeze-pretrained", is_flag=True,
              help="Train only the weights with no pretrained value (mini's projector, MoE routers): LLaVA's "
                   "feature-alignment stage, e.g. a pre-training that must not move the pretrained layers.")
@click.option("--temperature", type=Number(min=0.005, max=1.0), default=0.05, show_default=True,
              help="Initial InfoNCE temperature.")
@click.option("--fixed-temperature", is_flag=True, help="Keep the temperature fixed (default: learnable).")
@click.option("--hard-negatives", type=click.IntRange(min=0), default=1, show_default=True,
              help="Hard negatives per query per step, drawn from --negatives.")
@click.option("--no-hard-negatives", is_flag=True, help="Ablation: ignore --negatives.")
@click.option("--catalog-views", is_flag=True,
              help="Also train on catalogue views: each listing photo the product view leaves out (after the "
                   "model's first input.max_images) becomes an image query for its own product. Recommended when "
                   "shoppers' photo queries are few (on two synthetic demo worlds it lifted image→product "
                   "Recall@10 0.16 → 0.27 and 0.12 → 0.22).")
@click.option("--queue-size", type=click.IntRange(min=0), default=None,
              help="Product embeddings kept from earlier steps as negatives (temporal) [default: the model's "
                   "recipe; off for the presets, whose fast-moving embeddings go stale in the queue].")
@click.option("--no-queue", is_flag=True, help="Ablation: no queue of earlier steps' products.")
@click.option("--no-gather", is_flag=True, help="Ablation: no products gathered from other processes (spatial).")
@click.option("--no-moe", is_flag=True, help="Ablation: plain FFNs instead of the guided mixture of experts.")
@click.option("--arch", type=click.Choice(["moon", "dual"]), default="moon", show_default=True,
              help="dual: the CLIP-style baseline (separate image and text towers, one photo, no crops, no MoE).")
@click.option("--matryoshka", default=None, help="Also train these embedding prefix sizes, e.g. 64,128.")
@click.option("--align-weight", type=Number(min=0), default=None,
              help="Weight of the intra-product image↔text alignment term (MOON2.0): each product's photo tokens "
                   "against its own text tokens, InfoNCE over the batch (0 = off, the MOON paper's recipe) "
                   "[default: the model's recipe, else 0].")
@click.option("--grad-cache", is_flag=True, help="Chunked GradCache step: a large batch in bounded memory, same gradients.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=8, show_default=True, help="Sequences per GradCache chunk.")
@click.option("--modality-mix", default="12:3:2", show_default=True, help="Query modality weights IMAGE:TEXT:MULTIMODAL.")
@click.option("--val-every", type=click.IntRange(min=0), default=50, show_default=True, help="Validate every N steps (0 = never).")
@click.option("--val-fraction", type=Number(0, 0.5), default=0.1, show_default=True,
              help="Share of queries held out for in-loop Recall@10 (only when --val-every > 0).")
@click.option("--holdout-split", "holdout_splits", multiple=True,
              help="Keep the pairs of this mine-pairs split (e.g. test) out of training; repeatable. "
                   "Default: every pair trains.")
@click.option("--temperature-lr", type=Number(min=0), default=1e-2, show_default=True,
              help="Learning rate of log(1/τ) when the temperature is learnable.")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=50, show_default=True)
@click.option("--bf16/--no-bf16", default=None, help="bf16 autocast (default: on with a GPU).")
@click.option("--fsdp", is_flag=True, help="Shard the model over the torchrun processes (FSDP2) instead of replicating "
                                           "it: for backbones that do not fit one device.")
@click.option("--gradient-checkpointing", is_flag=True, help="Recompute activations in backward (GPU memory).")
@seed_option("Seed of the model's initialisation and the data order")
@device_option()
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in --output.")
@click.option("--stop-at-step", type=int, default=None, hidden=True, help="Stop after this step (tests: an interruption).")
@overwrite_option
@quiet_option
def train(pairs, catalog, output, objective, negatives, detections, no_crops, model_name, config_file, steps, batch_size,
          lr, new_lr, freeze_pretrained, temperature, fixed_temperature, hard_negatives, no_hard_negatives, catalog_views,
          queue_size, no_queue,
          no_gather, no_moe, arch, matryoshka, align_weight, grad_cache, chunk_size, modality_mix, val_every, val_fraction,
          holdout_splits, temperature_lr, checkpoint_every, bf16, fsdp, gradient_checkpointing, seed, device, resume, stop_at_step,
          overwrite, quiet):
    """Train MOON on PAIRS (from `moon mine-pairs`) and the catalogue; write a checkpoint directory.

    InfoNCE over the positive, in-batch products, hard negatives, products gathered from other processes
    and a queue of earlier steps; plus the MoE balancing loss. Query modalities are mixed 12:3:2
    (image:text:multimodal) where the pairs allow. Runs the same under `torchrun --nproc_per_node N`.
    --resume continues exactly where an interrupted run stopped.

    \b
    Example (each runs in tests/test_docs.py):
      moon train pairs.parquet --catalog world/catalog.parquet --negatives negatives.parquet \\
        --detections detections.parquet -o model --steps 2 --batch-size 4 --val-every 0
      moon train pairs.parquet --catalog world/catalog.parquet -o model-dense --no-moe --steps 2 --batch-size 4 \\
        --val-every 0
    """
    from moon_cli.errors import MoonError

    if objective == "posttrain" and not pairs:
        raise MoonError("moon train: PAIRS is required for --objective posttrain (or use --objective pretrain)")
    if objective == "pretrain" and catalog_views:
        raise MoonError("moon train: --catalog-views is a post-training option; --objective pretrain already "
                        "trains on every catalogue photo")
    if align_weight is not None and align_weight > 0 and (arch == "dual" or grad_cache):
        raise MoonError(f"moon train: --align-weight aligns the photo and text tokens of MOON's one sequence; "
                        f"it does not combine with {'--arch dual' if arch == 'dual' else '--grad-cache'}")
    from moon_cli.contracts import CATALOG, DETECTIONS, NEGATIVES, PAIRS
    from moon_cli.devices import choose_device
    from moon_cli.io import read_json_report, read_table
    from moon_cli.model.resolve import resolve
    from moon_cli.train.run import TrainRequest, TrainTables, run_training
    from moon_cli.train.trainer import TrainConfig, recipe_for

    choose_device(device)  # a device this machine lacks fails before anything is read
    recipe = recipe_for(resolve(model_name))
    lr = recipe.get("lr", TrainConfig.lr) if lr is None else lr
    new_lr = recipe.get("new_lr", TrainConfig.new_lr) if new_lr is None else new_lr
    if align_weight is None:  # a recipe's alignment term applies where it can (not the dual, not GradCache)
        align_weight = 0.0 if (arch == "dual" or grad_cache) else recipe.get("align_weight", TrainConfig.align_weight)
    queue_size = recipe.get("queue_size", TrainConfig.queue_size) if queue_size is None else queue_size

    cfg = TrainConfig(objective=objective, steps=steps, batch_size=batch_size, lr=lr, new_lr=new_lr,
                      freeze_pretrained=freeze_pretrained, temperature=temperature,
                      learn_temperature=not fixed_temperature, temperature_lr=temperature_lr,
                      hard_negatives=hard_negatives,
                      use_hard_negatives=not no_hard_negatives and negatives is not None, catalog_views=catalog_views,
                      queue_size=queue_size,
                      use_queue=not no_queue, use_gather=not no_gather, matryoshka_dims=_dims(matryoshka),
                      align_weight=align_weight,
                      grad_cache=grad_cache, chunk_size=chunk_size, modality_mix=_mix(modality_mix),
                      val_every=val_every, val_fraction=val_fraction, holdout_splits=list(holdout_splits),
                      checkpoint_every=checkpoint_every,
                      bf16=bool(bf16), gradient_checkpointing=gradient_checkpointing, fsdp=fsdp, seed=seed)
    overrides = read_json_report(config_file, (), "you (a JSON object of model-config overrides)") if config_file else {}
    posttrain = objective == "posttrain"
    tables = TrainTables(
        catalog=read_table(catalog, CATALOG).table,
        pairs=read_table(pairs, PAIRS).table if posttrain else None,
        detections=read_table(detections, DETECTIONS).table if (detections and not no_crops) else None,
        negatives=read_table(negatives, NEGATIVES).table if (posttrain and cfg.use_hard_negatives) else None,
    )
    sources = {"pairs": pairs, "catalog": catalog, "negatives": negatives, "detections": detections}
    request = TrainRequest(tables=tables, sources=sources, output=output, use_crops=not no_crops, use_moe=not no_moe,
                           arch=arch, model=model_name, config_overrides=overrides, bf16_auto=bf16 is None,
                           resume=resume, overwrite=overwrite, quiet=quiet, stop_at_step=stop_at_step,
                           device=device)
    summary = run_training(cfg, request)
    if summary:
        echo_summary(f"moon train: wrote {output}", summary)
