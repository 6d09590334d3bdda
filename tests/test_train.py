import json
import math
import os
import stat

import pyarrow.parquet as pq
import pytest
import torch

from moon_cli.contracts import CATALOG, NEGATIVES, PAIRS
from moon_cli.io import read_table
from moon_cli.model import MoonConfig, MoonModel
from moon_cli.train.data import BatchBuilder, MixSampler, build_posttrain_data
from moon_cli.train.dist import DistInfo
from moon_cli.train.loss import NO_ITEM, alignment_loss, false_negative_mask, info_nce, matryoshka_info_nce
from moon_cli.train.queue import EmbeddingQueue
from moon_cli.train.step import ContrastiveStep, StepOptions
from moon_cli.model.preset import preset_config

from conftest import moon_subprocess, run_moon

FAST = ["--batch-size", 4, "--val-every", 0, "--queue-size", 16]


@pytest.fixture(scope="module")
def train_inputs(world_template, tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    w = world_template
    assert run_moon("mine-pairs", w / "behavior.parquet", "--catalog", w / "catalog.parquet",
                    "-o", d / "pairs.parquet").exit_code == 0
    assert run_moon("sample-negatives", d / "pairs.parquet", "--catalog", w / "catalog.parquet",
                    "-o", d / "negatives.parquet", "--per-pair", 4).exit_code == 0
    return {"pairs": d / "pairs.parquet", "catalog": w / "catalog.parquet", "negatives": d / "negatives.parquet"}


def train_args(inp, out, *extra):
    return ["train", inp["pairs"], "--catalog", inp["catalog"], "-o", out, *FAST, *extra]


def log_of(out):
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------------------------------- loss pieces
def test_false_negatives_are_masked_but_the_target_is_not():
    cand = torch.tensor([5, 7, 5, NO_ITEM, 9])  # item 5 twice (two queries bought it), one padding slot
    pos = torch.tensor([[5, 9], [7, NO_ITEM]])  # query 0 led to items 5 and 9
    mask = false_negative_mask(cand, pos, torch.tensor([0, 1]))
    assert mask.tolist() == [[False, False, True, True, True], [False, False, False, True, False]]


def test_info_nce_matches_a_hand_computation_and_matryoshka_averages_prefixes():
    g = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(3, 8, generator=g), dim=-1)
    c = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=-1)
    t, mask, scale = torch.tensor([0, 1, 2]), torch.zeros(3, 5, dtype=torch.bool), torch.tensor(10.0)
    mask[0, 4] = True
    logits = 10.0 * q @ c.T
    logits[0, 4] = -float("inf")
    expected = -(logits.log_softmax(-1)[torch.arange(3), t]).mean()
    torch.testing.assert_close(info_nce(q, c, t, mask, scale), expected)
    prefix = info_nce(torch.nn.functional.normalize(q[:, :4], dim=-1), torch.nn.functional.normalize(c[:, :4], dim=-1),
                      t, mask, scale)
    torch.testing.assert_close(matryoshka_info_nce(q, c, t, mask, scale, [4]), (expected + prefix) / 2)


def test_alignment_loss_pairs_each_products_photo_with_its_own_text_and_skips_one_modality_rows():
    g = torch.Generator().manual_seed(1)
    v = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=-1)
    t = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=-1)
    both = torch.tensor([True, False, True, True])  # product 1 has no photo: it takes no part
    logits = 20.0 * v[both] @ t[both].T  # (3, 3)
    expected = 0.5 * (-(logits.log_softmax(1).diag()).mean() - (logits.log_softmax(0).diag()).mean())
    torch.testing.assert_close(alignment_loss(v, t, both, torch.tensor(20.0)), expected)
    assert alignment_loss(v, t, torch.tensor([True, False, False, False]), torch.tensor(20.0)).item() == 0.0
    # aligned pairs score lower than shuffled ones
    assert alignment_loss(v, v, both, torch.tensor(20.0)) < alignment_loss(v, v.roll(1, 0), both, torch.tensor(20.0))


