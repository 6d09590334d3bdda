"""Wires `moon train` together: processes and devices, the output directory, data, the planned model, resume.

What the run trains (the model's and the training's configuration) was decided by ``plan.py``; this builds it."""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import torch

from moon_cli.errors import MoonError, warn
from moon_cli.train.dist import DistInfo, barrier, init_distributed, shutdown
from moon_cli.train.config import TrainConfig
from moon_cli.train.plan import TrainPlan
from moon_cli.train.trainer import LOG, RUN, Trainer, resumable_checkpoint, truncate_log


@dataclass
class TrainTables:
    """The tables a run trains on, read (and checked against their contracts) by the stage."""
    catalog: pa.Table
    pairs: pa.Table | None = None  # post-training only
    detections: pa.Table | None = None  # crops; None without --detections or with --no-crops
    negatives: pa.Table | None = None  # hard negatives; None without --negatives or with --no-hard-negatives

    @classmethod
    def read(cls, cfg: TrainConfig, sources: dict[str, str | None], use_crops: bool) -> "TrainTables":
        """The tables ``sources`` names (pairs, catalog, negatives, detections), each checked against its contract;
        only those the run uses."""
        from moon_cli.contracts import CATALOG, DETECTIONS, NEGATIVES, PAIRS
        from moon_cli.io import read_table

        posttrain = cfg.objective == "posttrain"
        detections, negatives = sources.get("detections"), sources.get("negatives")
        return cls(catalog=read_table(sources["catalog"], CATALOG).table,
                   pairs=read_table(sources["pairs"], PAIRS).table if posttrain else None,
                   detections=read_table(detections, DETECTIONS).table if (detections and use_crops) else None,
                   negatives=read_table(negatives, NEGATIVES).table if (posttrain and cfg.use_hard_negatives) else None)


@dataclass
class TrainRequest:
    tables: TrainTables
    sources: dict[str, str]  # table name → the path it was read from (fingerprinted into run.json)
    output: Path
    bf16_auto: bool = True
    resume: bool = False
    overwrite: bool = False
    quiet: bool = False
    stop_at_step: int | None = None
    device: str | None = None  # None: cuda:LOCAL_RANK with a GPU, else cpu (moon_cli.devices)


def _holds_a_run(out: Path) -> bool:
    """Whether ``out`` holds a model or a checkpoint. A run that failed before saving anything leaves only
    run.json (and maybe its log): that blocks nothing, a plain rerun starts it afresh."""
    if not out.is_dir():
        return False
    return any(p for p in out.iterdir() if not p.name.startswith(".") and p.name not in (RUN, LOG, "checkpoints")) \
        or any((out / "checkpoints").glob("step-*"))


def _check_output(req: TrainRequest, info: DistInfo) -> Path | None:
    """Refuse to clobber another run; return the checkpoint to resume from (if any). No side effects."""
    out = req.output
    if out.exists() and not out.is_dir():
        raise MoonError(f"{out}: exists and is not a directory")
    if _holds_a_run(out) and not (req.resume or req.overwrite):
        raise MoonError(f"{out}: holds another run (checkpoints or a model); pass --resume to continue it "
                        f"or --overwrite to start over")
    return resumable_checkpoint(out, say=info.is_main) if (req.resume and out.is_dir()) else None


def _create_output(req: TrainRequest, info: DistInfo) -> None:
    out = req.output
    barrier(info)
    if info.is_main:
        if out.is_dir() and not req.resume and (req.overwrite or not _holds_a_run(out)):
            shutil.rmtree(out)  # --overwrite, or the leftovers of a run that never saved anything
        out.mkdir(parents=True, exist_ok=True)
    barrier(info)


def _inputs(req: TrainRequest) -> dict:
    from moon_cli.io import fingerprint

    return {k: {"path": str(v), "fingerprint": fingerprint(v)} for k, v in req.sources.items() if v}


