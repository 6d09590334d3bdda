"""A model and an index loaded once: queries in, hits out. What `moon search` and `moon serve` share."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moon_cli.errors import MoonError
from moon_cli.index.searcher import Searcher


class SearchEngine:
    """``memory``: see ``Searcher``. ``detector``: a `moon detect-train` directory; query photos then get their
    core-product crop beside them, as products and shoppers' photos do in training."""

    def __init__(self, index_dir: Path, model_name: str, memory: str = "off", device: str | None = None,
                 detector: Path | None = None):
        from moon_cli.embed.encoders import load_encoder
        from moon_cli.index.lance import read_info

        info = read_info(index_dir)  # a missing or foreign index fails before the model loads
        self.encoder = load_encoder(model_name, device)
        if self.encoder.model_id != info["model_id"]:
            raise MoonError(f"{index_dir}: indexed with model '{info['model_id']}', not '{self.encoder.model_id}'; "
                            f"search with the model that made the index")
        self.searcher = Searcher(index_dir, memory=memory)
        self.detector, self.device = None, device or "cpu"
        if detector is not None:
            from moon_cli.detect.predict import load_detector

            self.detector = load_detector(Path(detector))  # (YOLO model, image size)

    @property
    def dim(self) -> int:
        return self.searcher.dim

    def embed(self, items: list[dict], kind: str = "query") -> tuple[np.ndarray, dict[int, str]]:
        """Unit vectors (n_ok, D) for the items that encode, in order, and position → error for the rest."""
        if kind == "query" and self.detector is not None:
            items = [self._with_crop(item) for item in items]
        enc = self.encoder.encode(items, kind)
        vectors = enc.vectors[:, : self.dim]
        vectors = vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)  # (n_ok, D)
        return vectors.numpy().astype(np.float32), enc.errors

    def search(self, queries: list[dict], k: int = 10, where: str | None = None) -> list[dict]:
        """One result per query, in order: {"hits": [...]} or {"error": "..."}; queries embed as one batch
        and search as one call."""
        vectors, errors = self.embed(queries)
        found = iter(self.searcher.search(vectors, k, where) if len(vectors) else [])
        return [{"error": errors[i]} if i in errors else {"hits": next(found)} for i in range(len(queries))]

    def _with_crop(self, query: dict) -> dict:
        from moon_cli.detect.predict import core_product_crop
        from moon_cli.model.images import InputError, load_image

        if query.get("image") is None or query.get("crop") is not None:
            return query
        try:
            photo = load_image(query["image"], f"query {query.get('query_id', query.get('id', '?'))}", "image")
        except InputError:
            return query  # the encoder reports the same problem for this query alone
        return {**query, "image": photo, "crop": core_product_crop(photo, *self.detector, device=self.device)}
