"""`moon serve`: the HTTP API on a small world, through FastAPI's in-process client and a real uvicorn."""

import io
import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from moon_cli.serve.app import create_app
from moon_cli.serve.engine import SearchEngine

from conftest import moon_subprocess

fastapi_testclient = pytest.importorskip("fastapi.testclient")


@pytest.fixture(scope="module")
def engine(catalog_index):
    d, _ = catalog_index
    return SearchEngine(d / "idx", "tiny", memory="auto")


@pytest.fixture(scope="module")
def client(engine):
    return fastapi_testclient.TestClient(create_app(engine))


@pytest.fixture(scope="module")
def photo(world_template):
    path = world_template / "bench" / pq.read_table(world_template / "bench" / "image_queries.parquet") \
        .column("query_image")[0].as_py()
    return path.read_bytes()


FIELDS = {"id", "score", "title", "category_path", "attributes", "thumbnail"}


def assert_hits(answer, k):
    hits = answer["hits"]
    assert len(hits) == k and all(FIELDS <= set(h) for h in hits)
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    return hits


def test_text_image_multimodal_and_product_searches_return_k_hits(client, photo):
    hits = assert_hits(client.post("/search", json={"text": "red striped shirt", "k": 7}).json(), 7)
    thumb = client.get(hits[0]["thumbnail"])
    assert thumb.status_code == 200 and Image.open(io.BytesIO(thumb.content)).width > 0
    image_hits = assert_hits(client.post("/search", files={"image": ("q.jpg", photo, "image/jpeg")},
                                         data={"k": "5"}).json(), 5)
    both = assert_hits(client.post("/search", files={"image": ("q.jpg", photo, "image/jpeg")},
                                   data={"k": "5", "text": "green one"}).json(), 5)
    assert [h["id"] for h in both] != [h["id"] for h in image_hits] or both[0]["score"] != image_hits[0]["score"]
    seed = hits[0]["id"]
    like = assert_hits(client.post("/search", json={"item_id": seed, "k": 6}).json(), 6)
    assert seed not in [h["id"] for h in like]
    item = client.get(f"/item/{seed}").json()
    assert item["id"] == seed and item["title"] == hits[0]["title"]


def test_where_filters_by_category_and_attribute(client):
    facets = client.get("/facets").json()
    leaf, colour = facets["categories"][0], facets["attributes"]["color"][0]
    r = client.post("/search", json={"text": "something nice", "k": 5,
                                     "where": f"array_has(category_path, '{leaf}')"}).json()
    assert r["hits"] and all(h["category_path"][-1] == leaf for h in r["hits"])
    where = f"array_has(attributes, named_struct('name', 'color', 'value', '{colour}'))"
    r = client.post("/search",
                    data={"text": "something nice", "k": "5", "where": where}).json()  # a form, as the page sends
    assert r["hits"] and all({"name": "color", "value": colour} in h["attributes"] for h in r["hits"])


def test_embed_equals_moon_embed(client, catalog_index):
    d, _ = catalog_index
    stored = pq.read_table(d / "e.parquet").slice(0, 4).to_pylist()
    products = [{k: row[k] for k in ("item_id", "title", "category_path", "attributes", "image_paths")}
                for row in stored]
    answer = client.post("/embed", json={"products": products}).json()
    got = np.array(answer["vectors"], dtype=np.float32)
    expected = np.array([row["vector"] for row in stored], dtype=np.float32)
    assert answer["errors"] == {} and np.abs(got - expected).max() <= 1e-5
    texts = client.post("/embed", json={"texts": ["red mug", "blue shoe"]}).json()["vectors"]
    assert len(texts) == 2 and abs(np.linalg.norm(texts[0]) - 1) < 1e-4 and texts[0] != texts[1]


def test_info_healthz_and_page(client, engine):
    info = client.get("/info").json()
    assert info["rows"] == engine.searcher.rows == 120 and info["dim"] == 256 and info["index_type"] == "flat"
    assert client.get("/healthz").json() == {"status": "ok"}
    page = client.get("/")
    assert page.status_code == 200 and 'id="results"' in page.text


def bomb() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buf, "PNG")  # 100 M pixels in a few kB
    return buf.getvalue()


@pytest.mark.parametrize("request_kw, status, says", [
    ({"json": {"text": "x", "k": 0}}, 400, "k must be between 1 and 1000"),
    ({"json": {"text": "x", "k": 1001}}, 400, "k must be between 1 and 1000"),
    ({"json": {"text": "x", "k": "many"}}, 400, "k must be an integer"),
    ({"json": {"text": "x", "where": "array_has(nope"}}, 400, "where 'array_has(nope'"),
    ({"json": {"text": "x", "where": "no_such_column = 1"}}, 400, "where 'no_such_column = 1'"),
    ({"json": {}}, 400, "give text, an image, both, or item_id"),
    ({"json": {"item_id": "nope"}}, 404, "no product with id 'nope'"),
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "not JSON"),
    ({"files": {"image": ("q.jpg", b"\xff\xd8 not a jpeg", "image/jpeg")}}, 400, "not a decodable image"),
    ({"files": {"image": ("q.png", bomb(), "image/png")}}, 400, "decompression bomb"),
    ({"content": b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
      "headers": {"content-type": "application/json"}},
     400, "nested too deeply"),
])
def test_bad_requests_get_a_4xx_json_error_naming_the_problem(client, request_kw, status, says):
    r = client.post("/search", **request_kw)
    assert r.status_code == status and says in r.json()["error"], r.text
    assert "query query" not in r.json()["error"]


