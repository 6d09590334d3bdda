"""Catalogue rows → the product dicts the model encodes, with core-product crops from `moon detect`."""

from __future__ import annotations

import pyarrow as pa


def crop_lookup(detections: pa.Table | None) -> dict[str, str]:
    """image_path → crop_path for images whose detection succeeded (no_detection / error: no crop)."""
    if detections is None:
        return {}
    cols = detections.select(["image_path", "crop_path", "status"]).to_pydict()
    return {img: crop for img, crop, status in zip(cols["image_path"], cols["crop_path"], cols["status"])
            if status == "ok" and crop}


def product_record(row: dict, crops: dict[str, str]) -> dict:
    """One catalogue row as the model's product dict; ``crops[k]`` is None where photo k has no crop."""
    images = list(row.get("image_paths") or [])
    return {
        "item_id": row.get("query_id") or row.get("item_id"),  # a bench row is named by its query id
        "title": row.get("title"),
        "category_path": row.get("category_path") or [],
        "attributes": row.get("attributes") or [],
        "images": images,
        "crops": [crops.get(p) for p in images],
    }


def product_records(catalog: pa.Table, detections: pa.Table | None = None) -> list[dict]:
    """Every catalogue row as a product dict, in catalogue order."""
    crops = crop_lookup(detections)
    return [product_record(row, crops) for row in catalog.to_pylist()]


def text_only(product: dict) -> dict:
    """The product's text fields alone (the pre-training objective aligns images with this)."""
    return {**product, "images": [], "crops": []}


def query_record(row: dict, crops: dict[str, str] | None = None) -> dict:
    """A pairs / queries row as the model's query dict; ``crop`` is the query photo's core product, if detected.

    A shopper's photo shows the product small, among clutter: the crop is what image search most needs.
    """
    image = row.get("query_image")
    return {"id": row.get("query_id") or row.get("pair_id"), "text": row.get("query_text"), "image": image,
            "crop": (crops or {}).get(image) if image else None}
