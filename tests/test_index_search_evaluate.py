import json
import shutil

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from moon_cli.io import make_manifest, write_table

from conftest import moon_subprocess, run_moon


def fake_embeddings(path, n, dim, model_id, seed=0, prefix="i"):
    """Random unit vectors with a model identity, as `moon embed` writes them."""
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    table = pa.table({"id": [f"{prefix}{i}" for i in range(n)],
                      "vector": pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), dim),
                      "status": ["ok"] * n, "error": pa.nulls(n, pa.string())})
    write_table(table, path, manifest=make_manifest("embed", {"model": model_id, "model_id": model_id, "dim": dim}))
    return v


def test_index_then_search_returns_k_hits_as_json_lines(catalog_index):
    d, out = catalog_index
    assert "recall@10  1.000" in out
    r = moon_subprocess(f"moon search {d / 'idx'} -m tiny --text 'red mug' -k 5")
    assert r.returncode == 0, r.stderr
    hits = [json.loads(line) for line in r.stdout.decode().splitlines()]
    assert len(hits) == 5 and all({"id", "score", "title"} <= set(h) for h in hits)
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True) and -1 <= scores[-1] <= scores[0] <= 1


def test_ann_index_recall_is_measured_and_high(tmp_path):
    fake_embeddings(tmp_path / "e.parquet", 3000, 32, "m1")
    r = run_moon("index", tmp_path / "e.parquet", "-o", tmp_path / "idx", "--index-type", "ivf_hnsw_sq")
    assert r.exit_code == 0, r.output
    recall = float(r.output.split("recall@10")[1].split()[0])
    assert "ivf_hnsw_sq" in r.output and recall >= 0.95


def test_mixed_models_are_refused_and_append_adds_rows(tmp_path):
    fake_embeddings(tmp_path / "a.parquet", 50, 16, "model-a")
    fake_embeddings(tmp_path / "b.parquet", 50, 16, "model-b", prefix="b")
    r = run_moon("index", tmp_path / "a.parquet", tmp_path / "b.parquet", "-o", tmp_path / "idx")
    assert r.exit_code != 0 and "never mixes models" in r.output
    assert run_moon("index", tmp_path / "a.parquet", "-o", tmp_path / "idx").exit_code == 0
    r = run_moon("index", tmp_path / "b.parquet", "-o", tmp_path / "idx", "--append")
    assert r.exit_code != 0 and "never mixes models" in r.output
    fake_embeddings(tmp_path / "a2.parquet", 80, 16, "model-a", seed=1, prefix="j")
    r = run_moon("index", tmp_path / "a2.parquet", "-o", tmp_path / "idx", "--append")
    assert r.exit_code == 0 and "130 (80 added)" in r.output


def test_search_with_another_model_is_refused(catalog_index):
    d, _ = catalog_index
    info = json.loads((d / "idx" / "moon_index.json").read_text())
    info_other = dict(info, model_id="checkpoint:other")
    (d / "idx" / "moon_index.json").write_text(json.dumps(info_other))
    try:
        r = run_moon("search", d / "idx", "-m", "tiny", "--text", "x")
        assert r.exit_code != 0 and "indexed with model 'checkpoint:other'" in r.output
    finally:
        (d / "idx" / "moon_index.json").write_text(json.dumps(info))


def test_a_bench_that_names_its_tasks_is_not_missing_the_others(world, tmp_path):
    from moon_cli.eval.bench import load_bench

    bench = tmp_path / "text-only"
    bench.mkdir()
    shutil.copy(world / "bench" / "text_queries.parquet", bench / "text.parquet")
    gallery = (world / "bench" / json.loads((world / "bench" / "bench.json").read_text())["gallery"]).resolve()
    (bench / "bench.json").write_text(json.dumps({"gallery": str(gallery),
                                                  "tasks": {"text_to_product": "text.parquet"}}))
    r = run_moon("evaluate", bench, "-m", "tiny", "-o", tmp_path / "report", "--quiet", "--batch-size", 32)
    assert r.exit_code == 0, r.output
    assert "skipped" not in r.output
    assert list(load_bench(bench).tasks) == ["text_to_product"]


