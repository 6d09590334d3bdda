"""`moon serve`: the search service — an HTTP JSON API and a web page of result photos."""

from pathlib import Path

import click

from moon_cli.options import Number, detector_option, device_option, memory_option, model_option, quiet_option


@click.command("serve")
@click.argument("index_dir", type=click.Path(file_okay=False, path_type=Path))
@model_option("The model that made the index's vectors.", kinds=False)
@click.option("--host", default="127.0.0.1", show_default=True, envvar="MOON_HOST",
              help="Address to bind; 0.0.0.0 exposes the service to the network. (env: MOON_HOST)")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, envvar="MOON_PORT",
              help="(env: MOON_PORT)")
@detector_option(help_text="A `moon detect-train` directory: query photos get their core-product crop, as in "
                           "training.")
@click.option("--images-root", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="The only folder photos are served from [default: the folder holding every indexed photo].")
@click.option("--max-upload-mb", type=Number(min=0.001), default=10.0, show_default=True,
              help="Largest request (an uploaded photo) accepted; larger ones get 413.")
@memory_option(default="auto")
@device_option()
@quiet_option
def serve(index_dir, model_name, host, port, detector, images_root, max_upload_mb, memory, device, quiet):
    """Serve INDEX_DIR: POST /search (text, photo, both, or a product), POST /embed, GET /item/ID, /info,
    /healthz, and a search page at /. The model and index load once.

    \b
    Example (each runs in tests/test_docs.py):
      moon serve index -m model --port 8000   # then open http://127.0.0.1:8000
    """
    import uvicorn

    from moon_cli.serve.app import create_app
    from moon_cli.serve.engine import SearchEngine

    if not index_dir.is_dir():
        from moon_cli.errors import MoonError

        raise MoonError(f"{index_dir}: no such index directory; build one with `moon index`")
    from moon_cli.devices import choose_device

    engine = SearchEngine(index_dir, model_name, memory=memory, device=choose_device(device), detector=detector)
    app = create_app(engine, images_root, max_upload=int(max_upload_mb * 2**20))
    if not quiet:
        click.echo(f"moon serve: {engine.searcher.rows:,} products, {engine.searcher.describe()}; "
                   f"serving on http://{host}:{port} (Ctrl-C stops)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="error" if quiet else "warning")