def test_info_names_the_model_being_served(catalog_index, tmp_path):
    d, _ = catalog_index
    shutil.copytree(d / "idx", tmp_path / "idx")  # an index whose maker was called by another name (a moved path)
    record = json.loads((tmp_path / "idx" / "moon_index.json").read_text())
    (tmp_path / "idx" / "moon_index.json").write_text(json.dumps({**record, "model": "runs/old/model"}))
    info = fastapi_testclient.TestClient(create_app(SearchEngine(tmp_path / "idx", "tiny"))).get("/info").json()
    assert info["model"] == "tiny" and info["model_id"] == "preset:tiny:seed0"
    assert info["index_model"] == "runs/old/model"


def test_a_folder_index_serves_photos_and_items_whose_ids_are_paths(world_template, tmp_path):
    from conftest import run_moon

    for n, photo in enumerate(sorted((world_template / "images").glob("*.jpg"))[:6]):
        sub = tmp_path / "photos" / ("tops" if n % 2 else "home/kitchen")
        sub.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, sub / photo.name)
    assert run_moon("embed", tmp_path / "photos", "-m", "tiny", "-o", tmp_path / "e.parquet", "-q").exit_code == 0
    assert run_moon("index", tmp_path / "e.parquet", "-o", tmp_path / "idx").exit_code == 0
    folder = fastapi_testclient.TestClient(create_app(SearchEngine(tmp_path / "idx", "tiny")))
    hits = folder.post("/search", json={"text": "red", "k": 6}).json()["hits"]
    assert len(hits) == 6 and all("/" in h["id"] and h["thumbnail"] for h in hits)
    for hit in hits:
        thumb = folder.get(hit["thumbnail"])
        assert thumb.status_code == 200 and Image.open(io.BytesIO(thumb.content)).width > 0
        item = folder.get(f"/item/{hit['id']}")
        assert item.status_code == 200 and item.json()["id"] == hit["id"]
    assert folder.post("/search", json={"item_id": hits[0]["id"], "k": 3}).status_code == 200


def test_uploads_over_the_limit_get_413_and_photos_stay_under_the_catalogue(engine, tmp_path, catalog_index):
    small = fastapi_testclient.TestClient(create_app(engine, max_upload=2048))
    r = small.post("/search", files={"image": ("big.jpg", b"\xff" * 5000, "image/jpeg")})
    assert r.status_code == 413 and "limit" in r.json()["error"]
    first = engine.searcher.items(["p000000"])["p000000"]
    assert small.get("/thumb/p000000/0").status_code == 200
    assert small.get("/thumb/p000000/99").status_code == 404
    assert small.get("/thumb/..%2F..%2Fetc%2Fpasswd/0").status_code == 404
    elsewhere = fastapi_testclient.TestClient(create_app(engine, photos_root=tmp_path))  # photos outside this root
    assert elsewhere.get("/thumb/p000000/0").status_code == 404
    r = small.post("/embed", json={"products": [{"title": "x", "image_paths": ["/etc/passwd"]}]})
    assert r.status_code == 400 and "not under the catalogue's folder" in r.json()["error"]
    assert first["image_paths"]


def test_twenty_concurrent_requests_on_a_real_server_are_all_answered(engine, photo):
    import httpx
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(create_app(engine), host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        threading.Event().wait(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"

    def one(n):
        with httpx.Client(base_url=url, timeout=120) as http:
            if n % 2:
                return http.post("/search", files={"image": ("q.jpg", photo, "image/jpeg")}, data={"k": "3"})
            return http.post("/search", json={"text": f"query number {n}", "k": 3})

    try:
        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(one, range(20)))
        assert [a.status_code for a in answers] == [200] * 20
        assert all(len(a.json()["hits"]) == 3 for a in answers)
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_serve_refuses_another_models_index_and_a_missing_one(catalog_index, tmp_path):
    d, _ = catalog_index
    other = tmp_path / "other"
    shutil.copytree(d / "idx", other)
    info = json.loads((other / "moon_index.json").read_text())
    (other / "moon_index.json").write_text(json.dumps(dict(info, model_id="checkpoint:other")))
    r = moon_subprocess(f"moon serve {other} -m tiny --port 0", timeout=300)
    err = r.stderr.decode().strip()
    assert r.returncode != 0 and len(err.splitlines()) == 1 and "indexed with model 'checkpoint:other'" in err
    r = moon_subprocess(f"moon serve {tmp_path / 'missing'} -m tiny", timeout=120)
    err = r.stderr.decode().strip()
    assert r.returncode != 0 and len(err.splitlines()) == 1 and "no such index directory" in err
