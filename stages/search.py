"""`moon search`: embed a text and/or image query and print the nearest products as JSON lines."""

import json
from pathlib import Path

import click

from moon_cli.options import model_option


@click.command("search")
@click.argument("index_dir", type=click.Path(file_okay=False, path_type=Path))
@model_option("The model that made the index's vectors.")
@click.option("--text", default=None, help="Query text.")
@click.option("--image", type=click.Path(dir_okay=False), default=None, help="Query image.")
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True)
def search(index_dir, model_name, text, image, k):
    """Search INDEX_DIR with --text, --image or both; one JSON object per hit on stdout (id, score, columns)."""
    from moon_cli.embed.encoders import load_encoder
    from moon_cli.errors import MoonError
    from moon_cli.index.lance import open_table, read_info, search_vectors

    if not text and not image:
        raise MoonError("give --text, --image or both")
    info = read_info(index_dir)
    encoder = load_encoder(model_name)
    if encoder.model_id != info["model_id"]:
        raise MoonError(f"{index_dir}: indexed with model '{info['model_id']}', not '{encoder.model_id}'; "
                        f"search with the model that made the index")
    enc = encoder.encode([{"id": "query", "text": text, "image": image}], "query")
    if enc.errors:
        raise MoonError(enc.errors[0])
    vector = enc.vectors[0, : int(info["dim"])]
    vector = (vector / vector.norm()).numpy()
    hits = search_vectors(open_table(index_dir), vector, k, info["index_type"])
    for row in hits.drop_columns(["vector"]).to_pylist():
        distance = row.pop("_distance")
        click.echo(json.dumps({"id": row.pop("id"), "score": round(1.0 - float(distance), 6), **row}, default=str))
