"""Checkpoints the ecosystem loads without moon: peft adapters, `moon export` to a plain Hugging Face model,
the backbone's own image processor, and the Qwen3-VL family."""

import json

import pytest
import torch

from moon_cli.errors import MoonError
from moon_cli.model import MoonModel
from moon_cli.model import backbone as bb

from conftest import run_moon

MEAN, STD = [0.1, 0.2, 0.3], [0.9, 0.8, 0.7]  # not Qwen2-VL's (CLIP's) normalisation


@pytest.fixture(scope="module")
def hub_folder(tmp_path_factory):
    """A tiny random-init Qwen2.5-VL saved as a Hugging Face model folder, used as a "hub" backbone: 16-px patches
    and its own mean / std in preprocessor_config.json."""
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessor

    from moon_cli.model.tokenizer import build_tiny_tokenizer

    d = tmp_path_factory.mktemp("hub") / "tiny-qwen2.5-vl"
    tokenizer = build_tiny_tokenizer()
    config = bb.preset_backbone_config("tiny", tokenizer)
    config.vision_config.patch_size = 16
    torch.manual_seed(0)
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(d)
    tokenizer.save_pretrained(d)
    Qwen2VLImageProcessor(patch_size=16, image_mean=MEAN, image_std=STD).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def pairs(mined_pairs):
    return mined_pairs


def train(pairs, world, out, *extra):
    r = run_moon("train", pairs, "--catalog", world / "catalog.parquet", "-o", out, "--steps", 3, "--batch-size", 4,
                 "--val-every", 0, "--lr", 1e-2, "-q", *extra)
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def lora_dense(hub_folder, pairs, world_template, tmp_path_factory):
    """A LoRA checkpoint of the hub backbone without the guided MoE."""
    return train(pairs, world_template, tmp_path_factory.mktemp("ckpt") / "dense", "-m", hub_folder, "--no-moe")


def text_batch(model):
    return model.processor.collate([model.processor.encode_query({"text": "red cotton tee"}),
                                    model.processor.encode_query({"text": "blue mug"})])


def test_the_backbones_own_preprocessor_config_is_honoured(hub_folder, world_template):
    from PIL import Image
    from transformers import AutoImageProcessor

    model = MoonModel.from_pretrained(hub_folder)
    ip = model.processor.image_processor
    assert list(ip.image_mean) == MEAN and list(ip.image_std) == STD and ip.patch_size == 16
    side = model.config.input.image_size
    theirs = AutoImageProcessor.from_pretrained(hub_folder, min_pixels=(side // 2) ** 2, max_pixels=side * side)
    photo = Image.open(sorted((world_template / "images").glob("*.jpg"))[0]).convert("RGB")
    ours = model.processor.encode_query({"image": photo}).pixel_values[0]
    torch.testing.assert_close(ours, theirs(images=[photo], return_tensors="pt")["pixel_values"])
    assert model.encode_queries([{"image": photo}]).shape == (1, model.dim)  # 16-px patches fit the vision tower


def test_a_lora_checkpoint_holds_a_peft_adapter_that_peft_loads(lora_dense, hub_folder):
    from peft import PeftModel
    from transformers import AutoModel

    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in lora_dense.iterdir()}
    assert json.loads((lora_dense / "adapter_config.json").read_text())["peft_type"] == "LORA"
    peft_model = PeftModel.from_pretrained(AutoModel.from_pretrained(hub_folder), str(lora_dense)).eval()
    moon = MoonModel.from_pretrained(lora_dense).eval()
    batch = text_batch(moon)
    with torch.no_grad():
        want = moon.backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        got = peft_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        plain = AutoModel.from_pretrained(hub_folder).eval()(input_ids=batch.input_ids,
                                                            attention_mask=batch.attention_mask).last_hidden_state
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert (plain - want).abs().max() > 1e-4  # the adapter did train


def test_moon_export_writes_a_model_transformers_loads_with_the_same_hidden_states(lora_dense, tmp_path):
    from transformers import AutoModel, AutoModelForImageTextToText, AutoProcessor

    r = run_moon("export", lora_dense, "-o", tmp_path / "hf")
    assert r.exit_code == 0, r.output
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_vl" and "README.md" in {p.name for p in (tmp_path / "hf").iterdir()}
    moon = MoonModel.from_pretrained(lora_dense).eval()
    batch = text_batch(moon)
    with torch.no_grad():
        want = moon.backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        for cls in (AutoModel, AutoModelForImageTextToText):
            model = cls.from_pretrained(tmp_path / "hf").eval()
            base = model.model if cls is AutoModelForImageTextToText else model
            got = base(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    processor = AutoProcessor.from_pretrained(tmp_path / "hf")
    assert list(processor.image_processor.image_mean) == MEAN
    assert run_moon("export", lora_dense, "-o", tmp_path / "hf").exit_code != 0  # exists: needs --overwrite


def test_export_refuses_moe_and_mini_checkpoints_with_the_route_that_works(pairs, world_template, tmp_path):
    moe = train(pairs, world_template, tmp_path / "moe")
    r = run_moon("export", moe, "-o", tmp_path / "out")
    assert r.exit_code == 1 and "guided MoE" in r.output and "sentence-transformers" in r.output
    assert not (tmp_path / "out").exists()
    r = run_moon("export", tmp_path / "nothing", "-o", tmp_path / "out")
    assert r.exit_code != 0 and not (tmp_path / "out").exists()


def test_tiny_qwen3_trains_embeds_saves_and_reloads_bit_identically(pairs, world_template, tmp_path):
    ckpt = train(pairs, world_template, tmp_path / "q3", "-m", "tiny-qwen3", "--steps", 5)
    losses = [json.loads(line)["loss"] for line in (ckpt / "train_log.jsonl").read_text().splitlines()]
    assert len(losses) == 5 and all(torch.isfinite(torch.tensor(losses)))
    config = json.loads((ckpt / "config.json").read_text())
    assert config["backbone"]["family"] == "qwen3_vl"
    model = MoonModel.from_pretrained(ckpt).eval()
    img = sorted((world_template / "images").glob("*.jpg"))
    items = [dict(item_id="a", title="red tee", category_path=["Apparel"], attributes=[], images=img[:1],
                  bboxes=[[10, 10, 90, 100]])]
    before = model.encode_products(items)
    model.save_pretrained(tmp_path / "again")
    assert torch.equal(MoonModel.from_pretrained(tmp_path / "again").eval().encode_products(items), before)
    r = run_moon("embed", world_template / "catalog.parquet", "-m", ckpt, "-o", tmp_path / "e.parquet", "-q")
    assert r.exit_code == 0, r.output


def test_damaged_sentence_transformers_or_adapter_files_name_the_file(lora_dense, tmp_path):
    import shutil

    for name, junk in (("modules.json", "{not json"), ("adapter_model.safetensors", "truncated")):
        ckpt = tmp_path / name
        shutil.copytree(lora_dense, ckpt)
        (ckpt / name).write_text(junk)
        with pytest.raises(MoonError, match=name.replace(".", r"\.")):
            MoonModel.from_pretrained(ckpt)


def test_an_unsupported_backbone_family_lists_the_supported_ones(tmp_path):
    from transformers import BertConfig

    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=64).save_pretrained(tmp_path)
    with pytest.raises(MoonError, match="Qwen2-VL / Qwen2.5-VL / Qwen3-VL"):
        MoonModel.from_pretrained(tmp_path)
