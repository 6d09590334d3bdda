"""Turn products and queries into one token sequence each, batched and padded for the backbone.

A product (many-to-one) becomes

    [vs] image_1 [ve] [vs] crop_1 [ve] ... [vs] image_n [ve] [vs] crop_n [ve]
    "title:" TITLE "category:" CATEGORY "attributes:" ATTRIBUTE

and a query ``[vs] image [ve] "query:" QUERY_TEXT``. Every token carries a ``TokenType`` taken from the
span it came from — this is what guides the mixture of experts (category tokens to the category
expert, attribute tokens to the attribute expert).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

import torch

from moon_cli.model.config import InputConfig
from moon_cli.model.images import InputError, crop_box, load_image, magnify
from moon_cli.model.tokenizer import IMAGE_PAD, VISION_END, VISION_START


class TokenType(IntEnum):
    OTHER = 0  # template words and vision delimiters
    IMAGE = 1
    CROP = 2
    TITLE = 3
    CATEGORY = 4
    ATTRIBUTE = 5
    QUERY_TEXT = 6


@dataclass
class Sequence:
    """One encoded product or query, before batching."""
    ids: list[int] = field(default_factory=list)
    types: list[int] = field(default_factory=list)
    pixel_values: list[torch.Tensor] = field(default_factory=list)  # per image: (patches, C·T·P·P)
    grids: list[list[int]] = field(default_factory=list)  # per image: (t, h, w) in patches

    def add(self, ids: list[int], kind: TokenType) -> None:
        self.ids += ids
        self.types += [int(kind)] * len(ids)


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, L) long
    attention_mask: torch.Tensor  # (B, L) long, 1 = real token
    token_types: torch.Tensor  # (B, L) long, TokenType
    mm_token_type_ids: torch.Tensor  # (B, L) int, 1 = image placeholder (drives 3-D RoPE)
    pixel_values: torch.Tensor | None  # (ΣN_patches, C·T·P·P)
    image_grid_thw: torch.Tensor | None  # (N_images, 3)

    def to(self, device) -> "Batch":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Batch(*(move(getattr(self, f)) for f in self.__dataclass_fields__))


class MoonProcessor:
    """Tokenizer + Qwen2-VL image processor + MOON's sequence layout."""

    def __init__(self, tokenizer, image_processor, input_cfg: InputConfig):
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.cfg = input_cfg
        ids = tokenizer.convert_tokens_to_ids([VISION_START, VISION_END, IMAGE_PAD])
        self.vision_start_id, self.vision_end_id, self.image_token_id = ids
        if tokenizer.pad_token_id is None:
            raise InputError("the tokenizer has no pad token")
        self.pad_id = tokenizer.pad_token_id
        self.merge = image_processor.merge_size
        self._text_cache: dict[str, list[int]] = {}

    # ----------------------------------------------------------------------------------------- pieces
    def _text(self, text: str, limit: int | None = None) -> list[int]:
        ids = self._text_cache.get(text)
        if ids is None:
            ids = self.tokenizer(text, add_special_tokens=False).input_ids
            if len(self._text_cache) < 100_000:
                self._text_cache[text] = ids
        return ids[:limit] if limit else ids

    def _image(self, seq: Sequence, img, kind: TokenType) -> None:
        out = self.image_processor(images=[img], return_tensors="pt")
        grid = out["image_grid_thw"][0].tolist()
        n_tokens = grid[0] * grid[1] * grid[2] // (self.merge ** 2)
        seq.add([self.vision_start_id], TokenType.OTHER)
        seq.add([self.image_token_id] * n_tokens, kind)
        seq.add([self.vision_end_id], TokenType.OTHER)
        seq.pixel_values.append(out["pixel_values"])
        seq.grids.append(grid)

    def _crop(self, seq: Sequence, crop, photo) -> None:
        self._image(seq, magnify(crop, photo) if self.cfg.magnify_crops else crop, TokenType.CROP)

    # ----------------------------------------------------------------------------------------- items
    def encode_product(self, product: dict) -> Sequence:
        owner = f"product {product.get('item_id', product.get('id', '?'))}"
        title = product.get("title")
        has_title = isinstance(title, str) and bool(title.strip())
        images = list(product.get("images") or [])[: self.cfg.max_images]
        if not has_title and not images:
            raise InputError(f"{owner}: has neither a title nor a photo; a product needs at least one")
        seq = Sequence()
        crops = list(product.get("crops") or [])
        bboxes = list(product.get("bboxes") or [])
        for k, src in enumerate(images):
            img = load_image(src, owner, f"images[{k}]")
            self._image(seq, img, TokenType.IMAGE)
            if not self.cfg.use_crops:
                continue
            if k < len(crops) and crops[k] is not None:
                self._crop(seq, load_image(crops[k], owner, f"crops[{k}]"), img)
            elif k < len(bboxes) and bboxes[k] is not None:
                self._crop(seq, crop_box(img, bboxes[k], owner), img)
        limit = self.cfg.max_text_tokens
        if has_title:  # a folder of photos has no text: the product is its photos alone
            seq.add(self._text("title:"), TokenType.OTHER)
            seq.add(self._text(" " + title.strip(), limit), TokenType.TITLE)
        path = [c for c in (product.get("category_path") or []) if c]
        if path:
            seq.add(self._text("\ncategory:"), TokenType.OTHER)
            seq.add(self._text(" " + " > ".join(path), limit), TokenType.CATEGORY)
        attrs = [a for a in (product.get("attributes") or []) if a and a.get("value")]
        if attrs:
            seq.add(self._text("\nattributes:"), TokenType.OTHER)
            seq.add(self._text(" " + "; ".join(f"{a['name']}: {a['value']}" for a in attrs), limit),
                    TokenType.ATTRIBUTE)
        return seq

    def encode_query(self, query: dict) -> Sequence:
        name = query.get("query_id", query.get("id"))
        owner = "query" if name is None else f"query {name}"  # a service's one query has no id
        text, image = query.get("text"), query.get("image")
        if (not isinstance(text, str) or not text.strip()) and image is None:
            raise InputError(f"{owner}: needs 'text' or 'image' (both are empty)")
        seq = Sequence()
        if image is not None:
            photo = load_image(image, owner, "image")
            self._image(seq, photo, TokenType.IMAGE)
            if self.cfg.use_crops and query.get("crop") is not None:
                self._crop(seq, load_image(query["crop"], owner, "crop"), photo)
        if isinstance(text, str) and text.strip():
            seq.add(self._text("query:"), TokenType.OTHER)
            seq.add(self._text(" " + text.strip(), self.cfg.max_text_tokens), TokenType.QUERY_TEXT)
        return seq

    # ----------------------------------------------------------------------------------------- batch
    def collate(self, seqs: list[Sequence]) -> Batch:
        """Right-pad to the longest sequence; concatenate every image's patches in sequence order."""
        length = max(len(s.ids) for s in seqs)
        B = len(seqs)
        input_ids = torch.full((B, length), self.pad_id, dtype=torch.long)
        attention = torch.zeros((B, length), dtype=torch.long)
        types = torch.zeros((B, length), dtype=torch.long)
        for i, s in enumerate(seqs):
            n = len(s.ids)
            input_ids[i, :n] = torch.tensor(s.ids)
            attention[i, :n] = 1
            types[i, :n] = torch.tensor(s.types)
        pixels = [p for s in seqs for p in s.pixel_values]
        grids = [g for s in seqs for g in s.grids]
        return Batch(
            input_ids=input_ids,
            attention_mask=attention,
            token_types=types,
            mm_token_type_ids=(input_ids == self.image_token_id).int(),
            pixel_values=torch.cat(pixels) if pixels else None,
            image_grid_thw=torch.tensor(grids, dtype=torch.long) if grids else None,
        )

    # ----------------------------------------------------------------------------------------- disk
    def save_pretrained(self, directory: Path) -> None:
        self.tokenizer.save_pretrained(directory)
        self.image_processor.save_pretrained(directory)

    @staticmethod
    def image_processor_for(input_cfg: InputConfig, vision_cfg):
        from transformers import Qwen2VLImageProcessor

        side = input_cfg.image_size
        return Qwen2VLImageProcessor(min_pixels=(side // 2) ** 2, max_pixels=side * side,
                                     patch_size=vision_cfg.patch_size, merge_size=vision_cfg.spatial_merge_size,
                                     temporal_patch_size=vision_cfg.temporal_patch_size)

    @staticmethod
    def image_processor_of(source: str, revision: str | None, input_cfg: InputConfig):
        """A backbone's own image processor — its preprocessor_config.json decides patch size, mean and std —
        sized by ``input_cfg`` (at most image_size² pixels)."""
        from transformers import AutoImageProcessor

        side = input_cfg.image_size
        try:
            return AutoImageProcessor.from_pretrained(source, revision=revision, min_pixels=(side // 2) ** 2,
                                                      max_pixels=side * side)
        except (OSError, ValueError) as exc:
            raise InputError(f"backbone '{source}': no readable image processor config "
                             f"({str(exc).splitlines()[0]})") from None

    @classmethod
    def from_pretrained(cls, directory: Path, input_cfg: InputConfig) -> "MoonProcessor":
        import json

        from transformers import AutoImageProcessor, AutoTokenizer

        from moon_cli.model import mini

        tokenizer = AutoTokenizer.from_pretrained(str(directory))
        saved = json.loads((Path(directory) / "preprocessor_config.json").read_text())
        if saved.get("image_processor_type") == mini.PROCESSOR_TYPE:
            image_processor = mini.FixedGridImageProcessor.from_config(saved)
        else:
            image_processor = AutoImageProcessor.from_pretrained(str(directory))
        return cls(tokenizer, image_processor, input_cfg)
