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
from dataclasses import asdict
from pathlib import Path

import torch

from moon_cli.errors import MoonError, warn
from moon_cli.model.moon import MoonModel
from moon_cli.train.config import TrainConfig
from moon_cli.train.data import BatchBuilder, MixSampler, TrainData
from moon_cli.train import fsdp
from moon_cli.train.dist import (DistInfo, any_rank, barrier, gather_objects, sum_gradients)
from moon_cli.train.queue import EmbeddingQueue
from moon_cli.train.step import ContrastiveStep, StepOptions
from moon_cli.train.validate import gallery_rows, validate
from moon_cli.progress import progress

STATE = "trainer_state.pt"
LOG = "train_log.jsonl"
RUN = "run.json"


def command_line() -> str | None:
    """The `moon ...` command that is running, for the model card (None when moon was called as a library)."""
    import shlex

    return shlex.join(["moon", *sys.argv[1:]]) if Path(sys.argv[0]).name == "moon" else None


class Trainer:
    def __init__(self, cfg: TrainConfig, model: MoonModel, data: TrainData, out_dir: Path, info: DistInfo,
                 inputs: dict, quiet: bool = False):
        self.cfg, self.model, self.data, self.out, self.info, self.quiet = cfg, model, data, out_dir, info, quiet
        self.inputs = inputs
        self.sharded = fsdp.is_sharded(model)  # FSDP reduces the model's gradients itself, in backward
        device = model.device
        # log-parametrised 1/τ (as CLIP): multiplicative steps, so a rate that suits it moves τ within a run
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(1.0 / cfg.temperature), device=device),
                                            requires_grad=cfg.learn_temperature)
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.params = [p for _, p in named]
        # without --new-lr one rate for all (and the optimiser state of runs from before it still resumes)
        splits = [(cfg.lr, named)] if cfg.new_lr is None else [
            (cfg.lr, [(n, p) for n, p in named if not model.is_new_parameter(n)]),
            (cfg.new_lr, [(n, p) for n, p in named if model.is_new_parameter(n)])]
        groups = []
        for lr, mine in splits:
            groups += [{"params": [p for _, p in mine if p.ndim >= 2], "weight_decay": cfg.weight_decay, "lr": lr},
                       {"params": [p for _, p in mine if p.ndim < 2], "weight_decay": 0.0, "lr": lr}]
        groups = [g for g in groups if g["params"]]
        if cfg.learn_temperature:
            groups.append({"params": [self.log_scale], "weight_decay": 0.0, "lr": cfg.temperature_lr})
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
                           grad_cache=cfg.grad_cache, chunk_size=cfg.chunk_size, bf16=cfg.bf16,
                           align_weight=cfg.align_weight)
        self.step_fn = ContrastiveStep(model, self.log_scale, opts, info, self.queue)
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
        return {"step": self.step, "scheduler": self.scheduler.state_dict(),
                "optimizer": None if self.sharded else self.optimizer.state_dict(),  # sharded: a file per rank
                "log_logit_scale": self.log_scale.detach().cpu(),
                "queue": self.queue.state_dict() if self.queue else None,
                "ranks": per_rank, "nan_streak": self.nan_streak, "nan_skipped": self.nan_skipped,
                "first_val": self.first_val, "last_val": self.last_val}

    def load_state(self, ckpt: Path) -> None:
        state = torch.load(ckpt / STATE, map_location="cpu", weights_only=True)
        if len(state["ranks"]) != self.info.world_size:
            raise MoonError(f"{ckpt}: saved by {len(state['ranks'])} process(es), resumed with {self.info.world_size}; "
                            f"resume with the same number of processes")
        self.step = int(state["step"])
        if self.sharded:
            fsdp.load_local_optimizer_state(self.optimizer, torch.load(fsdp.optimizer_file(ckpt, self.info.rank),
                                                                        map_location="cpu", weights_only=True))
        else:
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        with torch.no_grad():  # checkpoints from before the log parametrisation hold the raw 1/τ
            self.log_scale.copy_(state["log_logit_scale"] if "log_logit_scale" in state
                                 else torch.log(state["logit_scale"]))
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
        weights = fsdp.full_state_dict(self.model) if self.sharded else None  # and in this one
        ckpts = self.out / "checkpoints"
        final = ckpts / f"step-{self.step:06d}"
        tmp = ckpts / f".step-{self.step:06d}.tmp"
        if self.info.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        if self.sharded:  # each rank writes its own optimiser shard into the checkpoint being assembled
            barrier(self.info)
            torch.save(fsdp.local_optimizer_state(self.optimizer), fsdp.optimizer_file(tmp, self.info.rank))
            barrier(self.info)
        if not self.info.is_main:
            return
        self.model.save_pretrained(tmp, meta=self._meta(), state_dict=weights)
        torch.save(state, tmp / STATE)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)  # a checkpoint is complete or absent, never half-written
        for old in sorted(ckpts.glob("step-*"))[: -self.cfg.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)

    def _meta(self) -> dict:
        return {"stage": "train", "objective": self.cfg.objective, "step": self.step,
                "temperature": self.temperature, "val": self.last_val, "inputs": self.inputs,
                "train_config": asdict(self.cfg), "command": command_line()}

    def save_final(self) -> None:
        weights = fsdp.full_state_dict(self.model) if self.sharded else None  # every rank gathers
        if not self.info.is_main:
            return
        tmp = self.out / ".final.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        self.model.save_pretrained(tmp, meta=self._meta(), state_dict=weights)
        files = sorted(tmp.iterdir(), key=lambda p: p.name == "config.json")  # config.json last: marks completion
        for f in files:
            os.replace(f, self.out / f.name)
        tmp.rmdir()

    @property
    def temperature(self) -> float:
        return math.exp(-self.log_scale.item())

    # ------------------------------------------------------------------------------------------ logging
    def _log(self, record: dict) -> None:
        if self.info.is_main:
            with open(self.out / LOG, "a") as fh:
                fh.write(json.dumps(record) + "\n")

    def _validate(self) -> None:
        if self.info.is_main or self.sharded:  # a sharded forward needs every rank (each gathers the weights)
            metrics = validate(self.model, self.data, self.gallery)
            if metrics and self.info.is_main:
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
        bar = progress(total=cfg.steps, initial=self.step, desc="moon train", unit="step",
                       quiet=self.quiet or not self.info.is_main)
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
                if not self.sharded:  # FSDP summed them in backward
                    sum_gradients(self.params, self.info, average=False)  # the temperature's grad is already global
            else:
                sum_gradients(([] if self.sharded else self.params) + [self.log_scale], self.info, average=True)
            bad = any_rank(not bool(torch.isfinite(res.loss)), self.info)
            self.step += 1
            if bad:
                self._skip_nan_step()
                bar.update(1)
                continue
            self.nan_streak = 0
            torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)  # the temperature has its own rate
            self.optimizer.step()
            self.scheduler.step()
            with torch.no_grad():
                self.log_scale.clamp_(0.0, math.log(100.0))  # 0.01 ≤ τ ≤ 1
            if self.queue is not None:
                self.queue.push(res.products, res.product_ids)
            samples += cfg.batch_size * self.info.world_size
            dt = time.perf_counter() - t0
            record = {"step": self.step, "loss": float(res.loss), "contrastive": float(res.contrastive),
                      "balance": float(res.balance), "align": float(res.align), "lr": self.scheduler.get_last_lr()[0],
                      "temperature": self.temperature, "pool": res.pool, "gathered": res.gathered,
                      "queue": res.queued, "samples_per_s": cfg.batch_size * self.info.world_size / dt,
                      "modalities": {m: batch.modalities.count(m) for m in sorted(set(batch.modalities))}}
            if self.model.device.type == "cuda":  # this rank's peak so far: DDP against --fsdp
                record["max_memory_gb"] = torch.cuda.max_memory_allocated(self.model.device) / 2**30
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
            warn(f"warning: step {self.step}: the loss is not finite; the step is skipped")
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