def _settings(record: dict) -> dict:
    """A run.json's settings, one key each: train.lr, model_config.input.max_images, input pairs (its fingerprint)…"""
    out = {"model": record.get("model")}
    out.update({f"train.{k}": v for k, v in record.get("train", {}).items()})
    for section, values in record.get("model_config", {}).items():
        out.update({f"model_config.{section}.{k}": v for k, v in values.items()})
    out.update({f"input {k}": v.get("fingerprint") for k, v in record.get("inputs", {}).items()})
    return out


def _check_same_run(out: Path, record: dict) -> None:
    """--resume continues the same run: every key of the resolved plan, and every input's fingerprint."""
    path = out / RUN
    if not path.is_file():
        return
    before = json.loads(path.read_text())
    # a setting added since that run was started had its default then; a section it lacks was not recorded then
    before["train"] = {**asdict(TrainConfig()), **before.get("train", {})}
    then, now = _settings(before), _settings(record)
    for key in sorted(set(then) | set(now)):
        recorded = "model_config" in before or not key.startswith("model_config.")
        if recorded and then.get(key) != now.get(key):
            raise MoonError(f"{out}: --resume with different settings than the run it continues ({key}: "
                            f"{_shown(then.get(key))} then, {_shown(now.get(key))} now); use the same options, or "
                            f"--overwrite to start over")


def _shown(value) -> str:
    return "unset" if value is None else json.dumps(value)


def _build_data(cfg: TrainConfig, req: TrainRequest):
    from moon_cli.train.data import build_posttrain_data, build_pretrain_data

    t = req.tables
    val_fraction = cfg.val_fraction if cfg.val_every > 0 else 0.0  # nothing validates: every pair trains
    if cfg.objective == "pretrain":
        return build_pretrain_data(t.catalog, t.detections, val_fraction, cfg.max_val, cfg.seed)
    return build_posttrain_data(t.pairs, t.catalog, t.detections, t.negatives, val_fraction, cfg.max_val, cfg.seed,
                                holdout_splits=cfg.holdout_splits)


def _build_model(plan: TrainPlan, device: torch.device, resume_from: Path | None):
    from moon_cli.model.moon import MoonModel
    from moon_cli.model.resolve import ModelRef

    if resume_from is not None:
        return MoonModel.from_pretrained(ModelRef(str(resume_from), "checkpoint")).to(device)
    ref, config = plan.start, copy.deepcopy(plan.config)
    torch.manual_seed(plan.train.seed)  # LoRA / expert init identical on every rank
    if ref.kind == "preset":
        model = MoonModel.from_preset(ref.name, config, seed=plan.train.seed)
    elif ref.kind == "hub":
        model = MoonModel.from_backbone(ref.name, config)
    else:
        model = MoonModel.from_pretrained(ref)
        if plan.add_moe:  # experts copied from the checkpoint's trained FFNs
            model.add_guided_moe(config.moe)
        model.config.assign(config)  # the variant's reading of it: two towers, crops off, served prefixes
    if model.config.backbone.gradient_checkpointing:
        model.base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model.to(device)


def run_training(plan: TrainPlan, req: TrainRequest) -> dict:
    from moon_cli.io import output_lock

    from moon_cli.devices import choose_device

    device = torch.device(choose_device(req.device))  # under torchrun: this process's GPU
    info = init_distributed(device.type)
    try:
        # one run per output directory: a second `moon train -o SAME` is refused at once (the main process holds it)
        with output_lock(req.output) if info.is_main else contextlib.nullcontext():
            return _run(plan, req, info, device)
    finally:
        shutdown(info)