def test_the_alignment_term_trains_through_the_cli_and_is_refused_where_it_cannot_apply(train_inputs, tmp_path):
    r = run_moon(*train_args(train_inputs, tmp_path / "a", "--steps", 2, "--align-weight", 0.5))
    assert r.exit_code == 0, r.output
    rows = log_of(tmp_path / "a")
    assert all(row["align"] > 0 for row in rows)
    assert all(abs(row["loss"] - row["contrastive"] - 0.5 * row["align"] - 0.01 * row["balance"]) < 1e-4
               for row in rows)
    for extra in (["--arch", "dual"], ["--grad-cache"]):
        r = run_moon(*train_args(train_inputs, tmp_path / "b", "--steps", 1, "--align-weight", 0.5, *extra))
        assert r.exit_code == 1 and "--align-weight" in r.output and not (tmp_path / "b").exists()


def test_queue_is_fifo_and_drops_padding():
    queue = EmbeddingQueue(3, 2)
    queue.push(torch.ones(2, 2), torch.tensor([1, NO_ITEM]))
    assert len(queue) == 1
    queue.push(torch.arange(6.0).view(3, 2), torch.tensor([2, 3, 4]))
    vecs, ids = queue.contents("cpu")
    assert sorted(ids.tolist()) == [2, 3, 4]  # item 1, the oldest, fell out
    restored = EmbeddingQueue(3, 2)
    restored.load_state_dict(queue.state_dict())
    assert restored.ids.tolist() == queue.ids.tolist() and restored.ptr == queue.ptr


