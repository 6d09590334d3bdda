import json

import pytest
import torch
from PIL import Image

from moon_cli.contracts import BOXES, CATALOG
from moon_cli.errors import MoonError
from moon_cli.io import read_table
from moon_cli.model import GuidedMoE, InputError, MoonConfig, MoonModel, TokenType, load_balancing_loss
from moon_cli.model.moe import RoutingContext


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MoonModel.from_preset("tiny", MoonConfig()).eval()  # the general defaults: up to 4 photos a product


@pytest.fixture(scope="module")
def products(world_template):
    rows = read_table(world_template / "catalog.parquet", CATALOG).table.to_pylist()[:8]
    boxes = {}
    for r in read_table(world_template / "boxes.parquet", BOXES).table.to_pylist():
        boxes[r["image_path"]] = r["bbox"]
    return [dict(item_id=r["item_id"], title=r["title"], category_path=r["category_path"], attributes=r["attributes"],
                 images=r["image_paths"], bboxes=[boxes[p] for p in r["image_paths"]])
            for r in rows]


def test_embeddings_have_the_right_shape_and_unit_norm(model, products):
    emb = model.encode_products(products, batch_size=4)
    assert emb.shape == (len(products), model.dim) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(len(products)))
    assert torch.isfinite(emb).all()
    # different products, different embeddings
    assert (emb[0] - emb[1]).abs().max() > 1e-4


def test_padding_invariance(model, products):
    assert any(t == TokenType.CROP for t in model.processor.encode_product(products[0]).types)
    alone = model.encode_products(products[:1], batch_size=1)
    lengths = [len(model.processor.encode_product(p).ids) for p in products]
    assert len(set(lengths)) > 1, "the batch must actually need padding"
    batched = model.encode_products(products, batch_size=8)
    torch.testing.assert_close(alone[0], batched[0], atol=1e-5, rtol=0)


def test_random_init_preset_keeps_which_words_a_text_holds(model):
    """The preset's unit-scale token embeddings: before any training, a query is nearer the product text
    that shares its words (untrained retrieval starts above chance instead of from a collapsed space)."""
    titles = ["red ceramic mug", "blue cotton tee", "green yoga mat", "black leather wallet", "white desk lamp"]
    products = [dict(item_id=str(i), title=t, category_path=[], attributes=[], images=[]) for i, t in enumerate(titles)]
    queries = [{"text": t.split()[1] + " " + t.split()[2]} for t in titles]
    scores = model.encode_queries(queries) @ model.encode_products(products).T  # (5, 5)
    assert (scores.argmax(1) == torch.arange(len(titles))).all()


def test_many_to_one_products_and_every_query_modality(model, world_template):
    img = sorted((world_template / "images").glob("*.jpg"))
    three = dict(item_id="a", title="red mug", category_path=["Home", "Kitchen", "Mug"],
                 attributes=[{"name": "color", "value": "red"}], images=img[:3], crops=img[3:6])
    one = dict(item_id="b", title="blue tee", category_path=["Apparel"], attributes=[], images=[img[0]])
    seq3, seq1 = (model.processor.encode_product(p) for p in (three, one))
    assert seq3.types.count(TokenType.CROP) > 0 and seq1.types.count(TokenType.CROP) == 0
    assert len(seq3.grids) == 6 and len(seq1.grids) == 1
    assert model.encode_products([three, one]).shape == (2, model.dim)
    queries = [{"image": img[0]}, {"text": "red mug"}, {"text": "in red", "image": Image.open(img[1])}]
    q = model.encode_queries(queries)
    assert q.shape == (3, model.dim)
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(3))