def test_evaluate_writes_metrics_report_and_plots(world, tmp_path):
    (world / "bench" / "attributes.parquet").unlink()  # a missing task is skipped, the rest run
    out = tmp_path / "report"
    r = run_moon("evaluate", world / "bench", "-m", "tiny", "-o", out, "--quiet", "--batch-size", 32)
    assert r.exit_code == 0, r.output
    assert "task 'attributes' skipped" in r.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["retrieval"]) == {"image_to_product", "text_to_product", "multimodal_to_product",
                                         "product_to_product"}
    for task in metrics["retrieval"].values():
        assert 0 <= task["recall@1"] <= task["recall@5"] <= task["recall@10"] <= 1 and task["n"] > 0
        assert task["chance@10"] == 10 / metrics["gallery"] and task["chance@1"] == 1 / metrics["gallery"]
    assert set(metrics["classification"]) == {"level1", "level2", "level3"} and metrics["attributes"] == {}
    for level in metrics["classification"].values():  # bias-free accuracy, the raw argmax and the label bias
        assert {"accuracy", "accuracy_raw", "top_label_share", "chance", "majority"} <= set(level)
        assert level["chance"] == 1 / level["classes"] and 0 < level["top_label_share"] <= 1
    assert metrics["skipped_tasks"] == ["attributes"]
    report = (out / "report.md").read_text()
    assert "| model | image→product" in report and "| level1 |" in report and "top-label share" in report
    assert f"| chance | {10 / metrics['gallery']:.3f} |" in report  # chance beside every figure
    for png in ("recall_at_k.png", "accuracy.png"):
        with Image.open(out / png) as im:
            assert im.format == "PNG" and im.width > 100
    # side by side with deltas against the first row
    r = run_moon("evaluate", world / "bench", "-m", "tiny", "-o", tmp_path / "again", "--label", "again",
                 "--compare", out, "--quiet", "--batch-size", 32)
    assert r.exit_code == 0
    assert "(+0.000)" in r.output  # the same model: zero deltas


def test_a_runs_colour_is_the_same_in_every_panel_and_the_legend_names_every_run():
    from moon_cli.eval.colours import colours
    from moon_cli.eval.report import recall_figure

    curve = [0.1 * k for k in range(1, 11)]

    def run(label, tasks):
        return {"label": label, "retrieval": {t: {"curve": curve} for t in tasks}}

    # the first run has no image task (a text-only baseline): the default cycle would shift every colour there
    runs = [run("minilm", ["text_to_product"]), run("moon", ["image_to_product", "text_to_product"]),
            run("efficientnet", ["image_to_product"])]
    fig = recall_figure(runs)
    seen: dict[str, set] = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            if len(line.get_xdata()):
                seen.setdefault(line.get_label(), set()).add(line.get_color() if isinstance(line.get_color(), str)
                                                              else tuple(line.get_color()))
    assert set(seen) == {"minilm", "moon", "efficientnet"} and all(len(c) == 1 for c in seen.values())
    assert len({next(iter(c)) for c in seen.values()}) == 3  # three runs, three colours
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["minilm", "moon", "efficientnet"]
    many = colours(f"run {i}" for i in range(25))
    assert len(set(many.values())) == 25  # beyond matplotlib's ten-colour cycle, still one colour per run


def _embeddings_table(path, ids, vectors, model_id="m1"):
    dim = len(next(v for v in vectors if v is not None))
    table = pa.table({"id": ids, "vector": pa.array(vectors, pa.list_(pa.float32())),
                      "status": ["ok"] * len(ids), "error": pa.nulls(len(ids), pa.string())})
    write_table(table, path, manifest=make_manifest("embed", {"model": model_id, "model_id": model_id, "dim": dim}))


def _indexed_ids(index_dir):
    from moon_cli.index.lance import open_table

    return open_table(index_dir).to_arrow().column("id").to_pylist()


def test_duplicates_and_bad_vectors_are_left_out_and_counted(tmp_path):
    fake_embeddings(tmp_path / "a.parquet", 20, 8, "m1")
    r = run_moon("index", tmp_path / "a.parquet", tmp_path / "a.parquet", "-o", tmp_path / "idx")
    assert r.exit_code == 0, r.output
    assert sorted(_indexed_ids(tmp_path / "idx")) == sorted(f"i{i}" for i in range(20))
    assert "20 duplicate id" in r.output
    good = [1.0] + [0.0] * 7
    _embeddings_table(tmp_path / "bad.parquet", ["ok1", "nan", "inf", "null", "ok2"],
                      [good, [float("nan")] * 8, [float("inf")] + [0.0] * 7, None, good[::-1]])
    r = run_moon("index", tmp_path / "bad.parquet", "-o", tmp_path / "idx2")
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    assert sorted(_indexed_ids(tmp_path / "idx2")) == ["ok1", "ok2"]
    assert "2 NaN / Inf vector" in r.output and "1 null vector" in r.output and "first bad vector: id nan" in r.output
    _embeddings_table(tmp_path / "allbad.parquet", ["nan"], [[float("nan")] * 8])
    r = run_moon("index", tmp_path / "allbad.parquet", "-o", tmp_path / "idx3")
    assert r.exit_code == 1 and "no ok rows" in r.output and not (tmp_path / "idx3").exists()


