"""`moon train`: contrastive post-training (query → purchased product) or catalogue pre-training of MOON."""

from pathlib import Path

import click

from moon_cli.options import (ModalityMix, Number, SizeList, device_option, echo_summary, model_option, output_option,
                              overwrite_option, quiet_option, seed_option, planned)


@click.command("train")
@click.argument("pairs", required=False)
@click.option("--catalog", help="Catalogue Parquet (products, their photos and text).  [required]")
@output_option("Checkpoint directory: the final model, checkpoints/, train_log.jsonl, run.json.  [required]",
               kind="dir", required=False)
@click.option("--print-plan", is_flag=True,
              help="Print the run's resolved configuration (model and training, as JSON) and exit; reads no data.")
@click.option("--objective", type=click.Choice(["posttrain", "pretrain"]), default="posttrain", show_default=True,
              help="posttrain: query → purchased product (needs PAIRS); pretrain: each product photo → its own text.")
@click.option("--negatives", default=None, help="Hard negatives from `moon sample-negatives`.")
@click.option("--detections", default=None, help="Core-product crops from `moon detect` (added beside each photo).")
@click.option("--no-crops", is_flag=True, help="Ablation: no core-product crops.")
@model_option("The model to start from (a pre-training run, for post-training).", default="tiny")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="JSON of model-config overrides for a new model, e.g. {\"moe\": {\"num_experts\": 8}}.")
@click.option("--steps", type=click.IntRange(min=1), help=planned("", "steps"))
@click.option("--batch-size", type=click.IntRange(min=2), help=planned("Queries per step per process.", "batch_size"))
@click.option("--lr", type=Number(min=0, min_open=True), help=planned("Peak learning rate.", "lr"))
@click.option("--new-lr", type=Number(min=0, min_open=True),
              help=planned("Learning rate of the weights with no pretrained value (mini's projector, MoE routers); "
                           "unset: --lr.", "new_lr"))
@click.option("--freeze-pretrained", is_flag=True, default=None,
              help="Train only the weights with no pretrained value (mini's projector, MoE routers): LLaVA's "
                   "feature-alignment stage, e.g. a pre-training that must not move the pretrained layers.")
@click.option("--temperature", type=Number(min=0.005, max=1.0),
              help=planned("Initial InfoNCE temperature.", "temperature"))
@click.option("--fixed-temperature", is_flag=True, help="Keep the temperature fixed (default: learnable).")
@click.option("--hard-negatives", type=click.IntRange(min=0),
              help=planned("Hard negatives per query per step, drawn from --negatives.", "hard_negatives"))
@click.option("--no-hard-negatives", is_flag=True, help="Ablation: ignore --negatives.")
@click.option("--catalog-views", is_flag=True, default=None,
              help="Also train on catalogue views: each listing photo the product view leaves out (after the "
                   "model's first input.max_images) becomes an image query for its own product. Recommended when "
                   "shoppers' photo queries are few (on two synthetic demo worlds it lifted image→product "
                   "Recall@10 0.16 → 0.27 and 0.12 → 0.22).")
@click.option("--queue-size", type=click.IntRange(min=0),
              help=planned("Product embeddings kept from earlier steps as negatives (temporal).", "queue_size"))
@click.option("--no-queue", is_flag=True, help="Ablation: no queue of earlier steps' products.")
@click.option("--no-gather", is_flag=True, help="Ablation: no products gathered from other processes (spatial).")
@click.option("--no-moe", is_flag=True, help="Ablation: plain FFNs instead of the guided mixture of experts.")
@click.option("--arch", type=click.Choice(["moon", "dual"]), default="moon", show_default=True,
              help="dual: the CLIP-style baseline (separate image and text towers, one photo, no crops, no MoE).")
@click.option("--matryoshka", "matryoshka_dims", type=SizeList(),
              help="Also train these embedding prefix sizes, e.g. 64,128.")
@click.option("--align-weight", type=Number(min=0),
              help=planned("Weight of the intra-product image↔text alignment term (MOON2.0): each product's photo "
                           "tokens against its own text tokens, InfoNCE over the batch (0 = off, the MOON paper's "
                           "recipe).", "align_weight"))
@click.option("--grad-cache", is_flag=True, default=None,
              help="Chunked GradCache step: a large batch in bounded memory, same gradients.")
@click.option("--chunk-size", type=click.IntRange(min=1), help=planned("Sequences per GradCache chunk.", "chunk_size"))
@click.option("--modality-mix", type=ModalityMix(),
              help=planned("Query modality weights IMAGE:TEXT:MULTIMODAL.", "modality_mix"))
@click.option("--val-every", type=click.IntRange(min=0),
              help=planned("Validate every N steps (0 = never).", "val_every"))
@click.option("--val-fraction", type=Number(0, 0.5),
              help=planned("Share of queries held out for in-loop Recall@10 (only when --val-every > 0).",
                           "val_fraction"))