def test_token_types_follow_the_text_spans(model):
    p = dict(item_id="x", title="blue tee", category_path=["Apparel", "Tops", "T-shirt"],
             attributes=[{"name": "color", "value": "blue"}], images=[])
    seq = model.processor.encode_product(p)
    tok = model.processor.tokenizer
    text_of = lambda kind: tok.decode([i for i, t in zip(seq.ids, seq.types) if t == kind]).strip()  # noqa: E731
    assert text_of(TokenType.TITLE) == "blue tee"
    assert text_of(TokenType.CATEGORY) == "Apparel > Tops > T-shirt"
    assert text_of(TokenType.ATTRIBUTE) == "color: blue"


def test_designated_experts_receive_exactly_their_tokens(model, products):
    seen = {"category": 0, "attribute": 0}
    hooks = []
    for moe in model.moe_layers:
        for name, expert in (("category", moe.category_expert), ("attribute", moe.attribute_expert)):
            hooks.append(expert.register_forward_hook(
                lambda mod, inp, out, name=name: seen.__setitem__(name, seen[name] + inp[0].shape[0])))
    try:
        batch = model.processor.collate([model.processor.encode_product(p) for p in products[:3]])
        with torch.no_grad():
            model(batch)
    finally:
        for h in hooks:
            h.remove()
    n_layers = len(model.moe_layers)
    assert n_layers >= 1
    assert seen["category"] == n_layers * int((batch.token_types == TokenType.CATEGORY).sum())
    assert seen["attribute"] == n_layers * int((batch.token_types == TokenType.ATTRIBUTE).sum())
    assert seen["category"] > 0 and seen["attribute"] > 0


def _ffn(hidden=16):
    from transformers.models.qwen2.modeling_qwen2 import Qwen2MLP
    from transformers import Qwen2Config

    return Qwen2MLP(Qwen2Config(hidden_size=hidden, intermediate_size=32))


def test_single_expert_moe_without_designated_experts_equals_the_dense_ffn():
    torch.manual_seed(0)
    ffn = _ffn()
    x = torch.randn(2, 5, 16)
    dense = ffn(x)
    moe = GuidedMoE(ffn, 16, MoonConfig().moe.__class__(num_experts=1, top_k=1, designated=False), RoutingContext())
    torch.testing.assert_close(moe(x), dense, atol=1e-6, rtol=0)


def test_moe_starts_as_the_ffn_and_designated_experts_change_only_their_tokens():
    torch.manual_seed(0)
    ffn = _ffn()
    ctx = RoutingContext()
    moe = GuidedMoE(ffn, 16, MoonConfig().moe.__class__(num_experts=4, top_k=2, designated=True), ctx)
    x = torch.randn(1, 6, 16)
    types = torch.tensor([[TokenType.TITLE, TokenType.CATEGORY, TokenType.CATEGORY, TokenType.ATTRIBUTE,
                           TokenType.OTHER, TokenType.TITLE]])
    ctx.begin(types, torch.ones(1, 6, dtype=torch.bool))
    torch.testing.assert_close(moe(x), ffn(x), atol=1e-5, rtol=0)
    before = moe(x)
    with torch.no_grad():
        moe.category_expert.down_proj.weight.add_(1.0)
    after = moe(x)
    changed = (after - before).abs().amax(-1)[0] > 1e-6
    assert changed.tolist() == [False, True, True, False, False, False]
    # routed tokens only (not the 3 designated ones) are counted for balancing
    assert ctx.router_logits[-1].shape[0] == 3


def test_router_receives_gradient_even_with_top1():
    torch.manual_seed(0)
    moe = GuidedMoE(_ffn(), 16, MoonConfig().moe.__class__(num_experts=4, top_k=1, designated=False), RoutingContext())
    moe(torch.randn(2, 5, 16)).sum().backward()
    assert moe.router.weight.grad is not None and moe.router.weight.grad.abs().sum() > 0


def test_load_balancing_loss_is_one_when_balanced_and_larger_when_collapsed():
    balanced_logits = torch.eye(4).repeat(2, 1) * 5  # each expert chosen by 2 of 8 tokens
    assert load_balancing_loss(balanced_logits, 1).item() == pytest.approx(1.0, abs=1e-6)
    collapsed = torch.zeros(8, 4)
    collapsed[:, 0] = 5
    assert load_balancing_loss(collapsed, 1).item() > 3.0
    assert load_balancing_loss(collapsed[:0], 1).item() == 0.0


