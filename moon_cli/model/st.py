"""MOON checkpoints as sentence-transformers models.

Every checkpoint carries ``modules.json`` naming one module, ``MoonModule``: MOON reads a product's photos,
crops and text as one sequence and pools it itself, so there is no token-embedding / pooling split to expose.
``SentenceTransformer(ckpt).encode(...)`` then takes what ``moon embed`` takes and gives the same vectors:

- a string: a text query (a path to an existing image file: an image query);
- a PIL image: an image query;
- a dict with ``text`` and / or ``image`` (and optionally ``crop``): a query, multimodal when both;
- a dict with product fields (``title``, ``image_paths`` or ``images``, ``category_path``, ``attributes``):
  a product, as ``moon embed`` encodes a catalogue row.

sentence-transformers 6 imports a module class from outside its own package only when told to trust it:
``SentenceTransformer(ckpt, trust_remote_code=True)`` (the class comes from the installed moon-cli; a
checkpoint holds no code), or, without that flag, ``SentenceTransformer(modules=[MoonModule.load(ckpt)])``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sentence_transformers.base.modules.input_module import InputModule


PRODUCT_FIELDS = ("title", "image_paths", "images", "category_path", "attributes", "item_id")


def as_moon_input(value: Any) -> tuple[str, dict]:
    """("product" | "query", the dict MOON's processor encodes) for one sentence-transformers input."""
    from PIL import Image

    from moon_cli.data.products import product_record

    if isinstance(value, Image.Image):
        return "query", {"text": None, "image": value}
    if isinstance(value, (str, Path)):
        path = Path(value)
        is_image = path.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"} and path.is_file()
        return "query", {"text": None, "image": str(path)} if is_image else {"text": str(value), "image": None}
    if isinstance(value, dict):
        if any(k in value for k in PRODUCT_FIELDS):
            record = dict(value)
            if "images" in record and "image_paths" not in record:
                record["image_paths"] = record["images"]
            return "product", product_record(record, {})
        if "text" in value or "image" in value:
            return "query", {"text": value.get("text"), "image": value.get("image"), "crop": value.get("crop")}
    raise ValueError(f"MOON encodes text, images and products; cannot read a {type(value).__name__} "
                     f"(give a string, a PIL image, {{'text', 'image'}} or a product dict with title / image_paths)")


class MoonModule(InputModule):
    """The whole MOON model as one sentence-transformers input module."""

    save_in_root = True

    def __init__(self, model=None, source: str = ""):
        super().__init__()
        self.model = model
        self.source = source

    @property
    def modalities(self) -> list:
        return ["text", "image", ("image", "text"), "message"]  # "message": dict inputs (products) pass through

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs) -> "MoonModule":
        from moon_cli.model.moon import MoonModel

        source = str(Path(model_name_or_path) / subfolder)
        model = MoonModel.from_pretrained(source)
        model.merge_lora()  # the same embeddings as `moon embed`, which merges too
        return cls(model.eval(), source)

    def preprocess(self, inputs, prompt: str | None = None, **kwargs) -> dict[str, Any]:
        seqs = []
        for value in inputs:
            kind, item = as_moon_input(value)
            encode = self.model.processor.encode_product if kind == "product" else self.model.processor.encode_query
            seqs.append(encode(item))
        return {"moon_sequences": seqs}

    def forward(self, features: dict[str, Any], **kwargs) -> dict[str, Any]:
        seqs = features["moon_sequences"]
        batch = self.model.processor.collate(seqs)
        features["sentence_embedding"] = self.model(batch).embeddings  # (B, D) unit rows
        return features

    def get_embedding_dimension(self) -> int:
        return self.model.dim

    def save(self, output_path: str, *args, **kwargs) -> None:
        self.model.save_pretrained(output_path)
