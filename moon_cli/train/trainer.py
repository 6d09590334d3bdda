"""The training loop: optimiser and schedule, NaN guard, logging, validation, checkpoints and exact resume.

Output directory:
    CKPT_DIR/config.json, model.safetensors, tokenizer…, meta.json   the final model (`-m CKPT_DIR` works)
    CKPT_DIR/checkpoints/step-000050/   model files + trainer_state.pt (optimiser, schedule, RNG, data
                                        position, queue, temperature) — what `--resume` continues from
    CKPT_DIR/train_log.jsonl            one line per step (loss parts, lr, pool sizes, samples/s) and per
                                        validation (Recall@10 by query modality)
    CKPT_DIR/run.json                   the options and inputs of the run (resume refuses a different run)
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click
import torch
from tqdm import tqdm

from moon_cli.errors import MoonError
from moon_cli.model.moon import MoonModel
from moon_cli.train.data import BatchBuilder, MixSampler, TrainData
from moon_cli.train.dist import (DistInfo, any_rank, barrier, gather_objects, sum_gradients)
from moon_cli.train.queue import EmbeddingQueue
from moon_cli.train.step import ContrastiveStep, StepOptions
from moon_cli.train.validate import gallery_rows, validate

STATE = "trainer_state.pt"
LOG = "train_log.jsonl"
RUN = "run.json"


@dataclass
class TrainConfig:
    objective: str = "posttrain"  # posttrain (query → purchased product) | pretrain (photo → own text)
    steps: int = 200
    batch_size: int = 16
    lr: float = 2e-4
    weight_decay: float = 0.01
    warmup: float = 0.05  # share of steps with linear warm-up
    temperature: float = 0.05
    learn_temperature: bool = True
    hard_negatives: int = 1  # hard negatives per query drawn from --negatives each step
    use_hard_negatives: bool = True
    catalog_views: bool = False  # also train on listings' other photos as image queries (posttrain)
    queue_size: int = 512
    use_queue: bool = True
    use_gather: bool = True
    matryoshka_dims: list[int] = field(default_factory=list)
    grad_cache: bool = False
    chunk_size: int = 8
    modality_mix: dict[str, float] = field(default_factory=lambda: {"image": 12, "text": 3, "multimodal": 2})
    val_every: int = 50
    val_fraction: float = 0.1
    max_val: int = 500
    val_gallery: int = 1000
    checkpoint_every: int = 50
    keep_checkpoints: int = 2
    max_nan_steps: int = 3
    grad_clip: float = 1.0
    bf16: bool = False
    gradient_checkpointing: bool = False
    seed: int = 0

    def comparable(self) -> dict:
        return asdict(self)


class Trainer:
    def __init__(self, cfg: TrainConfig, model: MoonModel, data: TrainData, out_dir: Path, info: DistInfo,
                 inputs: dict, quiet: bool = False):
        self.cfg, self.model, self.data, self.out, self.info, self.quiet = cfg, model, data, out_dir, info, quiet
        self.inputs = inputs
        device = model.device
        self.logit_scale = torch.nn.Parameter(torch.tensor(1.0 / cfg.temperature, device=device),
                                              requires_grad=cfg.learn_temperature)
        self.params = [p for p in model.parameters() if p.requires_grad]
        decay = [p for p in self.params if p.ndim >= 2]
        no_decay = [p for p in self.params if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if cfg.learn_temperature:
            groups.append({"params": [self.logit_scale], "weight_decay": 0.0})
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
        warm = max(1, int(cfg.steps * cfg.warmup))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: _lr_factor(s, warm, cfg.steps))
        self.queue = EmbeddingQueue(cfg.queue_size, model.dim) if cfg.use_queue and cfg.queue_size > 0 else None
        weights = cfg.modality_mix if cfg.objective == "posttrain" else {"image": 1.0}
        self.sampler = MixSampler(data.by_modality(), weights, cfg.seed, info.rank)
        hard = cfg.hard_negatives if cfg.use_hard_negatives else 0
        self.builder = BatchBuilder(data, model.processor, self.sampler, cfg.batch_size, hard, cfg.seed, info.rank)
        opts = StepOptions(gather=cfg.use_gather, queue=cfg.use_queue,
                           matryoshka_dims=cfg.matryoshka_dims,
                           # gradients are summed over ranks when gathering: keep the balance term's scale
                           balance_weight=(model.config.moe.balance_weight / (info.world_size if cfg.use_gather else 1)
                                           if model.config.moe.enabled else 0.0),
                           grad_cache=cfg.grad_cache, chunk_size=cfg.chunk_size, bf16=cfg.bf16)
        self.step_fn = ContrastiveStep(model, self.logit_scale, opts, info, self.queue)
        self.gallery = gallery_rows(data, cfg.val_gallery, cfg.seed)
        self.step = 0
        self.nan_streak = 0
        self.nan_skipped = 0
        self.last_val: dict = {}
        self.first_val: dict = {}

    # ------------------------------------------------------------------------------------------ state
    def _state(self) -> dict:
        per_rank = gather_objects({"sampler": self.sampler.state_dict(), "rng": torch.get_rng_state(),
                                   "failed": sorted(self.builder.failed), "skipped": dict(self.builder.skipped)},
                                  self.info)
        return {"step": self.step, "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "logit_scale": self.logit_scale.detach().cpu(), "queue": self.queue.state_dict() if self.queue else None,
                "ranks": per_rank, "nan_streak": self.nan_streak, "nan_skipped": self.nan_skipped,
                "first_val": self.first_val, "last_val": self.last_val}

    def load_state(self, ckpt: Path) -> None:
        state = torch.load(ckpt / STATE, map_location="cpu", weights_only=True)
        if len(state["ranks"]) != self.info.world_size:
            raise MoonError(f"{ckpt}: saved by {len(state['ranks'])} process(es), resumed with {self.info.world_size}; "
                            f"resume with the same number of processes")
        self.step = int(state["step"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        with torch.no_grad():
            self.logit_scale.copy_(state["logit_scale"])
        if self.queue is not None and state["queue"] is not None:
            self.queue.load_state_dict(state["queue"])
        mine = state["ranks"][self.info.rank]
        self.sampler.load_state_dict(mine["sampler"])
        torch.set_rng_state(mine["rng"])
        self.builder.failed = set(mine["failed"])
        self.builder.skipped.update(mine["skipped"])
        self.nan_streak, self.nan_skipped = int(state["nan_streak"]), int(state["nan_skipped"])
        self.first_val, self.last_val = state["first_val"], state["last_val"]

    def save_checkpoint(self) -> None:
        state = self._state()  # every rank takes part in the gather
        if not self.info.is_main:
            return
        ckpts = self.out / "checkpoints"
        final = ckpts / f"step-{self.step:06d}"
        tmp = ckpts / f".step-{self.step:06d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        self.model.save_pretrained(tmp, meta=self._meta())
        torch.save(state, tmp / STATE)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)  # a checkpoint is complete or absent, never half-written
        for old in sorted(ckpts.glob("step-*"))[: -self.cfg.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)

    def _meta(self) -> dict:
        return {"stage": "train", "objective": self.cfg.objective, "step": self.step,
                "temperature": 1.0 / self.logit_scale.item(), "val": self.last_val, "inputs": self.inputs,
                "train_config": asdict(self.cfg)}

    def save_final(self) -> None:
        if not self.info.is_main:
            return
        tmp = self.out / ".final.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        self.model.save_pretrained(tmp, meta=self._meta())
        files = sorted(tmp.iterdir(), key=lambda p: p.name == "config.json")  # config.json last: marks completion
        for f in files:
            os.replace(f, self.out / f.name)
        tmp.rmdir()

    # ------------------------------------------------------------------------------------------ logging
    def _log(self, record: dict) -> None:
        if self.info.is_main:
            with open(self.out / LOG, "a") as fh:
                fh.write(json.dumps(record) + "\n")

    def _validate(self) -> None:
        if self.info.is_main:
            metrics = validate(self.model, self.data, self.gallery)
            if metrics:
                self.last_val = metrics
                if not self.first_val:
                    self.first_val = metrics
                self._log({"step": self.step, "val": metrics})
        barrier(self.info)

    # ------------------------------------------------------------------------------------------ loop
    def train(self, stop_at_step: int | None = None) -> dict:
        cfg = self.cfg
        started = time.perf_counter()
        samples = 0
        if self.step == 0 and cfg.val_every > 0:
            self._validate()  # the untrained model's recall, for the before / after comparison
        bar = tqdm(total=cfg.steps, initial=self.step, desc="moon train", unit="step", file=sys.stderr,
                   disable=self.quiet or not self.info.is_main, dynamic_ncols=True)
        self.model.train()
        while self.step < cfg.steps:
            if stop_at_step is not None and self.step >= stop_at_step:
                break
            t0 = time.perf_counter()
            batch = self.builder.build(self.step)
            self.optimizer.zero_grad(set_to_none=True)
            res = self.step_fn(batch)
            # gathered loss: every rank holds the global loss and grads through its own slice → sum;
            # without gathering each rank has its own loss → mean (plain data parallelism)
            if cfg.use_gather and self.info.enabled:
                sum_gradients(self.params, self.info, average=False)  # the temperature's grad is already global
            else:
                sum_gradients(self.params + [self.logit_scale], self.info, average=True)
            bad = any_rank(not bool(torch.isfinite(res.loss)), self.info)
            self.step += 1
            if bad:
                self._skip_nan_step()
                bar.update(1)
                continue
            self.nan_streak = 0
            torch.nn.utils.clip_grad_norm_(self.params + [self.logit_scale], cfg.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            with torch.no_grad():
                self.logit_scale.clamp_(1.0, 100.0)
            if self.queue is not None:
                self.queue.push(res.products, res.product_ids)
            samples += cfg.batch_size * self.info.world_size
            dt = time.perf_counter() - t0
            record = {"step": self.step, "loss": float(res.loss), "contrastive": float(res.contrastive),
                      "balance": float(res.balance), "lr": self.scheduler.get_last_lr()[0],
                      "temperature": 1.0 / self.logit_scale.item(), "pool": res.pool, "gathered": res.gathered,
                      "queue": res.queued, "samples_per_s": cfg.batch_size * self.info.world_size / dt,
                      "modalities": {m: batch.modalities.count(m) for m in sorted(set(batch.modalities))}}
            self._log(record)
            bar.set_postfix(loss=f"{float(res.loss):.3f}", pool=res.pool)
            bar.update(1)
            if cfg.val_every > 0 and (self.step % cfg.val_every == 0 or self.step == cfg.steps):
                self._validate()
            if cfg.checkpoint_every > 0 and (self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps):
                self.save_checkpoint()
        bar.close()
        elapsed = time.perf_counter() - started
        if self.step >= cfg.steps:
            self.save_final()
        return {"steps": self.step, "seconds": elapsed, "samples": samples,
                "samples_per_s": samples / elapsed if elapsed else 0.0}

    def _skip_nan_step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.nan_streak += 1
        self.nan_skipped += 1
        if self.info.is_main:
            click.echo(f"warning: step {self.step}: the loss is not finite; the step is skipped", err=True)
        self._log({"step": self.step, "skipped": "non-finite loss"})
        if self.nan_streak >= self.cfg.max_nan_steps:
            raise MoonError(f"the loss was NaN/inf for {self.nan_streak} steps in a row (up to step {self.step}); "
                            f"training stopped — lower --lr, raise --temperature, or check the inputs")


def _lr_factor(step: int, warm: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 10 % of the peak."""
    if step < warm:
        return (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total - warm))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def latest_checkpoint(out_dir: Path) -> Path | None:
    ckpts = sorted(p for p in (out_dir / "checkpoints").glob("step-*") if (p / STATE).is_file())
    return ckpts[-1] if ckpts else None


def truncate_log(out_dir: Path, step: int) -> None:
    """Drop log lines written after ``step`` (an interrupted run's tail, about to be redone)."""
    log = out_dir / LOG
    if not log.is_file():
        return
    keep = [ln for ln in log.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
    log.write_text("".join(ln + "\n" for ln in keep))
