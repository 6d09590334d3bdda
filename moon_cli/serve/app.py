"""The HTTP API and web page of `moon serve` (FastAPI): search by text, photo, both, or a product.

Every failure a client can cause is a JSON ``{"error": ...}`` with a 4xx status; anything else is a 500 with
a one-line message (the traceback goes to the server's log, never to the client).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

from fastapi import FastAPI, Request  # an optional extra: this module is imported by `moon serve` alone
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from moon_cli.errors import MoonError
from moon_cli.serve.engine import SearchEngine

PAGE = Path(__file__).with_name("page.html")
MAX_K = 1000


class ClientError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# where an indexed row's photos are: a catalogue's list, or the one photo of `moon embed FOLDER`
PHOTO_COLUMNS = ("image_paths", "image_path")


def photos_of(row: dict) -> list[str]:
    """A stored row's photo paths, from whichever of ``PHOTO_COLUMNS`` it carries."""
    if row.get("image_paths"):
        return [p for p in row["image_paths"] if p]
    return [row["image_path"]] if row.get("image_path") else []


def images_root(engine: SearchEngine) -> Path | None:
    """The catalogue's folder: the deepest folder holding every indexed product photo."""
    columns = [c for c in PHOTO_COLUMNS if c in engine.searcher.columns]
    if not columns:
        return None
    rows = engine.searcher.table.to_arrow().select(columns).to_pylist()
    paths = [p for row in rows for p in photos_of(row)]
    return Path(os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])) if paths else None