def test_a_wrong_width_vector_names_the_file_and_row(tmp_path):
    _embeddings_table(tmp_path / "w.parquet", ["a", "b"], [[1.0, 0.0, 0.0, 0.0], [1.0, 0.0]])
    r = run_moon("index", tmp_path / "w.parquet", "-o", tmp_path / "idx")
    assert r.exit_code == 1 and "w.parquet" in r.output and "id b" in r.output and "2-wide" in r.output
    assert "internal error" not in r.output and not (tmp_path / "idx").exists()


def test_a_rebuild_that_fails_half_way_leaves_the_old_index_correctly_labelled(tmp_path, monkeypatch):
    from moon_cli.index import lance
    from moon_cli.index.lance import read_info

    fake_embeddings(tmp_path / "old.parquet", 30, 8, "old-model", prefix="old")
    fake_embeddings(tmp_path / "new.parquet", 30, 8, "new-model", prefix="new")
    assert run_moon("index", tmp_path / "old.parquet", "-o", tmp_path / "idx").exit_code == 0

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the table is written, the label not yet: where a kill hurt before

    monkeypatch.setattr(lance, "tune", killed)
    r = run_moon("index", tmp_path / "new.parquet", "-o", tmp_path / "idx", "--overwrite")
    assert r.exit_code != 0
    assert read_info(tmp_path / "idx")["model_id"] == "old-model"
    assert all(i.startswith("old") for i in _indexed_ids(tmp_path / "idx"))
    monkeypatch.undo()
    assert run_moon("index", tmp_path / "new.parquet", "-o", tmp_path / "idx", "--overwrite").exit_code == 0
    assert read_info(tmp_path / "idx")["model_id"] == "new-model"
    assert all(i.startswith("new") for i in _indexed_ids(tmp_path / "idx"))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary litter left


def test_evaluate_refuses_an_existing_output_before_any_work(world, tmp_path, monkeypatch):
    from moon_cli.eval import evaluate as ev

    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "keep.txt").write_text("mine")
    monkeypatch.setattr(ev, "evaluate", lambda *a, **k: pytest.fail("evaluated before checking the output"))
    r = run_moon("evaluate", world / "bench", "-m", "tiny", "-o", tmp_path / "report", "--quiet")
    assert r.exit_code == 1 and "--overwrite" in r.output
    assert (tmp_path / "report" / "keep.txt").read_text() == "mine"


def test_label_scoring_centres_away_a_shared_direction():
    """One label nearest to every product (a shared offset) fools the raw argmax, not the centred score."""
    import torch

    from moon_cli.eval.evaluate import _classify

    class Labels:  # an encoder stub for label texts only: 3 orthogonal labels plus a common direction
        dim = 4

        def encode(self, items, kind):
            from types import SimpleNamespace

            # label "a" leans far into the direction every product shares; "b" and "c" barely
            base = {"a": [1, 0, 0, 3.0], "b": [0, 1, 0, 0.5], "c": [0, 0, 1, 0.5]}
            v = torch.tensor([base[it["text"]] for it in items], dtype=torch.float32)
            return SimpleNamespace(ok=list(range(len(items))), vectors=torch.nn.functional.normalize(v, dim=-1),
                                   errors={})

    truth = ["a", "b", "c"] * 4
    onehot = {"a": [1.0, 0, 0], "b": [0, 1.0, 0], "c": [0, 0, 1.0]}
    products = torch.nn.functional.normalize(torch.tensor([onehot[t] + [4.0] for t in truth]), dim=-1)
    centre = products.mean(0)
    res = _classify(products, np.ones(len(truth), bool), ["a", "b", "c"], truth, Labels(), 8, centre)
    assert res["accuracy"] == 1.0 and res["accuracy_raw"] < 0.5 and res["chance"] == 1 / 3


def test_damaged_indexes_and_unwritable_outputs_are_one_line_errors(tmp_path):
    import shutil

    fake_embeddings(tmp_path / "e.parquet", 20, 8, "m1")
    assert run_moon("index", tmp_path / "e.parquet", "-o", tmp_path / "idx").exit_code == 0
    shutil.copytree(tmp_path / "idx", tmp_path / "no-table")
    for p in (tmp_path / "no-table").iterdir():
        if p.name != "moon_index.json":
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    shutil.copytree(tmp_path / "idx", tmp_path / "bad-label")
    (tmp_path / "bad-label" / "moon_index.json").write_text("{oops")
    for index_dir, named in (("no-table", "cannot be opened"), ("bad-label", "moon_index.json")):
        r = run_moon("index", tmp_path / "e.parquet", "-o", tmp_path / index_dir, "--append")
        assert r.exit_code == 1 and named in r.output and "internal error" not in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1
    r = run_moon("index", tmp_path / "e.parquet", "-o", "/proc/moon-test/idx")
    assert r.exit_code == 1 and "/proc/moon-test" in r.output and "internal error" not in r.output, r.output
