"""MoonModel: a Qwen2-VL-family backbone with guided MoE and LoRA that embeds products and queries.

    product / query ──processor──► tokens (+ per-token type) ──backbone──► last hidden states (B, L, H)
                                   ──pool (config.pooling.mode, model/pooling.py)──► L2-normalised embedding (B, H)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from moon_cli.errors import MoonError
from moon_cli.model import backbone as bb
from moon_cli.model import mini, preset
from moon_cli.model.config import MoonConfig, check_mode
from moon_cli.model.dual import dual_embeddings
from moon_cli.model.lora import apply_lora, merge_lora
from moon_cli.model.moe import GuidedMoE, RoutingContext, install_guided_moe, load_balancing_loss
from moon_cli.model.pooling import modality_means, pool
from moon_cli.model.processor import Batch, MoonProcessor, Sequence
from moon_cli.model.resolve import WEIGHTS, ModelRef, resolve

BACKBONE_CONFIG = "backbone_config.json"
META = "meta.json"
ARCHS = ("moon", "dual")  # dual: the CLIP-style two-tower baseline (model/dual.py)


@dataclass
class MoonOutput:
    embeddings: torch.Tensor  # (B, D), unit norm
    balance_loss: torch.Tensor  # () scalar, mean over MoE layers (0 without MoE)
    # the unit-norm means of each row's visual tokens and content-text tokens, (B, D) each, and the rows that
    # have both (B,) — what the intra-product image↔text alignment term reads (train/loss.py)
    visual: torch.Tensor | None = None
    text: torch.Tensor | None = None
    has_both: torch.Tensor | None = None


class MoonModel(nn.Module):
    def __init__(self, config: MoonConfig, backbone: nn.Module, processor: MoonProcessor):
        super().__init__()
        if config.backbone.arch not in ARCHS:
            raise MoonError(f"backbone.arch '{config.backbone.arch}' is unknown; use one of {', '.join(ARCHS)}")
        check_mode(config.pooling.mode)
        self.config = config
        self.processor = processor
        self.routing = RoutingContext()
        self.moe_layers: list[GuidedMoE] = []
        if config.moe.enabled:
            self.moe_layers = install_guided_moe(backbone.language_model, config.moe, self.routing)
        if config.lora.enabled:
            backbone = apply_lora(backbone, config.lora)
        self.backbone = backbone
        self._set_trainable()

    # --------------------------------------------------------------------------------------- structure
    @property
    def base(self) -> nn.Module:
        """The Qwen2(.5)-VL base model, under any peft wrapper."""
        b = self.backbone
        return b.get_base_model() if hasattr(b, "get_base_model") else b

    @property
    def hf_config(self):
        return self.base.config

    @property
    def dim(self) -> int:
        return self.hf_config.text_config.hidden_size

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _set_trainable(self) -> None:
        if not self.config.lora.enabled:
            for p in self.base.parameters():
                p.requires_grad = True
        if self.config.backbone.freeze_vision:
            for p in self.base.visual.parameters():
                p.requires_grad = False
        if getattr(self.base, "prior", None) is not None:
            self.base.prior.requires_grad_(False)

    def add_guided_moe(self, cfg) -> None:
        """Install the guided MoE on a dense model — e.g. post-training from a dense pre-training run. Every
        expert starts as a copy of the FFN it replaces, so the model's output is unchanged at this point."""
        if self.moe_layers:
            return
        if self.config.lora.enabled:
            raise MoonError("the guided MoE can be added to a fully trained model only; this one has LoRA "
                            "adapters (merge them first, or pre-train with the MoE)")
        self.config.moe = dataclasses.replace(cfg, enabled=True)
        self.moe_layers = install_guided_moe(self.base.language_model, self.config.moe, self.routing)
        self.to(self.device)
        self._set_trainable()

    def is_new_parameter(self, name: str) -> bool:
        """True for weights with no pretrained value — the MoE routers, and `mini`'s projector — which may
        learn at their own (higher) rate while the pretrained weights move slowly."""
        return ".router." in name or ".projector." in name

    def freeze_pretrained(self) -> None:
        """Only the new weights (``is_new_parameter``) train from here on; a model without any is refused."""
        if not any(p.requires_grad and self.is_new_parameter(n) for n, p in self.named_parameters()):
            raise MoonError("--freeze-pretrained: this model has no new weights to train (no projector, no MoE "
                            "routers); it fits the `mini` preset, whose projector is new")
        for n, p in self.named_parameters():
            p.requires_grad = p.requires_grad and self.is_new_parameter(n)

    def _set_class_vectors(self, key: str) -> None:
        """The visual prior's class vectors: the class texts embedded as queries by this model's own text path
        (cached per ``key`` — what that path is built from)."""
        from moon_cli.model.prior import cached_class_vectors, class_texts, colour_texts, texts_key

        prior = getattr(self.base, "prior", None)
        if prior is None:
            return
        pooling = self.config.pooling
        prior.set_weights(pooling.prior_anchor, pooling.prior_detail, pooling.prior_colour)
        key = f"{key}|{self.config.input.max_text_tokens}|{texts_key()}"
        vectors = cached_class_vectors(key, lambda: self.encode_queries([{"text": t} for t in class_texts()], 64))
        prior.class_vectors.copy_(vectors.to(prior.class_vectors))
        if prior.colours:  # eleven short texts: not worth a cache
            colours = self.encode_queries([{"text": t} for t in colour_texts()])  # (11, D)
            prior.colour_vectors.copy_(colours.to(prior.colour_vectors))

    def num_parameters(self, trainable: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable)

    # --------------------------------------------------------------------------------------- building
    @classmethod
    def from_preset(cls, name: str = "tiny", config: MoonConfig | None = None, seed: int = 0) -> "MoonModel":
        """A preset: a random-init model of the real architecture, or `mini` from pretrained parts
        (deterministic for ``seed``)."""
        config = config or preset.load(name).config()
        config.backbone.name, config.backbone.family = name, preset.load(name).family
        if config.backbone.family == mini.FAMILY:
            backbone, tokenizer, image_processor = mini.build(config.input.image_size, seed)
            model = cls(config, backbone, MoonProcessor(tokenizer, image_processor, config.input))
            model._set_class_vectors(mini.text_path_key())
            return model
        from moon_cli.model.tokenizer import build_tiny_tokenizer

        tokenizer = build_tiny_tokenizer()
        hf_config = bb.preset_backbone_config(name, tokenizer)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            backbone = bb.build_from_config(hf_config, config.backbone.attn_implementation, config.backbone.dtype)
            bb.init_preset_weights(backbone, name)
            processor = MoonProcessor(tokenizer,
                                      MoonProcessor.image_processor_for(config.input, hf_config.vision_config),
                                      config.input)
            return cls(config, backbone, processor)

    @classmethod
    def from_backbone(cls, name: str, config: MoonConfig | None = None, revision: str | None = None) -> "MoonModel":
        """MOON on a pretrained Qwen2-VL-family backbone (hub id or local path); LoRA on by default."""
        from transformers import AutoTokenizer

        if config is None:
            config = MoonConfig()
            config.lora.enabled = True
        config.backbone.name, config.backbone.revision = name, revision
        backbone, family = bb.load_pretrained(name, revision, config.backbone.attn_implementation,
                                              config.backbone.dtype)
        config.backbone.family = family
        tokenizer = AutoTokenizer.from_pretrained(name, revision=revision)
        processor = MoonProcessor(tokenizer, MoonProcessor.image_processor_of(name, revision, config.input),
                                  config.input)
        return cls(config, backbone, processor)

    @classmethod
    def from_pretrained(cls, source: str | Path | ModelRef) -> "MoonModel":
        """Load a MOON checkpoint directory, a preset, or a Qwen2-VL-family hub id / local path (LoRA on) — what a
        name means is decided once, by ``moon_cli.model.resolve``: pass its ``ModelRef`` where you hold one."""
        ref = source if isinstance(source, ModelRef) else resolve(source)
        if ref.kind == "baseline":
            raise MoonError(f"model '{ref.name}' is a pretrained reference baseline, not a MOON model; it embeds "
                            f"(`moon embed`, `moon evaluate`) but cannot be loaded or trained as MOON")
        if ref.kind == "preset":
            return cls.from_preset(ref.name)
        if ref.kind == "checkpoint":
            return cls._load_checkpoint(ref.path)
        config = MoonConfig()
        config.lora.enabled = True
        return cls.from_backbone(ref.name, config)

    @classmethod
    def _load_checkpoint(cls, ckpt: Path) -> "MoonModel":
        from safetensors.torch import load_file
        from transformers import AutoConfig

        config = MoonConfig.load(ckpt / "config.json")
        try:
            processor = MoonProcessor.from_pretrained(ckpt, config.input)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise MoonError(f"{ckpt}: its tokenizer / image processor files cannot be read ({_first_line(exc)}); "
                            f"the checkpoint is damaged — restore or re-train it") from None
        if config.backbone.family == mini.FAMILY:
            if processor.image_processor.__class__ is not mini.FixedGridImageProcessor:
                raise MoonError(f"{ckpt}: its config.json names the `mini` backbone but its image processor is "
                                f"another backbone's; the files come from different checkpoints")
            backbone = mini.MiniBackbone(mini.MiniConfig.from_json_file(ckpt / BACKBONE_CONFIG))
        elif config.backbone.name in preset.PRESETS:
            try:
                hf_config = AutoConfig.from_pretrained(str(ckpt / BACKBONE_CONFIG))
            except (OSError, ValueError, TypeError, KeyError) as exc:
                raise MoonError(f"{ckpt / BACKBONE_CONFIG}: not a readable backbone config ({_first_line(exc)}); "
                                f"the checkpoint is damaged — restore or re-train it") from None
            backbone = bb.build_from_config(hf_config, config.backbone.attn_implementation, config.backbone.dtype)
        else:
            backbone, _ = bb.load_pretrained(config.backbone.name, config.backbone.revision,
                                             config.backbone.attn_implementation, config.backbone.dtype)
        model = cls(config, backbone, processor)
        try:
            state = load_file(str(ckpt / WEIGHTS))  # safetensors: never unpickles
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type for damaged files
            raise MoonError(f"{ckpt / WEIGHTS}: not a readable safetensors file ({_first_line(exc)}); the checkpoint "
                            f"is damaged or truncated — restore or re-train it") from None
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # a tensor of another shape than config.json builds
            raise MoonError(f"{ckpt / WEIGHTS}: weights do not fit the model its config.json describes "
                            f"({_first_line(exc, 'size mismatch')}); the files come from different "
                            f"checkpoints") from None
        if unexpected:
            raise MoonError(f"{ckpt}: weights hold {len(unexpected)} unknown tensor(s), e.g. {unexpected[0]}; "
                            f"the checkpoint does not match its config.json")
        if config.backbone.name in preset.PRESETS and missing:
            raise MoonError(f"{ckpt}: {len(missing)} tensor(s) missing from {WEIGHTS}, e.g. {missing[0]}")
        _check_ecosystem_files(ckpt)
        return model

    # --------------------------------------------------------------------------------------- saving
    def save_pretrained(self, directory: str | Path, meta: dict | None = None,
                        state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """config.json, model.safetensors, tokenizer + image processor, meta.json, a model card (README.md),
        and the files sentence-transformers reads (modules.json, config_sentence_transformers.json); written in place.

        For a preset backbone the full weights are saved (there is no hub copy); for a hub backbone only
        what training changes (LoRA adapters, MoE experts and routers — every trainable tensor).
        ``state_dict``: the weights to write instead of this module's own (a sharded model's, gathered).
        """
        from safetensors.torch import save_file

        from moon_cli.model.card import render_card
        from moon_cli.model.export import write_peft_adapter
        from moon_cli.io import user_mode_tree
        from moon_cli.model.st_files import write_sentence_transformers_files

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        full = self.config.backbone.name in preset.PRESETS
        source = self.state_dict() if state_dict is None else state_dict
        state = {k: v.detach().contiguous().cpu() for k, v in source.items() if full or self._is_trained(k)}
        save_file(state, str(directory / WEIGHTS), metadata={"format": "pt", "moon": "1"})
        self.config.save(directory / "config.json")
        if full:
            self.hf_config.to_json_file(str(directory / BACKBONE_CONFIG))
        self.processor.save_pretrained(directory)
        (directory / META).write_text(json.dumps(meta or {}, indent=2, default=str) + "\n")
        if self.config.lora.enabled and not full:  # peft's own files: PeftModel.from_pretrained(base, directory)
            write_peft_adapter(self.backbone, directory)
        write_sentence_transformers_files(directory)  # SentenceTransformer(directory) loads it (moon_cli.model.st)
        (directory / "README.md").write_text(render_card(self.config, meta or {}))
        user_mode_tree(directory)  # safetensors writes its files 0600, whatever the umask

    def _is_trained(self, key: str) -> bool:
        return any(s in key for s in ("lora_", ".router.", ".experts.", "category_expert", "attribute_expert")) or (
            not self.config.lora.enabled)

    def merge_lora(self) -> None:
        """Fold LoRA adapters into the weights (faster inference; embeddings unchanged)."""
        if self.config.lora.enabled:
            self.backbone = merge_lora(self.backbone)
            self.config.lora.enabled = False

    # --------------------------------------------------------------------------------------- forward
    def forward(self, batch: Batch) -> MoonOutput:
        batch = batch.to(self.device)
        if self.config.backbone.arch == "dual":  # the CLIP-style baseline: no MoE, so no balancing loss
            embeddings = dual_embeddings(self, batch)
            self._forget_rope_deltas()
            return MoonOutput(embeddings, embeddings.new_zeros(()))
        self.routing.begin(batch.token_types, batch.attention_mask.bool())
        try:
            out = self.backbone(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                pixel_values=batch.pixel_values,
                image_grid_thw=batch.image_grid_thw,
                mm_token_type_ids=batch.mm_token_type_ids,
                use_cache=False,
            )
            hidden = out.last_hidden_state  # (B, L, H)
            pooled = pool(self.config.pooling.mode, hidden, batch.attention_mask, batch.token_types,  # (B, H)
                          getattr(out, "visual_prior", None))
            embeddings = torch.nn.functional.normalize(pooled.float(), dim=-1)  # (B, H)
            losses = [load_balancing_loss(lg, self.config.moe.top_k) for lg in self.routing.router_logits]
            balance = torch.stack(losses).mean() if losses else embeddings.new_zeros(())
            visual, text, has_v, has_t = modality_means(hidden, batch.attention_mask, batch.token_types)
        finally:
            self.routing.end()
        self._forget_rope_deltas()
        return MoonOutput(embeddings, balance, visual, text, (has_v & has_t).squeeze(-1))

    def _forget_rope_deltas(self) -> None:
        if hasattr(self.base, "rope_deltas"):
            self.base.rope_deltas = None  # cached by HF for generation; stale across our batches

    @torch.no_grad()
    def embed_sequences(self, seqs: list[Sequence]) -> torch.Tensor:
        """(N, D) unit-norm embeddings of already-encoded sequences."""
        was_training = self.training
        self.eval()
        try:
            return self(self.processor.collate(seqs)).embeddings
        finally:
            self.train(was_training)

    def _encode(self, items, encode, batch_size: int) -> torch.Tensor:
        out = []
        for start in range(0, len(items), batch_size):
            seqs = [encode(item) for item in items[start:start + batch_size]]
            out.append(self.embed_sequences(seqs).cpu())
        return torch.cat(out) if out else torch.zeros((0, self.dim))

    def encode_products(self, products: list[dict], batch_size: int = 16) -> torch.Tensor:
        """(N, D) embeddings of products: dicts with title, category_path, attributes, images, crops/bboxes."""
        return self._encode(products, self.processor.encode_product, batch_size)

    def encode_queries(self, queries: list[dict], batch_size: int = 32) -> torch.Tensor:
        """(N, D) embeddings of queries: dicts with ``text`` and/or ``image``."""
        return self._encode(queries, self.processor.encode_query, batch_size)


def _check_ecosystem_files(ckpt: Path) -> None:
    """The files other libraries load (sentence-transformers' JSON, peft's adapter) are readable, or a one-line
    error names the damaged one — moon itself does not need them, the tools the checkpoint promises do."""
    from safetensors import safe_open

    for name in ("modules.json", "config_sentence_transformers.json", "adapter_config.json"):
        path = ckpt / name
        if path.is_file():
            try:
                json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise MoonError(f"{path}: not readable JSON ({exc}); the checkpoint is damaged — restore it, or "
                                f"re-save it with MoonModel.save_pretrained") from None
    adapter = ckpt / "adapter_model.safetensors"
    if adapter.is_file():
        try:
            with safe_open(str(adapter), "pt") as f:
                list(f.keys())
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type for damaged files
            raise MoonError(f"{adapter}: not a readable safetensors file ({_first_line(exc)}); the checkpoint is "
                            f"damaged — restore it or re-train") from None


def _first_line(exc: Exception, containing: str | None = None) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
    pick = next((ln for ln in lines if containing and containing in ln), lines[0])
    return pick[:200]
