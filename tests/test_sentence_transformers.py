"""A `moon train` checkpoint loads with sentence-transformers and gives `moon embed`'s vectors."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import run_moon

st = pytest.importorskip("sentence_transformers")


@pytest.fixture(scope="module")
def checkpoint(world_template, mined_pairs, tmp_path_factory):
    d = tmp_path_factory.mktemp("st")
    w = world_template
    r = run_moon("train", mined_pairs, "--catalog", w / "catalog.parquet", "-o", d / "ckpt", "--steps", 10,
                 "--batch-size", 4, "--val-every", 0, "--queue-size", 16, "-q")
    assert r.exit_code == 0, r.output
    return d / "ckpt"


def moon_embed(tmp_path, source, ckpt, *extra):
    out = tmp_path / f"{source.stem}-embeddings.parquet"
    r = run_moon("embed", source, "-m", ckpt, "-o", out, "-q", *extra)
    assert r.exit_code == 0, r.output
    return {row["id"]: np.array(row["vector"]) for row in pq.read_table(out).to_pylist() if row["status"] == "ok"}


def test_sentence_transformer_loads_a_checkpoint_and_matches_moon_embed(checkpoint, world_template, tmp_path):
    from PIL import Image

    assert json.loads((checkpoint / "modules.json").read_text())[0]["type"] == "moon_cli.model.st.MoonModule"
    model = st.SentenceTransformer(str(checkpoint), trust_remote_code=True, device="cpu")
    assert model.get_embedding_dimension() == 256

    # products: catalogue rows as sentence-transformers inputs (photo paths made absolute) vs `moon embed`
    catalog = world_template / "catalog.parquet"
    rows = pq.read_table(catalog).slice(0, 3).to_pylist()
    for row in rows:
        row["image_paths"] = [str(world_template / p) for p in row["image_paths"]]
    expected = moon_embed(tmp_path, catalog, checkpoint)
    got = model.encode(rows)
    assert np.abs(got - np.stack([expected[r["item_id"]] for r in rows])).max() <= 1e-5

    # queries: a text, a photo path, a PIL photo, and both together, vs `moon embed --kind query`
    bench = world_template / "bench"
    queries = pq.read_table(bench / "multimodal_queries.parquet").slice(0, 1).to_pylist()
    photo = str(bench / queries[0]["query_image"])
    q_table = tmp_path / "queries.parquet"
    import pyarrow as pa

    pq.write_table(pa.table({"query_id": ["t", "i", "m"], "query_text": ["red mug", None, queries[0]["query_text"]],
                             "query_image": [None, photo, photo]}), q_table)
    expected = moon_embed(tmp_path, q_table, checkpoint, "--kind", "query")
    got = model.encode(["red mug", photo, Image.open(photo), {"text": queries[0]["query_text"], "image": photo}])
    want = np.stack([expected["t"], expected["i"], expected["i"], expected["m"]])
    assert np.abs(got - want).max() <= 1e-5
    assert np.abs(got[0] - got[1]).max() > 1e-3  # different inputs, different vectors


def test_the_module_loads_without_trusting_code_and_junk_inputs_are_refused(checkpoint):
    from moon_cli.model.st import MoonModule

    with pytest.raises(ValueError, match="trust_remote_code"):  # sentence-transformers 6's own rule
        st.SentenceTransformer(str(checkpoint), device="cpu")
    model = st.SentenceTransformer(modules=[MoonModule.load(str(checkpoint))], device="cpu")
    assert model.encode(["red mug"]).shape == (1, 256)
    with pytest.raises(ValueError, match="MOON encodes text, images and products"):
        model.encode([{"colour": "red"}])


def test_the_model_card_names_base_recipe_data_and_the_bench_figures(checkpoint, world_template, tmp_path):
    card = (checkpoint / "README.md").read_text()
    assert "backbone: `tiny`" in card and "10 steps of batch 4" in card and "fingerprint" in card
    assert "Apache-2.0" in card and "Intended use" in card
    r = run_moon("evaluate", world_template / "bench", "-m", checkpoint, "-o", tmp_path / "eval", "-q")
    assert r.exit_code == 0, r.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    recall = metrics["retrieval"]["text_to_product"]["recall@10"]
    card = (checkpoint / "README.md").read_text()
    assert "## Evaluation" in card and f"| text_to_product | {recall:.4f} |" in card
    meta = json.loads((checkpoint / "meta.json").read_text())
    assert meta["evaluations"][str(world_template / "bench")]["text_to_product"] == recall
