"""The training plan (moon_cli/train/plan.py) and the preset and recipe files it reads: one place decides a run."""

import json

import pytest

from conftest import run_moon
from moon_cli.errors import MoonError
from moon_cli.model import preset
from moon_cli.model.config import MoonConfig
from moon_cli.model.resolve import ModelRef, resolve
from moon_cli.train import plan as plan_module
from moon_cli.train.config import TrainConfig
from moon_cli.train.plan import Variant, plan


# ---------------------------------------------------------------------------------------------- presets as data
def test_a_child_preset_is_its_parent_plus_its_differences():
    tiny, qwen3 = preset.load("tiny"), preset.load("tiny-qwen3")
    assert qwen3.family == "qwen3_vl" and tiny.family == "qwen2_5_vl"
    assert qwen3.text == {**tiny.text, "head_dim": 64,
                          "rope_parameters": {**tiny.text["rope_parameters"], "mrope_interleaved": True}}
    assert "window_size" in tiny.vision and "window_size" not in qwen3.vision  # unset
    assert qwen3.vision["patch_size"] == 16 and qwen3.vision["depth"] == tiny.vision["depth"]
    assert qwen3.model == tiny.model and qwen3.embedding_std == tiny.embedding_std == 1.0
    config = preset.preset_config("tiny-qwen3")
    assert config.backbone.name == "tiny-qwen3" and config.pooling.mode == "balanced"
    assert config.input.max_images == 1 and config.backbone.freeze_vision is False


@pytest.fixture
def preset_dir(tmp_path, monkeypatch):
    """A preset folder of the test's own, holding a copy of tiny."""
    (tmp_path / "tiny.toml").write_text((preset.PRESET_DIR / "tiny.toml").read_text())

    def write(name: str, text: str):
        (tmp_path / f"{name}.toml").write_text(text)
        monkeypatch.setattr(preset, "PRESETS", tuple(sorted(p.stem for p in tmp_path.glob("*.toml"))))
        preset.load.cache_clear()
        return tmp_path / f"{name}.toml"

    monkeypatch.setattr(preset, "PRESET_DIR", tmp_path)
    yield write
    preset.load.cache_clear()


@pytest.mark.parametrize("text, message", [
    ('inherits = "tiny"\nfamliy = "qwen3_vl"\n', "unknown key 'famliy'"),
    ('inherits = "tiny"\n[model.pooling]\nmood = "mean"\n', "unknown key(s) ['mood'] in 'pooling'"),
    ('inherits = "tiny"\nunset = ["vision.no_such"]\n', "unset = 'vision.no_such'"),
    ('inherits = "tinyy"\n', "inherits = 'tinyy', which is no preset"),
    ('inherits = "bad"\n', "runs in a circle"),
    ('family = "llama"\n', "family 'llama'"),
    ("inherits = tiny\n", "not a readable preset file"),
])
def test_a_malformed_preset_file_is_one_line_naming_the_file_and_key(preset_dir, text, message):
    path = preset_dir("bad", text)
    with pytest.raises(MoonError) as err:
        preset.load("bad")
    assert str(path) in err.value.message and message in err.value.message
    assert "\n" not in err.value.message


def test_a_misspelt_backbone_setting_in_a_preset_is_refused_before_a_model_is_built(preset_dir):
    from moon_cli.model.moon import MoonModel

    path = preset_dir("typo", 'inherits = "tiny"\n[text]\nhiden_size = 128\n')
    with pytest.raises(MoonError, match="text.hiden_size is not a setting of Qwen2_5_VLTextConfig") as err:
        MoonModel.from_preset("typo")
    assert str(path) in err.value.message


# ---------------------------------------------------------------------------------------------- recipes
def test_the_recipes_are_data_and_a_child_recipe_inherits(tmp_path, monkeypatch):
    assert plan_module.recipes()["tiny-qwen3"] == plan_module.recipes()["tiny"]
    bad = tmp_path / "recipes.toml"
    bad.write_text("[tiny]\nlr = 1e-3\nlearning_rate = 2\n")
    monkeypatch.setattr(plan_module, "RECIPES", bad)
    plan_module.recipes.cache_clear()
    try:
        with pytest.raises(MoonError, match=r"recipes.toml: \[tiny\] learning_rate is not a training setting"):
            plan_module.recipes()
    finally:
        plan_module.recipes.cache_clear()


# ---------------------------------------------------------------------------------------------- the plan
def test_each_value_comes_from_the_flag_then_the_recipe_then_the_default():
    p = plan(resolve("mini"), {"steps": 7})
    assert p.train.steps == 7  # the flag
    assert (p.train.lr, p.train.new_lr, p.train.align_weight, p.train.queue_size) == (5e-5, 1e-3, 0.5, 0)  # recipe
    assert p.train.temperature == TrainConfig.temperature  # the default
    assert plan(resolve("mini"), {"lr": 1e-4}).train.lr == 1e-4
    hub = plan(ModelRef("Qwen/Qwen2.5-VL-3B-Instruct", "hub"), {})
    assert hub.train.lr == TrainConfig.lr and hub.config.lora.enabled and hub.recipe == {}
    with pytest.raises(ValueError, match="not TrainConfig fields"):
        plan(resolve("tiny"), {"learning_rate": 1})


