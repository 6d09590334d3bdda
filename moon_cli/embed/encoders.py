"""Everything that can stand where a MODEL is accepted: MOON checkpoints / presets / hub backbones, and the
two pretrained reference baselines (text-only sentence embedder, image-only classifier features).

An encoder turns a list of product or query dicts into unit-norm vectors, reporting per-item failures
instead of raising, so one broken photo never stops a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import torch

from moon_cli.model.images import InputError
from moon_cli.model.resolve import ModelRef


@dataclass
class Encoded:
    vectors: torch.Tensor  # (k, D) unit-norm rows for the items that succeeded
    ok: list[int]  # their positions in the input list
    errors: dict[int, str]  # position → one-line reason, for the rest


class Encoder:
    name: str  # what the user passed
    model_id: str  # identity of the weights (embeddings from different ids never mix)
    dim: int
    modalities: tuple[str, ...] = ("text", "image")

    def encode(self, items: list[dict], kind: str) -> Encoded:
        raise NotImplementedError

    def encode_batches(self, batches: Iterable[list], kind: str) -> Iterator[tuple[list, Encoded]]:
        """``(batch, encoded)`` for each batch of embed items (objects with an ``.item`` dict), in order; one
        process here, a pool of workers in ``RayEncoder``."""
        for batch in batches:
            yield batch, self.encode([it.item for it in batch], kind)

    def close(self) -> None:
        """Release what the encoder holds outside this process (Ray workers); nothing for a local one."""


class MoonEncoder(Encoder):
    def __init__(self, name: str, model, model_id: str):
        self.name, self.model, self.model_id = name, model, model_id
        self.dim = model.dim

    def encode(self, items: list[dict], kind: str) -> Encoded:
        encode = self.model.processor.encode_product if kind == "product" else self.model.processor.encode_query
        seqs, ok, errors = [], [], {}
        for i, item in enumerate(items):
            try:
                seqs.append(encode(item))
                ok.append(i)
            except InputError as exc:
                errors[i] = str(exc)
        vectors = self.model.embed_sequences(seqs).float().cpu() if seqs else torch.zeros((0, self.dim))
        return Encoded(vectors, ok, errors)


def load_encoder(model: str | ModelRef, device: str | None = None) -> Encoder:
    """An encoder for MODEL: a baseline name, a preset, a checkpoint directory or a hub id / local path (a name, or
    the ``ModelRef`` the caller resolved it to)."""
    from moon_cli.model.resolve import BASELINES, model_id, resolve

    ref = model if isinstance(model, ModelRef) else resolve(model)
    name = ref.name
    if ref.kind == "baseline":
        import importlib

        module, attr = BASELINES[name].split(":")
        return getattr(importlib.import_module(module), attr)(device)
    from moon_cli.model.moon import MoonModel

    model = MoonModel.from_pretrained(ref)
    if device:
        model = model.to(device)
    model.merge_lora()  # same embeddings, faster inference
    return MoonEncoder(name, model.eval(), model_id(ref))
