"""What untrained `mini` knows about a photo: two fixed vectors beside its (trainable) visual tokens.

    pooled features f (N, 1280) ──ImageNet head──► p = softmax (N, 1000) ──top-k, renormalised──► Σ p_c · s_c
                                                     s_c: the text path's vector of "a photo of a {class}: {gloss}"
                              └──fixed random projection (1280 → H)──► R·f

- the **anchor** puts the photo in the space of the model's own text: EfficientNet-Lite0's ImageNet classifier
  says which classes the photo shows, and the anchor is the mix of those classes' text vectors (ConSE, Norouzi
  et al. 2014), with each class named and glossed (WordNet's definition, from timm's ImageNet tables) so the
  text path reads what the class is, not only its name; ImageNet has no colours, so the photo's basic colour
  terms (the two largest shares of its product's pixels, ``colour_histogram``) are mixed in the same way
  from the vectors of "something {colour}", at ``pooling.prior_colour`` of the anchor;
- the **detail** keeps the photo apart from others like it: a seeded random projection of the tower's pooled
  features (distances survive a random projection), which the anchor alone loses — two photos of hammers
  share their classes.

``pooling.prior_anchor`` / ``prior_detail`` weigh them into the visual half of balanced pooling beside the mean
of the visual tokens' states (model/pooling.py). Nothing here trains: the classifier is frozen, the class
vectors (classes and colours) are computed once from the untrained text path and kept in the checkpoint, the
projection is seeded.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from moon_cli.errors import MoonError, warn

CLASS_PROMPT = "a photo of a {name}: {gloss}"
# the eleven basic colour terms (Berlin & Kay), each at a typical sRGB value in [0, 1]
COLOURS = {"black": (0.05, 0.05, 0.05), "white": (0.95, 0.95, 0.95), "grey": (0.5, 0.5, 0.5),
           "red": (0.8, 0.1, 0.1), "orange": (1.0, 0.55, 0.0), "yellow": (0.95, 0.85, 0.1), "green": (0.15, 0.6, 0.2),
           "blue": (0.1, 0.3, 0.8), "purple": (0.5, 0.2, 0.6), "pink": (1.0, 0.6, 0.75), "brown": (0.45, 0.27, 0.1)}
COLOUR_PROMPT = "something {name}"
CACHE_ENV = "MOON_CACHE"  # where derived data is kept [~/.cache/moon]


def glosses_dir() -> Path:
    """timm's ImageNet tables, found without importing timm (importing it registers every model: a second)."""
    import importlib.util

    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        raise MoonError("the `mini` preset's visual prior reads ImageNet's class glosses from timm; install the "
                        "baselines: pip install -e '.[baselines]' (make baselines)")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "_info"