# ---------------------------------------------------------------------------------------------- GradCache
def test_grad_cache_gives_the_same_loss_and_gradients_as_the_plain_step(train_inputs):
    pairs = read_table(train_inputs["pairs"], PAIRS).table
    catalog = read_table(train_inputs["catalog"], CATALOG).table
    negatives = read_table(train_inputs["negatives"], NEGATIVES).table
    data = build_posttrain_data(pairs, catalog, None, negatives, 0.0, 0, seed=0)
    config = MoonConfig()
    config.moe.balance_weight = 0.0  # the balancing loss is a per-forward statistic (see StepOptions)
    model = MoonModel.from_preset("tiny", config, seed=1)
    sampler = MixSampler(data.by_modality(), {"image": 1, "text": 1, "multimodal": 1}, seed=0, rank=0)
    batch = BatchBuilder(data, model.processor, sampler, batch_size=6, hard_per_query=1, seed=0, rank=0).build(0)
    assert len(set(batch.modalities)) >= 2  # queries of different shapes share the step

    def run(grad_cache: bool):
        model.zero_grad(set_to_none=True)
        scale = torch.nn.Parameter(torch.tensor(math.log(20.0)))  # log(1/τ)
        queue = EmbeddingQueue(8, model.dim)
        queue.push(torch.nn.functional.normalize(torch.randn(4, model.dim, generator=torch.Generator().manual_seed(3)),
                                                 dim=-1),
                   torch.tensor([0, 1, 2, 3]))
        opts = StepOptions(grad_cache=grad_cache, chunk_size=2, balance_weight=0.0)
        res = ContrastiveStep(model, scale, opts, DistInfo(), queue)(batch)
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return res, grads, scale.grad.clone()

    plain, g_plain, s_plain = run(False)
    cached, g_cached, s_cached = run(True)
    assert plain.pool == cached.pool == 6 + 6 + 4 - (batch.product_ids == NO_ITEM).sum().item()
    torch.testing.assert_close(cached.contrastive, plain.contrastive, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(s_cached, s_plain, atol=1e-5, rtol=1e-4)
    assert g_plain.keys() == g_cached.keys() and len(g_plain) > 10
    for name in g_plain:
        torch.testing.assert_close(g_cached[name], g_plain[name], atol=1e-6, rtol=1e-3, msg=name)


# ---------------------------------------------------------------------------------------------- the command
def test_train_writes_a_loadable_model_log_and_checkpoints(train_inputs, tmp_path):
    out = tmp_path / "ckpt"
    r = run_moon(*train_args(train_inputs, out, "--steps", 3, "--negatives", train_inputs["negatives"],
                             "--checkpoint-every", 2))
    assert r.exit_code == 0, r.output
    steps = [rec for rec in log_of(out) if "loss" in rec]
    assert [rec["step"] for rec in steps] == [1, 2, 3]
    assert all(rec["pool"] > 4 for rec in steps)  # positives + hard negatives (+ queue after step 1)
    assert steps[-1]["queue"] > 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000002", "step-000003"]
    trained = MoonModel.from_pretrained(out)
    untrained = MoonModel.from_preset("tiny", seed=0)
    q = [{"text": "red mug"}]
    assert (trained.encode_queries(q) - untrained.encode_queries(q)).abs().max() > 1e-4
    assert json.loads((out / "meta.json").read_text())["step"] == 3
    # every file follows the umask (0022 under pytest here), the weights too: safetensors writes them 0600
    modes = {p.relative_to(out).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*") if p.is_file()}
    umask = os.umask(0)
    os.umask(umask)
    assert modes["model.safetensors"] == modes["checkpoints/step-000003/model.safetensors"] == 0o666 & ~umask
    assert set(modes.values()) == {0o666 & ~umask}, modes


def test_resume_after_an_interruption_matches_an_uninterrupted_run(train_inputs, tmp_path):
    args = ["--steps", 4, "--checkpoint-every", 2, "--negatives", train_inputs["negatives"]]
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    assert run_moon(*train_args(train_inputs, straight, *args)).exit_code == 0
    assert run_moon(*train_args(train_inputs, broken, *args, "--stop-at-step", 3)).exit_code == 0
    assert not (broken / "model.safetensors").exists()  # interrupted: no final model
    # the tail after the last checkpoint (step 3) is redone on resume
    r = run_moon(*train_args(train_inputs, broken, *args, "--resume"))
    assert r.exit_code == 0, r.output
    a, b = log_of(straight), log_of(broken)
    assert [x["step"] for x in b] == [x["step"] for x in a]
    assert b[-1]["loss"] == pytest.approx(a[-1]["loss"], rel=1e-5, abs=1e-6)
    wa, wb = (MoonModel.from_pretrained(d).state_dict() for d in (straight, broken))
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_existing_run_is_refused_without_resume_or_overwrite(train_inputs, tmp_path):
    out = tmp_path / "ckpt"
    assert run_moon(*train_args(train_inputs, out, "--steps", 1)).exit_code == 0
    before = sorted(p.name for p in out.iterdir())
    r = run_moon(*train_args(train_inputs, out, "--steps", 1))
    assert r.exit_code != 0 and "--resume" in r.output and "--overwrite" in r.output
    assert sorted(p.name for p in out.iterdir()) == before
    r = run_moon(*train_args(train_inputs, out, "--steps", 2, "--resume"))
    assert r.exit_code != 0 and "steps" in r.output  # a different run is not silently continued


def test_a_model_that_cannot_load_leaves_no_output(train_inputs, tmp_path):
    broken = tmp_path / "broken-ckpt"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    (broken / "model.safetensors").write_bytes(b"")
    out = tmp_path / "ckpt"
    r = run_moon(*train_args(train_inputs, out, "--steps", 1, "-m", str(broken)))
    assert r.exit_code != 0 and "broken-ckpt" in r.output and "Traceback" not in r.output
    assert not out.exists()


def test_bad_rows_are_counted_and_skipped(train_inputs, tmp_path):
    pairs = pq.read_table(train_inputs["pairs"])
    rows = pairs.to_pylist()
    rows[0]["item_id"] = "not-in-catalogue"
    rows[0]["split"] = "train"
    broken_image = tmp_path / "broken.jpg"
    broken_image.write_bytes(b"\xff\xd8\xff not really a jpeg")
    image_rows = [i for i, r in enumerate(rows) if r["query_modality"] == "image" and r["split"] == "train"]
    for i in image_rows[:3]:
        rows[i]["query_image"] = str(broken_image)
    path = tmp_path / "pairs.parquet"
    pq.write_table(pairs.from_pylist(rows, schema=pairs.schema), path)
    inp = {**train_inputs, "pairs": path}
    r = run_moon(*train_args(inp, tmp_path / "ckpt", "--steps", 6, "--batch-size", 8, "--modality-mix", "1:0:0",
                             "--val-fraction", 0))
    assert r.exit_code == 0, r.output
    assert "item not in catalogue': 1" in r.output
    assert "image failed to load" in r.output
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()


def test_repeated_nan_losses_stop_the_run_with_a_clear_message(train_inputs, tmp_path, monkeypatch):
    import moon_cli.train.step as step

    monkeypatch.setattr(step, "matryoshka_info_nce", lambda q, c, *a: (q.sum() + c.sum()) * float("nan"))
    out = tmp_path / "ckpt"
    r = run_moon(*train_args(train_inputs, out, "--steps", 10))
    assert r.exit_code != 0
    assert "NaN/inf for 3 steps in a row" in r.output and "step 1: the loss is not finite" in r.output
    assert not (out / "model.safetensors").exists()


def test_pretrain_then_posttrain_from_its_checkpoint(train_inputs, tmp_path):
    pre = tmp_path / "pre"
    r = run_moon("train", "--objective", "pretrain", "--catalog", train_inputs["catalog"], "-o", pre,
                 "--steps", 2, *FAST)
    assert r.exit_code == 0, r.output
    assert [rec["modalities"] for rec in log_of(pre) if "loss" in rec][0] == {"image": 4}
    post = tmp_path / "post"
    r = run_moon(*train_args(train_inputs, post, "--steps", 1, "-m", pre))
    assert r.exit_code == 0, r.output
    assert json.loads((post / "run.json").read_text())["model"] == str(pre)


def test_every_variant_starts_from_one_dense_pretraining(train_inputs, world_template, tmp_path):
    """MOON Embedding's recipe: one pre-training (dense), then each variant post-trains from it — MOON gets the
    guided MoE with experts copied from the pre-trained FFNs, the dual reads it with two towers."""
    pre = tmp_path / "pre"
    r = run_moon("train", "--objective", "pretrain", "--catalog", train_inputs["catalog"], "-o", pre, "--no-moe",
                 "--steps", 2, *FAST)
    assert r.exit_code == 0, r.output
    dense = MoonModel.from_pretrained(pre).eval()
    item = [dict(item_id="a", title="red tee", category_path=["Apparel", "Tops"],
                 attributes=[{"name": "color", "value": "red"}],
                 images=sorted((world_template / "images").glob("*.jpg"))[:1])]
    before = dense.encode_products(item)
    dense.add_guided_moe(preset_config("tiny").moe)
    assert dense.moe_layers and dense.config.moe.enabled
    torch.testing.assert_close(dense.encode_products(item), before, atol=1e-5, rtol=0)  # experts = the trained FFN
    for name, extra, arch, moe in (("moon", (), "moon", True), ("dual", ("--arch", "dual"), "dual", False),
                                   ("dense", ("--no-moe",), "moon", False)):
        r = run_moon(*train_args(train_inputs, tmp_path / name, "--steps", 1, "-m", pre, *extra))
        assert r.exit_code == 0, r.output
        config = json.loads((tmp_path / name / "config.json").read_text())
        assert (config["backbone"]["arch"], config["moe"]["enabled"]) == (arch, moe), name
    r = run_moon(*train_args(train_inputs, tmp_path / "x", "--steps", 1, "-m", tmp_path / "moon", "--arch", "dual"))
    assert r.exit_code == 1 and "dense checkpoint" in r.output


def test_catalog_views_add_a_listings_other_photos_as_image_queries_for_training_only(train_inputs):
    import pyarrow as pa

    pairs = read_table(train_inputs["pairs"], PAIRS).table
    catalog = read_table(train_inputs["catalog"], CATALOG).table
    listings = catalog.to_pylist()
    second = next(row["image_paths"][1] for row in listings if len(row["image_paths"]) > 1)
    detections = pa.table({"image_path": [second], "crop_path": ["/crops/second.jpg"], "status": ["ok"]})
    data = build_posttrain_data(pairs, catalog, detections, None, 0.2, 50, seed=0)
    before, val_keys = len(data.examples), {ex.key for ex in data.val}

    added = data.add_catalog_views(1)
    assert added == sum(len(row["image_paths"]) - 1 for row in listings) > 0
    views = data.examples[before:]
    assert len(views) == added and all(ex.modality == "image" and not ex.negatives for ex in views)
    for ex in views:  # a photo of the listing other than the one the product view shows, pointing at it
        photos = listings[ex.item]["image_paths"]
        assert ex.query["image"] in photos[1:] and data.positives_of[ex.key] == [ex.item]
    assert {ex.key for ex in views}.isdisjoint(val_keys) and len(data.val) > 0
    assert next(ex for ex in views if ex.query["image"] == second).query["crop"] == "/crops/second.jpg"
    assert build_posttrain_data(pairs, catalog, None, None, 0.2, 50, seed=0).add_catalog_views(4) < added


def test_catalog_views_through_the_cli_and_refused_for_pretrain(train_inputs, tmp_path):
    r = run_moon(*train_args(train_inputs, tmp_path / "views", "--steps", 1, "--catalog-views",
                             "--modality-mix", "1:0:0"))
    assert r.exit_code == 0, r.output
    assert "catalogue views" in r.output
    assert json.loads((tmp_path / "views" / "run.json").read_text())["train"]["catalog_views"] is True
    four = tmp_path / "four_photos.json"  # synth listings have at most 4 photos: no view is left over
    four.write_text(json.dumps({"input": {"max_images": 4}}))
    r = run_moon(*train_args(train_inputs, tmp_path / "no-views", "--steps", 1, "--catalog-views", "--config", four))
    assert r.exit_code == 0, r.output
    assert "found no listing with more than 4 photo(s)" in r.output and "(0 of them catalogue views)" in r.output
    r = run_moon("train", "--objective", "pretrain", "--catalog", train_inputs["catalog"], "-o", tmp_path / "pre",
                 "--catalog-views", *FAST)
    assert r.exit_code != 0 and "--catalog-views is a post-training option" in r.output
    assert not (tmp_path / "pre").exists()


def test_torchrun_two_processes_gather_each_others_products(train_inputs, tmp_path):
    out = tmp_path / "ddp"
    cmd = (f"OMP_NUM_THREADS=1 torchrun --nproc_per_node 2 --master_port 29517 -m moon_cli.cli train "
           f"{train_inputs['pairs']} --catalog {train_inputs['catalog']} -o {out} --steps 2 --batch-size 4 "
           f"--val-every 0 --queue-size 0 --quiet")
    r = moon_subprocess(cmd, timeout=300)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    steps = [rec for rec in log_of(out) if "loss" in rec]
    assert [rec["gathered"] for rec in steps] == [4, 4]  # the other rank's 4 positives joined the pool
    assert all(rec["pool"] == 8 for rec in steps)


def test_recipe_defaults_follow_the_backbone_through_checkpoints(tmp_path):
    from moon_cli.model.config import MoonConfig
    from moon_cli.model.resolve import resolve
    from moon_cli.train.plan import recipe_for

    def recipe_defaults(name):
        return recipe_for(resolve(name))

    tiny = recipe_defaults("tiny")
    assert tiny["queue_size"] == 0 and tiny["lr"] > 2e-4  # random init: no stale queue, a faster rate
    ckpt = tmp_path / "pretrained-from-tiny"
    ckpt.mkdir()
    (ckpt / "model.safetensors").write_bytes(b"")  # what makes a directory a checkpoint (resolve.py)
    preset_config("tiny").save(ckpt / "config.json")
    assert recipe_defaults(str(ckpt)) == tiny  # continuing a tiny run keeps its recipe
    hub = MoonConfig()
    hub.backbone.name = "Qwen/Qwen2.5-VL-3B-Instruct"
    hub.save(ckpt / "config.json")
    assert recipe_defaults(str(ckpt)) == {} and recipe_defaults("Qwen/Qwen2.5-VL-3B-Instruct") == {}


def test_the_dual_encoder_baseline_trains_through_the_cli(train_inputs, tmp_path):
    r = run_moon(*train_args(train_inputs, tmp_path / "dual", "--steps", 2, "--arch", "dual"))
    assert r.exit_code == 0, r.output
    config = json.loads((tmp_path / "dual" / "config.json").read_text())
    assert config["backbone"]["arch"] == "dual" and not config["moe"]["enabled"]
    assert config["input"]["max_images"] == 1 and not config["input"]["use_crops"]
    losses = [row["loss"] for row in log_of(tmp_path / "dual")]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)


def test_resume_refuses_changed_settings_but_not_settings_added_since(tmp_path):
    from dataclasses import asdict

    from moon_cli.errors import MoonError
    from moon_cli.train.run import _check_same_run
    from moon_cli.train.config import TrainConfig
    from moon_cli.train.trainer import RUN

    record = {"train": asdict(TrainConfig()), "model": "tiny", "inputs": {"pairs": {"fingerprint": "a"}}}
    older = json.loads(json.dumps(record))
    del older["train"]["catalog_views"]  # a run.json written before the option existed
    (tmp_path / RUN).write_text(json.dumps(older))
    _check_same_run(tmp_path, record)  # the new option at its default: the same run
    for key, value in (("catalog_views", True), ("lr", 1.0)):
        changed = json.loads(json.dumps(record))
        changed["train"][key] = value
        with pytest.raises(MoonError, match=f"different settings than the run it continues \\(train.{key}: "
                                            f"{json.dumps(record['train'][key])} then, {json.dumps(value)} now\\)"):
            _check_same_run(tmp_path, changed)
    changed = json.loads(json.dumps(record))
    changed["inputs"]["pairs"]["fingerprint"] = "b"
    with pytest.raises(MoonError, match="input pairs"):
        _check_same_run(tmp_path, changed)


def test_resume_skips_a_damaged_latest_checkpoint_and_a_torn_log_line(train_inputs, tmp_path):
    """A kill can tear the log's last line; a damaged newest checkpoint is skipped for the one before it.
    Either way the resumed run ends where an uninterrupted one does."""
    args = ["--steps", 4, "--checkpoint-every", 1, "--negatives", train_inputs["negatives"]]
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    assert run_moon(*train_args(train_inputs, straight, *args)).exit_code == 0
    assert run_moon(*train_args(train_inputs, broken, *args, "--stop-at-step", 3)).exit_code == 0
    newest = broken / "checkpoints" / "step-000003"
    weights = (newest / "model.safetensors").read_bytes()
    (newest / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with open(broken / "train_log.jsonl", "a") as fh:
        fh.write('{"step": 4, "loss": 1.2')  # torn
    r = run_moon(*train_args(train_inputs, broken, *args, "--resume"))
    assert r.exit_code == 0, r.output
    assert "step-000003 is damaged" in r.output and "step 2" in r.output
    a, b = log_of(straight), log_of(broken)
    assert [x["step"] for x in b] == [x["step"] for x in a]
    assert b[-1]["loss"] == pytest.approx(a[-1]["loss"], rel=1e-5, abs=1e-6)


def test_a_run_that_failed_before_saving_does_not_block_a_plain_rerun(train_inputs, tmp_path):
    out = tmp_path / "ckpt"
    out.mkdir()
    (out / "run.json").write_text("{}")  # all a run that died at start-up leaves
    r = run_moon(*train_args(train_inputs, out, "--steps", 1))
    assert r.exit_code == 0, r.output
    assert (out / "model.safetensors").is_file() and json.loads((out / "run.json").read_text())["train"]["steps"] == 1


def test_a_second_trainer_on_the_same_output_is_refused(train_inputs, tmp_path):
    from moon_cli.io import output_lock

    with output_lock(tmp_path / "ckpt"):
        r = run_moon(*train_args(train_inputs, tmp_path / "ckpt", "--steps", 1))
    assert r.exit_code == 1 and "another moon process is writing" in r.output
    assert not (tmp_path / "ckpt").exists()


def test_the_temperature_learns_and_every_pair_trains_unless_held_out(train_inputs, tmp_path):
    """log(1/τ) with its own rate moves within a few steps (the raw 1/τ at the model's rate never did); with
    --val-every 0 nothing is held out for validation, and --holdout-split keeps a mine-pairs split out."""
    n_pairs = pq.read_metadata(train_inputs["pairs"]).num_rows
    n_test = pq.read_table(train_inputs["pairs"]).column("split").to_pylist().count("test")
    assert n_test > 0
    runs = {"learn": ["--temperature-lr", 0.3], "fixed": ["--fixed-temperature"],
            "holdout": ["--holdout-split", "test", "--fixed-temperature"]}
    meta, out = {}, {}
    for name, extra in runs.items():
        r = run_moon(*train_args(train_inputs, tmp_path / name, "--steps", 3, *extra))
        assert r.exit_code == 0, r.output
        meta[name], out[name] = json.loads((tmp_path / name / "meta.json").read_text()), r.output
    assert meta["fixed"]["temperature"] == pytest.approx(0.05)
    assert abs(meta["learn"]["temperature"] - 0.05) > 0.005
    assert f"{n_pairs} train, 0 validation" in out["fixed"]
    assert f"{n_pairs - n_test} train, 0 validation" in out["holdout"]
    assert f"'held-out split': {n_test}" in out["holdout"]