def test_save_and_load_give_identical_embeddings(model, products, tmp_path):
    before = model.encode_products(products[:4])
    model.save_pretrained(tmp_path / "ckpt", meta={"step": 3})
    files = {p.name for p in (tmp_path / "ckpt").iterdir()}
    assert {"config.json", "model.safetensors", "meta.json", "tokenizer.json", "preprocessor_config.json"} <= files
    assert json.loads((tmp_path / "ckpt" / "meta.json").read_text()) == {"step": 3}
    loaded = MoonModel.from_pretrained(tmp_path / "ckpt").eval()
    after = loaded.encode_products(products[:4])
    assert (after - before).abs().max().item() == 0.0


def test_lora_targets_the_language_model_and_merges_to_the_same_embeddings(products):
    config = MoonConfig()
    config.lora.enabled = True
    model = MoonModel.from_preset("tiny", config).eval()
    names = [n for n, _ in model.named_parameters()]
    assert any("lora_A" in n and "language_model" in n for n in names)
    assert not any("lora_" in n and ".visual." in n for n in names)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all("lora_" in n or ".router." in n for n in trainable) and any(".router." in n for n in trainable)
    with torch.no_grad():  # make the adapters do something
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.05)
    before = model.encode_products(products[:4])
    model.merge_lora()
    assert not any("lora_" in n for n, _ in model.named_parameters())
    after = model.encode_products(products[:4])
    assert (after - before).abs().max().item() < 1e-5
    assert (before - MoonModel.from_preset("tiny").eval().encode_products(products[:4])).abs().max() > 1e-4


def test_bad_inputs_name_the_product_and_field(model, tmp_path, monkeypatch):
    good = dict(item_id="p9", title="mug", category_path=["Home"], attributes=[], images=[])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(InputError, match=r"product p9: images\[0\] .*broken.jpg"):
        model.encode_products([dict(good, images=[broken])])
    with pytest.raises(InputError, match=r"product p9: images\[0\] .*does not exist"):
        model.encode_products([dict(good, images=[tmp_path / "missing.jpg"])])
    with pytest.raises(InputError, match=r"product p9: has neither a title nor a photo"):
        model.encode_products([dict(good, title="  ")])
    big = tmp_path / "bomb.png"
    Image.new("RGB", (300, 300)).save(big)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300 * 300 // 3)
    with pytest.raises(InputError, match=r"product p9: images\[0\] .*decompression bomb"):
        model.encode_products([dict(good, images=[big])])
    with pytest.raises(InputError, match="needs 'text' or 'image'"):
        model.encode_queries([{"text": ""}])


def test_unknown_preset_and_foreign_backbones_list_what_is_supported(tmp_path):
    with pytest.raises(MoonError, match="unknown preset 'huge'.*tiny"):
        MoonModel.from_preset("huge")
    from transformers import BertConfig

    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=64).save_pretrained(tmp_path / "bert")
    with pytest.raises(MoonError, match="'bert' model; supported: Qwen2-VL / Qwen2.5-VL"):
        MoonModel.from_pretrained(tmp_path / "bert")
    with pytest.raises(MoonError, match="does not exist"):
        MoonModel.from_pretrained(tmp_path / "nope")


def test_a_query_photo_gets_its_core_product_crop_beside_it(model, world_template):
    img = sorted((world_template / "images").glob("*.jpg"))
    plain = model.processor.encode_query({"image": img[0]})
    cropped = model.processor.encode_query({"image": img[0], "crop": img[1]})
    assert plain.types.count(TokenType.CROP) == 0 and cropped.types.count(TokenType.CROP) > 0
    assert len(cropped.grids) == 2
    no_crops = MoonModel.from_preset("tiny", MoonConfig().updated({"input": {"use_crops": False}}))
    assert no_crops.processor.encode_query({"image": img[0], "crop": img[1]}).types.count(TokenType.CROP) == 0