def class_texts() -> list[str]:
    """The 1,000 ImageNet-1k classes in the classifier's order, each named (torchvision's names) and glossed
    (WordNet's definitions, as timm ships them)."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    info = glosses_dir()
    synsets = (info / "imagenet_synsets.txt").read_text().split()
    gloss = dict(line.split("\t", 1) for line in (info / "imagenet_synset_to_definition.txt").read_text().splitlines()
                 if "\t" in line)
    if len(synsets) != len(_IMAGENET_CATEGORIES):
        raise MoonError(f"{info}: {len(synsets)} ImageNet synsets, expected {len(_IMAGENET_CATEGORIES)}")
    return [CLASS_PROMPT.format(name=name, gloss=gloss.get(s, name).strip()) for name, s in
            zip(_IMAGENET_CATEGORIES, synsets)]


def colour_texts() -> list[str]:
    return [COLOUR_PROMPT.format(name=name) for name in COLOURS]


def colour_histogram(pixels: torch.Tensor) -> torch.Tensor:
    """(N, 3, S, S) pixels in the Lite normalisation → (N, 11) shares of the basic colours in the product: each
    pixel softly assigned to its nearest colour, weighted by how far it is from the background (the median
    of the photo's border), so a cut-out on white counts the product, and a tight crop counts everything."""
    side = pixels.shape[-1]  # pooled to 32 × 32 before anything else (avg_pool2d is 8× faster than adaptive)
    pooled = F.avg_pool2d(pixels.float(), side // 32) if side % 32 == 0 else F.adaptive_avg_pool2d(pixels.float(), 32)
    rgb = pooled * 0.5 + 0.5  # (N, 3, 32, 32) in [0, 1]
    border = torch.cat([rgb[..., 0, :], rgb[..., -1, :], rgb[..., :, 0], rgb[..., :, -1]], dim=-1)  # (N, 3, 128)
    background = border.median(dim=-1).values  # (N, 3)
    foreground = (((rgb - background[..., None, None]) ** 2).sum(1).sqrt() / 0.25).clamp(0, 1) + 1e-3  # (N, 32, 32)
    refs = torch.tensor(list(COLOURS.values()), device=pixels.device)  # (11, 3)
    x = rgb.flatten(2).transpose(1, 2)  # (N, 1024, 3)
    d2 = (x ** 2).sum(-1, keepdim=True) - 2 * x @ refs.T + (refs ** 2).sum(-1)  # (N, 1024, 11) squared distances
    soft = torch.exp((d2.amin(-1, keepdim=True) - d2) / 0.01)  # a softmax over 11, written out: 5× faster here
    soft = soft / soft.sum(-1, keepdim=True)
    w = foreground.flatten(1)  # (N, 1024)
    return (w[:, None, :] @ soft).squeeze(1) / w.sum(-1, keepdim=True)  # (N, 11)


class VisualPrior(nn.Module):
    """The ImageNet head, the class texts' vectors and the detail projection of a `mini` backbone (frozen), and
    what it has seen in training.

    The prior is for photos the model was not trained on. An untrained model takes it whole; a trained one
    keeps it for photos unlike its training photos and trusts its visual tokens on photos like them: ``gate``
    is 1 until training has seen photos, then falls from 1 to 0 as a photo's pooled features come within the
    training photos' usual distance of their mean (a z-score of the cosine to it, ``GATE_Z``). Trained on
    synthetic renders, the demo's model gates its renders shut (cosine 0.62-0.82 to their mean) and keeps the
    prior for real photographs (0.23-0.42).
    """

    GATE_Z = 2.0  # a photo this many standard deviations less like the training photos than they are: half gate
    GATE_SLOPE = 3.0

    def __init__(self, channels: int, hidden: int, classes: int = 1000, top_k: int = 5, seed: int = 0,
                 colours: bool = False):
        super().__init__()
        self.top_k = top_k
        self.colours = colours
        if colours:  # the colour terms' text vectors, and their share of the anchor (pooling.prior_colour)
            self.register_buffer("colour_vectors", torch.zeros(len(COLOURS), hidden))  # (11, H)
            self.register_buffer("colour_share", torch.zeros(()))
        self.head = nn.Linear(channels, classes)  # EfficientNet-Lite0's ImageNet classifier
        self.register_buffer("class_vectors", torch.zeros(classes, hidden))  # (C, H), unit rows once set
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("projection", torch.randn(channels, hidden, generator=gen) / channels ** 0.5)  # (1280, H)
        self.register_buffer("mix", torch.tensor([0.0, 0.0, 1.0]))  # weights of anchor, detail, visual tokens
        # training photos: how many, the mean of their pooled features, and the mean / mean square of their
        # cosine to it (running, the same on every process)
        self.register_buffer("seen", torch.zeros(()))
        self.register_buffer("feature_mean", torch.zeros(channels))
        self.register_buffer("fit", torch.zeros(2))
        self.requires_grad_(False)

    def set_weights(self, anchor: float, detail: float, colour: float = 0.0) -> None:
        rest = 1.0 - anchor - detail
        if min(anchor, detail, rest) <= 0:
            raise MoonError(f"pooling.prior_anchor {anchor} and prior_detail {detail}: each must be above 0 and "
                            f"together below 1 (the visual tokens' mean keeps the rest)")
        if not 0 <= colour < 1 or (colour and not self.colours):
            raise MoonError(f"pooling.prior_colour {colour}: the colour terms' share of the anchor, from 0 up to "
                            f"below 1, on a backbone built with colours")
        self.mix.copy_(torch.tensor([anchor, detail, rest]))
        if self.colours:
            self.colour_share.fill_(colour)

    @torch.no_grad()
    def forward(self, pooled: torch.Tensor, pixels: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """pooled features (N, C) [and the photos (N, 3, S, S)] → anchor (N, H), detail (N, H), both unit norm,
        and the gate (N,)."""
        if self.training:
            self._observe(pooled)
        anchor = F.normalize(self._top_mix(self.head(pooled).softmax(-1), self.class_vectors, self.top_k), dim=-1)
        if self.colours and pixels is not None and self.colour_share > 0:
            colour = F.normalize(self._top_mix(colour_histogram(pixels), self.colour_vectors, 2), dim=-1)  # (N, H)
            anchor = F.normalize((1 - self.colour_share) * anchor + self.colour_share * colour, dim=-1)
        return anchor, F.normalize(pooled @ self.projection, dim=-1), self.gate(pooled)

    @staticmethod
    def _top_mix(probs: torch.Tensor, vectors: torch.Tensor, k: int) -> torch.Tensor:
        """(N, K) probabilities, (K, H) vectors → (N, H): the top-k vectors weighted by their renormalised
        probabilities (ConSE)."""
        top = probs.topk(k, dim=-1)
        weights = top.values / top.values.sum(-1, keepdim=True)  # (N, k)
        return (weights[..., None] * vectors[top.indices]).sum(1)

    def gate(self, pooled: torch.Tensor) -> torch.Tensor:  # (N, C) → (N,) in [0, 1]
        if self.seen < 1:
            return pooled.new_ones(pooled.shape[0])
        cos = F.cosine_similarity(pooled, self.feature_mean[None], dim=-1)  # (N,)
        mean, square = self.fit
        std = (square - mean ** 2).clamp_min(1e-6).sqrt()
        z = (cos - mean) / std
        return torch.sigmoid(-self.GATE_SLOPE * (z + self.GATE_Z))

    def _observe(self, pooled: torch.Tensor) -> None:
        """Add a training batch's photos to the running statistics (summed over processes first, so that every
        process keeps the same)."""
        n = torch.tensor(float(pooled.shape[0]), device=pooled.device)
        total = pooled.sum(0)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            packed = torch.cat([n[None], total])
            torch.distributed.all_reduce(packed)
            n, total = packed[0], packed[1:]
        seen = self.seen + n
        self.feature_mean.mul_(self.seen / seen).add_(total / seen)
        cos = F.cosine_similarity(pooled, self.feature_mean[None], dim=-1)  # (N,)
        moments = torch.stack([cos.sum(), (cos ** 2).sum()])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(moments)
        self.fit.mul_(self.seen / seen).add_(moments / seen)
        self.seen.copy_(seen)

    def row_weights(self, gate: torch.Tensor) -> torch.Tensor:
        """(B,) gate → (B, 3) weights of anchor, detail and visual tokens: the mix where the gate is open, the
        visual tokens alone where it is shut."""
        prior = gate[:, None] * self.mix[:2]  # (B, 2)
        return torch.cat([prior, 1.0 - prior.sum(-1, keepdim=True)], dim=-1)


def texts_key() -> str:
    """What the class texts are made from, without reading them: the prompt and the glosses file."""
    from moon_cli.io import fingerprint

    return f"{CLASS_PROMPT}|{fingerprint(glosses_dir() / 'imagenet_synset_to_definition.txt')}"


def cached_class_vectors(key: str, compute) -> torch.Tensor:
    """``compute()`` once per ``key`` on this machine: kept as .npy under $MOON_CACHE (~/.cache/moon)."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "moon") / "class-vectors"
    path = root / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.npy"
    try:
        return torch.from_numpy(np.load(path, allow_pickle=False))
    except (OSError, ValueError):
        pass
    vectors = compute()
    try:
        from moon_cli.io import atomic_file

        with atomic_file(path) as tmp, open(tmp, "wb") as f:
            np.save(f, vectors.numpy(), allow_pickle=False)
    except OSError as exc:  # a read-only home costs a few seconds per model load, not the run
        warn(f"moon: warning: cannot keep the class vectors in {root} ({exc}); they are recomputed next time")
    return vectors