def create_app(engine: SearchEngine, photos_root: Path | None = None, max_upload: int = 10 * 2**20):
    app = FastAPI(title="moon", summary="Multimodal product search with MOON embeddings")
    root = (photos_root or images_root(engine))
    root = root.resolve() if root else None
    embed_lock = threading.Lock()  # one forward pass at a time: torch already uses every core for one
    facets = engine.searcher.facets()

    @app.exception_handler(ClientError)
    async def client_error(_, exc: ClientError):
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(MoonError)
    async def moon_error(_, exc: MoonError):
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(Exception)
    async def internal(_, exc: Exception):
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the server's log"}, status_code=500)

    def embed(items: list[dict], kind: str):
        with embed_lock:
            return engine.embed(items, kind)

    def thumb_urls(item_id: str, hit: dict) -> list[str]:
        from urllib.parse import quote

        return [f"/thumb/{quote(item_id, safe='/')}/{n}" for n, _ in enumerate(photos_of(hit))]

    def present(hit: dict) -> dict:
        out = {"id": hit["id"], "score": hit.get("score")}
        for column in ("title", "category_path", "attributes"):
            if column in hit:
                out[column] = hit[column]
        urls = thumb_urls(hit["id"], hit)
        out["thumbnail"] = urls[0] if urls else None
        out["images"] = urls
        return out

    async def read_request(request: Request) -> tuple[dict, bytes | None]:
        """The fields of a JSON body or a form, and the uploaded photo's bytes (or None)."""
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_upload + 65536:
            raise ClientError(413, f"request of {int(length):,} bytes is over the {max_upload:,}-byte limit")
        kind = request.headers.get("content-type", "")
        if kind.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            form = await request.form(max_part_size=max_upload + 1)
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            upload = form.get("image")
            data = None
            if upload is not None and not isinstance(upload, str):
                data = await upload.read(max_upload + 1)
                if len(data) > max_upload:
                    raise ClientError(413, f"uploaded image is over the {max_upload:,}-byte limit")
                data = data or None
            return fields, data
        body = await request.body()
        if len(body) > max_upload:
            raise ClientError(413, f"request of {len(body):,} bytes is over the {max_upload:,}-byte limit")
        if not body:
            return {}, None
        try:
            fields = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ClientError(400, f"body is not JSON ({exc})") from None
        except RecursionError:  # Python's parser gives up on very deep nesting: no client of this API sends it
            raise ClientError(400, "body is JSON nested too deeply; send a flat object such as "
                                   '{"text": "red tee", "k": 10}') from None
        if not isinstance(fields, dict):
            raise ClientError(400, "body must be a JSON object")
        return fields, None

    def parse_k(value) -> int:
        try:
            k = int(value)
        except (TypeError, ValueError):
            raise ClientError(400, f"k must be an integer, got {value!r}") from None
        if not 1 <= k <= MAX_K:
            raise ClientError(400, f"k must be between 1 and {MAX_K}, got {k}")
        return k

    @app.get("/", response_class=HTMLResponse)
    def page():
        return PAGE.read_text(encoding="utf-8")

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/info")
    def info():
        i = engine.searcher.info  # the model being served; the index's record of its maker may name it otherwise
        return {"model": engine.encoder.name, "model_id": engine.encoder.model_id, "index_model": i.get("model"),
                "rows": engine.searcher.rows, "dim": engine.dim,
                "index_type": i["index_type"], "search": engine.searcher.describe(),
                "recall@10": i.get("recall@10"), "detector": engine.detector is not None}

    @app.get("/facets")
    def get_facets():
        return facets

    @app.post("/search")
    async def search(request: Request):
        fields, image = await read_request(request)
        k = parse_k(fields.get("k", 10))
        where = fields.get("where") or None
        if where is not None and not isinstance(where, str):
            raise ClientError(400, "where must be a string (a LanceDB SQL filter)")
        text = fields.get("text") or None
        item_id = fields.get("item_id") or None
        if item_id is not None:  # "more like this": the product's own stored vector is the query
            vector = engine.searcher.vector_of(str(item_id))
            if vector is None:
                raise ClientError(404, f"no product with id {item_id!r} in the index")
            hits = [h for h in engine.searcher.search(vector, k + 1, where)[0] if h["id"] != item_id][:k]
            return {"query": {"item_id": item_id}, "hits": [present(h) for h in hits]}
        if text is None and image is None:
            raise ClientError(400, "give text, an image, both, or item_id")
        if text is not None and not isinstance(text, str):
            raise ClientError(400, "text must be a string")
        vectors, errors = embed([{"text": text, "image": image}], "query")
        if errors:
            raise ClientError(400, errors[0])
        hits = engine.searcher.search(vectors, k, where)[0]
        return {"query": {"text": text, "image": image is not None}, "hits": [present(h) for h in hits]}

    @app.post("/embed")
    async def embed_endpoint(request: Request):
        """JSON {"texts": [...]} (query vectors) or {"products": [{title, image_paths, ...}]} (product
        vectors, photos under the catalogue's folder); or a form with one uploaded "image"."""
        fields, image = await read_request(request)
        if image is not None:
            items, kind = [{"image": image}], "query"
        elif isinstance(fields.get("texts"), list):
            items, kind = [{"id": f"text {n}", "text": t} for n, t in enumerate(fields["texts"])], "query"
        elif isinstance(fields.get("products"), list):
            items, kind = [_product(p, n, root) for n, p in enumerate(fields["products"])], "product"
        else:
            raise ClientError(400, 'give {"texts": [...]}, {"products": [...]} or an uploaded image')
        if not items or len(items) > MAX_K:
            raise ClientError(400, f"give 1 to {MAX_K} items")
        vectors, errors = embed(items, kind)
        it = iter(vectors.tolist())
        return {"dim": engine.dim, "model_id": engine.encoder.model_id,
                "vectors": [None if i in errors else next(it) for i in range(len(items))],
                "errors": {str(i): e for i, e in errors.items()}}

    @app.get("/item/{item_id:path}")  # a folder index's ids are relative paths: "shoes/red.jpg"
    def item(item_id: str):
        row = engine.searcher.items([item_id]).get(item_id)
        if row is None:
            raise ClientError(404, f"no product with id {item_id!r} in the index")
        return present({**row, "score": None})

    @app.get("/thumb/{item_id:path}/{n}")
    def thumb(item_id: str, n: int):
        row = engine.searcher.items([item_id]).get(item_id)
        paths = photos_of(row or {})
        if row is None or not 0 <= n < len(paths):
            raise ClientError(404, f"no image {n} for product {item_id!r}")
        path = Path(paths[n]).resolve()
        if root is None or not path.is_relative_to(root) or not path.is_file():
            raise ClientError(404, f"image {n} of product {item_id!r} is not under the catalogue's folder")
        return FileResponse(path)

    return app


def _product(value, n: int, root: Path | None) -> dict:
    """A product dict from a client; its photos must lie under the catalogue's folder (no reading elsewhere)."""
    if not isinstance(value, dict):
        raise ClientError(400, f"products[{n}] must be an object")
    from moon_cli.data.products import product_record

    paths = value.get("image_paths") or []
    if not isinstance(paths, list):
        raise ClientError(400, f"products[{n}]: image_paths must be a list")
    resolved = []
    for p in paths:
        path = Path(str(p)) if Path(str(p)).is_absolute() or root is None else root / str(p)
        path = path.resolve()
        if root is None or not path.is_relative_to(root):
            raise ClientError(400, f"products[{n}]: image {p!r} is not under the catalogue's folder")
        resolved.append(str(path))
    item_id = str(value.get("item_id", value.get("id", f"product {n}")))
    return product_record({**value, "item_id": item_id, "image_paths": resolved}, {})