def test_the_variant_shapes_the_model_and_the_recipes_alignment_steps_aside_where_it_cannot_apply():
    dual = plan(resolve("mini"), {}, Variant(arch="dual"))
    assert dual.train.align_weight == 0.0 and dual.config.backbone.arch == "dual"
    assert not dual.config.moe.enabled and dual.config.input.max_images == 1 and not dual.config.input.use_crops
    assert plan(resolve("mini"), {"grad_cache": True}).train.align_weight == 0.0
    with pytest.raises(MoonError, match="does not combine with --arch dual"):
        plan(resolve("mini"), {"align_weight": 0.5}, Variant(arch="dual"))
    dense = plan(resolve("tiny"), {"matryoshka_dims": [64], "gradient_checkpointing": True},
                 Variant(use_moe=False, use_crops=False), {"moe": {"num_experts": 8}, "input": {"max_images": 2}})
    assert not dense.config.moe.enabled and not dense.config.input.use_crops and dense.config.input.max_images == 2
    assert dense.config.pooling.matryoshka_dims == [64] and dense.config.backbone.gradient_checkpointing


def test_a_checkpoints_plan_starts_from_its_config_and_follows_its_presets_recipe(tmp_path):
    ckpt = tmp_path / "pretrained"
    ckpt.mkdir()
    (ckpt / "model.safetensors").write_bytes(b"")
    dense = preset.preset_config("tiny").updated({"moe": {"enabled": False}, "pooling": {"mode": "mean"}})
    dense.save(ckpt / "config.json")
    p = plan(resolve(ckpt), {}, Variant(), {"moe": {"num_experts": 6}})
    assert p.add_moe and p.config.moe.enabled and p.config.moe.num_experts == 6  # experts added, as --config asks
    assert p.config.pooling.mode == "mean" and p.train.lr == plan_module.recipes()["tiny"]["lr"]
    assert not plan(resolve(ckpt), {}, Variant(arch="dual")).add_moe
    MoonConfig.load(ckpt / "config.json").updated({"moe": {"enabled": True}}).save(ckpt / "config.json")
    for variant, message in ((Variant(use_moe=False), "--no-moe"), (Variant(arch="dual"), "--arch dual")):
        with pytest.raises(MoonError, match=message):
            plan(resolve(ckpt), {}, variant)


def test_print_plan_shows_the_resolved_configuration_without_reading_data():
    r = run_moon("train", "--print-plan", "-m", "mini", "--steps", 9, "--arch", "dual")
    assert r.exit_code == 0, r.output
    shown = json.loads(r.output)
    assert shown["train"]["steps"] == 9 and shown["train"]["lr"] == 5e-5 and shown["train"]["align_weight"] == 0
    assert shown["model_config"]["backbone"]["arch"] == "dual" and shown["recipe"]["lr"] == 5e-5
    assert "recipe" in run_moon("train", "--help").output


def test_train_without_catalog_or_output_is_a_usage_error(tmp_path):
    r = run_moon("train", "-o", tmp_path / "m")
    assert r.exit_code == 2 and "Missing option '--catalog'" in r.output


def test_run_json_records_the_plan_and_resume_names_the_key_that_differs(world_template, mined_pairs, tmp_path):
    out = tmp_path / "model"
    args = ["train", mined_pairs, "--catalog", world_template / "catalog.parquet", "-o", out, "--batch-size", 4,
            "--val-every", 0, "--steps", 2, "--checkpoint-every", 1]
    assert run_moon(*args, "--stop-at-step", 1).exit_code == 0
    record = json.loads((out / "run.json").read_text())
    assert record["model_config"] == plan(resolve("tiny"), {}).config.to_dict() and record["recipe"]["lr"] == 1e-3
    r = run_moon(*args, "--resume", "--arch", "dual")
    assert r.exit_code != 0
    assert "(model_config.backbone.arch: \"moon\" then, \"dual\" now)" in r.output, r.output
    assert run_moon(*args, "--resume").exit_code == 0


def test_a_config_file_with_an_unknown_key_is_named_in_one_line(tmp_path):
    bad = tmp_path / "overrides.json"
    bad.write_text('{"moe": {"num_expert": 3}}')
    r = run_moon("train", "--print-plan", "-m", "tiny", "--config", bad)
    assert r.exit_code == 1 and f"{bad}: unknown key(s) ['num_expert'] in 'moe'" in r.output