def _run(plan: TrainPlan, req: TrainRequest, info: DistInfo, device: torch.device) -> dict:
    cfg = plan.train
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if req.bf16_auto:
        cfg.bf16 = device.type == "cuda"
    if cfg.fsdp and not info.enabled:
        raise MoonError("--fsdp shards the model over several processes: launch it with torchrun, e.g. "
                        "torchrun --nproc_per_node 8 -m moon_cli.cli train ... --fsdp")
    # the dual runs a tower only when its modality is in the batch: sharded ranks would disagree
    if cfg.fsdp and plan.config.backbone.arch == "dual":
        raise MoonError("--fsdp shards the single-stream model; the dual encoder runs each tower only for the rows "
                        "that have its modality, so sharded ranks would fall out of step: train it without --fsdp")
    # bad inputs or a bad model fail before the output directory is created or touched
    data = _build_data(cfg, req)
    resume_from = _check_output(req, info)
    record = {"train": asdict(cfg), "model": plan.start.name, "model_config": plan.config.to_dict(),
              "recipe": plan.recipe, "inputs": _inputs(req)}
    if req.resume:
        _check_same_run(req.output, record)
    model = _build_model(plan, device, resume_from)
    if cfg.freeze_pretrained:
        model.freeze_pretrained()
    if cfg.fsdp:
        from moon_cli.train.fsdp import shard

        shard(model, info, device, sum_gradients=cfg.use_gather)
    if cfg.catalog_views:  # which photos are "other" views depends on how many the model reads per product
        view_size = model.config.input.max_images
        if data.add_catalog_views(view_size) == 0 and info.is_main:
            warn(f"moon train: warning: --catalog-views found no listing with more than {view_size} "
                       f"photo(s) (the model reads the first {view_size}); training on the pairs alone")
    _create_output(req, info)
    if not req.resume and info.is_main:
        (req.output / RUN).write_text(json.dumps(record, indent=2) + "\n")
    trainer = Trainer(cfg, model, data, req.output, info, record["inputs"], quiet=req.quiet)
    if resume_from is not None:
        trainer.load_state(resume_from)
        if info.is_main:
            truncate_log(req.output, trainer.step)
            warn(f"moon train: resuming from {resume_from} (step {trainer.step})")
    elif req.resume and info.is_main:
        warn(f"moon train: no checkpoint in {req.output} yet; starting from step 0")
    if info.is_main and not req.quiet:
        warn(f"moon train: {len(data.examples)} training examples ({_modality_counts(data)}), "
                   f"{len(data.val)} held out, {model.num_parameters(trainable=True):,} trainable parameters, "
                   f"{info.world_size} process(es) on {device.type}")
    result = trainer.train(stop_at_step=req.stop_at_step)
    if not info.is_main:
        return {}
    return _summary(cfg, data, trainer, result)


def _modality_counts(data) -> str:
    return ", ".join(f"{m} {len(v)}" for m, v in sorted(data.by_modality().items()))


def _summary(cfg: TrainConfig, data, trainer: Trainer, result: dict) -> dict:
    from moon_cli.train.data import VIEWS

    dropped = {k: v for k, v in data.counts.items() if k not in ("pairs", "products", "photos", VIEWS) and v}
    views = data.counts.get(VIEWS)
    skipped = dict(trainer.builder.skipped)
    out = {
        "objective": cfg.objective,
        "examples": f"{len(data.examples)} train" + (f" ({views} of them catalogue views)" if views is not None else "")
                    + f", {len(data.val)} validation"
                    + (f"; dropped: {dropped}" if dropped else ""),
        "steps": f"{result['steps']} of {cfg.steps}" + ("" if result["steps"] >= cfg.steps else " (stopped early)"),
        "time": f"{result['seconds']:.1f} s ({result['samples_per_s']:.1f} samples/s)",
    }
    if skipped or trainer.nan_skipped:
        out["skipped"] = ", ".join([f"{k}: {v}" for k, v in skipped.items()]
                                   + ([f"non-finite steps: {trainer.nan_skipped}"] if trainer.nan_skipped else []))
    if trainer.first_val and trainer.last_val:
        keys = [k for k in trainer.last_val if k.endswith("recall@10")]
        out["val Recall@10"] = ", ".join(f"{k.replace('_recall@10', '') if k != 'recall@10' else 'all'} "
                                         f"{trainer.first_val.get(k, float('nan')):.3f} → {trainer.last_val[k]:.3f}"
                                         for k in keys)
    return out