def checkpoint_damage(ckpt: Path) -> str | None:
    """Why ``ckpt`` cannot be resumed from (a damaged file), or None when it reads back whole."""
    from safetensors import safe_open

    from moon_cli.model.config import MoonConfig

    try:
        MoonConfig.load(ckpt / "config.json")
        with safe_open(str(ckpt / "model.safetensors"), framework="pt") as weights:
            for key in weights.keys():
                weights.get_slice(key)  # the header's offsets must lie inside the file
        torch.load(ckpt / STATE, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to read back means: do not resume from it
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
    return None


def resumable_checkpoint(out_dir: Path, say: bool = True) -> Path | None:
    """The newest checkpoint that reads back whole; a damaged newer one (a kill while the disk was
    failing, a truncated copy) is skipped with a warning, and training resumes from the one before."""
    ckpts = sorted(p for p in (out_dir / "checkpoints").glob("step-*") if (p / STATE).is_file())
    for ckpt in reversed(ckpts):
        damage = checkpoint_damage(ckpt)
        if damage is None:
            return ckpt
        if say:
            warn(f"moon train: warning: {ckpt} is damaged ({damage}); resuming from the checkpoint before it")
    return None


def truncate_log(out_dir: Path, step: int) -> None:
    """Drop log lines written after ``step`` (an interrupted run's tail, about to be redone) and a torn line
    that a kill left half-written."""
    log = out_dir / LOG
    if not log.is_file():
        return
    keep = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("step", step + 1) <= step:
            keep.append(line)
    log.write_text("".join(ln + "\n" for ln in keep))