@pytest.fixture(scope="module")
def dual():
    config = MoonConfig().updated({"backbone": {"arch": "dual"}, "moe": {"enabled": False},
                                   "input": {"use_crops": False, "max_images": 1}})
    return MoonModel.from_preset("tiny", config, seed=1).eval()


def test_dual_encoder_towers_never_see_each_other(dual, world_template):
    img = sorted((world_template / "images").glob("*.jpg"))
    both, text, image = dual.encode_queries([{"text": "red mug", "image": img[0]}, {"text": "red mug"},
                                             {"image": img[0]}])
    torch.testing.assert_close(both, torch.nn.functional.normalize(text + image, dim=0), atol=1e-5, rtol=1e-4)
    # MOON reads the two together: its multimodal embedding is not the sum of the parts
    m_both, m_text, m_image = MoonModel.from_preset("tiny", seed=1).encode_queries(
        [{"text": "red mug", "image": img[0]}, {"text": "red mug"}, {"image": img[0]}])
    assert not torch.allclose(m_both, torch.nn.functional.normalize(m_text + m_image, dim=0), atol=1e-3)


def test_dual_encoder_trains_and_round_trips(dual, products, tmp_path):
    out = dual.train()(dual.processor.collate([dual.processor.encode_product(p) for p in products[:3]]))
    out.embeddings.sum().backward()
    grads = [p.grad for p in dual.parameters() if p.requires_grad and p.grad is not None]
    assert grads and out.balance_loss.item() == 0.0
    dual.zero_grad()
    dual.save_pretrained(tmp_path / "dual")
    again = MoonModel.from_pretrained(tmp_path / "dual")
    assert again.config.backbone.arch == "dual"
    torch.testing.assert_close(again.encode_products(products[:3]), dual.encode_products(products[:3]))


def test_an_unknown_architecture_is_refused():
    with pytest.raises(MoonError, match="arch 'clip'"):
        MoonModel.from_preset("tiny", MoonConfig().updated({"backbone": {"arch": "clip"}}))


def test_16_bit_and_float_greyscale_photos_keep_their_grey_levels(tmp_path):
    """PIL's convert('RGB') clips 16-bit grey to white; a 16-bit mid-grey photo must stay mid-grey."""
    import numpy as np

    from moon_cli.model.images import load_image

    grey16 = Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16))  # mode I;16, half of 65535
    grey16.save(tmp_path / "g16.png")
    got = np.asarray(load_image(tmp_path / "g16.png", "product p", "images[0]"))
    assert got.shape == (8, 8, 3) and abs(int(got.mean()) - 128) <= 1
    ramp = Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8), "F")
    got = np.asarray(load_image(ramp, "product p", "images[0]"))
    assert got.min() == 0 and got.max() == 255


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparent_areas_of_a_cut_out_photo_become_white(tmp_path, mode):
    """A product cut-out: a red square on transparent pixels that hold black; the model must see white there."""
    import numpy as np

    from moon_cli.model.images import load_image

    rgba = np.zeros((8, 8, 4), dtype=np.uint8)  # transparent black
    rgba[2:6, 2:6] = (200, 30, 30, 255)  # the opaque product
    img = Image.fromarray(rgba, "RGBA")
    if mode == "LA":
        img = img.convert("LA")
    if mode == "P":
        img = img.convert("RGB").quantize(4)
        img.info["transparency"] = img.getpixel((0, 0))  # the colour key
    img.save(tmp_path / "cut.png")
    got = np.asarray(load_image(tmp_path / "cut.png", "product p", "images[0]"))
    assert got.shape == (8, 8, 3) and (got[0, 0] == 255).all() and (got[7, 7] == 255).all()
    assert got[4, 4].max() < 220  # the product itself is kept