@click.option("--holdout-split", "holdout_splits", multiple=True,
              help="Keep the pairs of this mine-pairs split (e.g. test) out of training; repeatable. "
                   "Default: every pair trains.")
@click.option("--temperature-lr", type=Number(min=0),
              help=planned("Learning rate of log(1/τ) when the temperature is learnable.", "temperature_lr"))
@click.option("--checkpoint-every", type=click.IntRange(min=0), help=planned("", "checkpoint_every"))
@click.option("--bf16/--no-bf16", default=None, help="bf16 autocast (default: on with a GPU).")
@click.option("--fsdp", is_flag=True, default=None,
              help="Shard the model over the torchrun processes (FSDP2) instead of replicating it: for backbones "
                   "that do not fit one device.")
@click.option("--gradient-checkpointing", is_flag=True, default=None,
              help="Recompute activations in backward (GPU memory).")
@seed_option("Seed of the model's initialisation and the data order")
@device_option()
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in --output.")
@click.option("--stop-at-step", type=int, default=None, hidden=True, help="Stop after this step (tests: an "
                                                                          "interruption).")
@overwrite_option
@quiet_option
def train(pairs, catalog, output, print_plan, objective, negatives, detections, no_crops, model_name, config_file,
          no_hard_negatives, fixed_temperature, no_queue, no_gather, no_moe, arch, holdout_splits, bf16, device, resume,
          stop_at_step, overwrite, quiet, **flags):
    """Train MOON on PAIRS (from `moon mine-pairs`) and the catalogue; write a checkpoint directory.

    InfoNCE over the positive, in-batch products, hard negatives, products gathered from other processes
    and a queue of earlier steps; plus the MoE balancing loss. Query modalities are mixed 12:3:2
    (image:text:multimodal) where the pairs allow. Runs the same under `torchrun --nproc_per_node N`.
    --resume continues exactly where an interrupted run stopped. The model and training configuration are
    decided once (moon_cli/train/plan.py: your flags, then the model's recipe, then the defaults); --print-plan
    shows it, run.json records it.

    \b
    Example (each runs in tests/test_docs.py):
      moon train pairs.parquet --catalog world/catalog.parquet --negatives negatives.parquet \\
        --detections detections.parquet -o model --steps 2 --batch-size 4 --val-every 0
      moon train pairs.parquet --catalog world/catalog.parquet -o model-dense --no-moe --steps 2 --batch-size 4 \\
        --val-every 0
      moon train --print-plan -m tiny --arch dual
    """
    import json

    from moon_cli.errors import MoonError
    from moon_cli.io import read_json_report
    from moon_cli.model.config import MoonConfig
    from moon_cli.model.resolve import resolve
    from moon_cli.train.plan import Variant, plan

    flags.update(objective=objective, holdout_splits=list(holdout_splits) or None, bf16=bf16,
                 use_hard_negatives=False if (no_hard_negatives or negatives is None) else None,
                 learn_temperature=False if fixed_temperature else None, use_queue=False if no_queue else None,
                 use_gather=False if no_gather else None)
    written_by = "you (a JSON object of model-config overrides)"
    overrides = read_json_report(config_file, (), written_by) if config_file else {}
    if config_file:  # a key MoonConfig does not know is named with the file's path
        MoonConfig().updated(overrides, str(config_file))
    the_plan = plan(resolve(model_name), flags, Variant(arch, use_moe=not no_moe, use_crops=not no_crops), overrides)
    if print_plan:
        click.echo(json.dumps(the_plan.to_dict(), indent=2))
        return
    for name, value in (("--catalog", catalog), ("-o / --output", output)):
        if value is None:
            raise click.UsageError(f"Missing option '{name}'.")
    if objective == "posttrain" and not pairs:
        raise MoonError("moon train: PAIRS is required for --objective posttrain (or use --objective pretrain)")
    _train(the_plan, pairs, catalog, output, negatives, detections, not no_crops, bf16 is None, device, resume,
           stop_at_step, overwrite, quiet)


def _train(the_plan, pairs, catalog, output, negatives, detections, use_crops, bf16_auto, device, resume, stop_at_step,
           overwrite, quiet):
    from moon_cli.devices import choose_device
    from moon_cli.train.run import TrainRequest, TrainTables, run_training

    choose_device(device)  # a device this machine lacks fails before anything is read
    sources = {"pairs": pairs, "catalog": catalog, "negatives": negatives, "detections": detections}
    request = TrainRequest(tables=TrainTables.read(the_plan.train, sources, use_crops), sources=sources, output=output,
                           bf16_auto=bf16_auto, resume=resume, overwrite=overwrite, quiet=quiet,
                           stop_at_step=stop_at_step, device=device)
    summary = run_training(the_plan, request)
    if summary:
        echo_summary(f"moon train: wrote {output}", summary)