def test_a_detector_trains_on_cut_out_photos_composited_on_white(tmp_path):
    import numpy as np

    from moon_cli.detect.dataset import write_yolo_dataset

    rows = []
    for n in range(12):
        rgba = np.zeros((32, 32, 4), dtype=np.uint8)
        rgba[8:24, 8:24] = (20, 200, 20, 255)
        Image.fromarray(rgba, "RGBA").save(tmp_path / f"{n}.png")
        rows.append({"image_path": str(tmp_path / f"{n}.png"), "bbox": [8, 8, 24, 24]})
    write_yolo_dataset(rows, tmp_path / "ds", val_fraction=0.5)
    placed = sorted((tmp_path / "ds" / "images").rglob("*.png"))
    assert len(placed) == 12 and not any(p.is_symlink() for p in placed)
    assert all(Image.open(p).mode == "RGB" and Image.open(p).getpixel((0, 0)) == (255, 255, 255) for p in placed)


@pytest.mark.parametrize("damage",
                         ["truncated weights", "weights of another shape", "invalid config", "invalid backbone config"])
def test_a_damaged_checkpoint_is_a_one_line_error_naming_the_file(model, tmp_path, damage):
    from conftest import run_moon

    ckpt = tmp_path / "ckpt"
    model.save_pretrained(ckpt)
    if damage == "truncated weights":
        data = (ckpt / "model.safetensors").read_bytes()
        (ckpt / "model.safetensors").write_bytes(data[: len(data) // 2])
        named = "model.safetensors"
    elif damage == "weights of another shape":
        cfg = json.loads((ckpt / "backbone_config.json").read_text())
        cfg["text_config"]["intermediate_size"] += 8
        (ckpt / "backbone_config.json").write_text(json.dumps(cfg))
        named = "model.safetensors"
    elif damage == "invalid config":
        (ckpt / "config.json").write_text('{"backbone": {"name": "tiny"')
        named = "config.json: cannot read the model config"
    else:
        (ckpt / "backbone_config.json").write_text("{not json")
        named = "backbone_config.json"
    r = run_moon("embed", tmp_path, "-m", ckpt, "-o", tmp_path / "e.parquet", "-q")
    assert r.exit_code == 1 and r.output.startswith("Error: ") and named in r.output, r.output
    assert "internal error" not in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "e.parquet").exists()


def test_resolve_decides_what_a_model_name_means_once(tmp_path, model):
    from moon_cli.model.resolve import model_id, resolve

    assert resolve("minilm").kind == "baseline" and resolve("tiny").kind == "preset"
    model.save_pretrained(tmp_path / "ckpt")
    ref = resolve(tmp_path / "ckpt")
    assert ref.kind == "checkpoint" and ref.preset == "tiny" and model_id(ref).startswith("checkpoint:")
    assert resolve("Qwen/Qwen2.5-VL-3B-Instruct").kind == "hub"
    for bad in (tmp_path / "missing", "nope"):
        with pytest.raises(MoonError, match="does not exist"):
            resolve(bad)
    with pytest.raises(MoonError, match="baseline"):
        MoonModel.from_pretrained("minilm")


def test_the_model_package_has_no_import_circle():
    """Every import between moon_cli.model's modules, lazy ones too, runs one way (a circle once ran config →
    pooling → processor → config, papered over by an import inside a function)."""
    import ast
    from pathlib import Path

    import moon_cli.model

    root = Path(moon_cli.model.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in root.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("moon_cli.model"):
                parts = node.module.split(".")
                deps |= {parts[2]} if len(parts) > 2 else {a.name for a in node.names}
        graph[path.stem] = {d for d in deps if (root / f"{d}.py").is_file() and d != path.stem}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(d == goal or (d not in seen and reaches(d, goal, seen | {d})) for d in graph.get(start, ()))

    assert {"config", "pooling", "processor"} <= set(graph)
    circles = sorted(m for m in graph if reaches(m, m, {m}))
    assert not circles, f"modules on an import circle: {circles}"
