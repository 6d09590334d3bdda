"""`moon embed`: products (a folder of photos or a catalogue) or queries → unit-norm vectors."""

import re
from pathlib import Path

import click

from moon_cli.embed.inputs import KINDS
from moon_cli.options import (device_option, echo_summary, model_option, output_option, overwrite_option, quiet_option,
                              ray_options)


def _shard(text):
    if text is None:
        return None
    m = re.fullmatch(r"(\d+)/(\d+)", text)
    if not m or not 0 <= int(m[1]) < int(m[2]):
        raise click.BadParameter(f"'{text}' is not I/N with 0 <= I < N, e.g. 0/4")
    return int(m[1]), int(m[2])


@click.command("embed")
@click.argument("input_path", metavar="INPUT")
@model_option()
@output_option("Embeddings Parquet, or - for an Arrow stream on stdout.")
@click.option("--detections", default=None, help="Core-product crops from `moon detect` (MOON models use them).")
@click.option("--kind", type=click.Choice(["auto", *KINDS]), default="auto", show_default=True,
              help="What the rows are (auto: from the columns).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--dim", type=click.IntRange(min=1), default=None, help="Keep the first D dimensions (Matryoshka) and "
                                                                      "renormalise.")
@click.option("--shard", "shard", default=None, help="I/N: embed only this process's part (outputs concatenate).")
@click.option("--resume", is_flag=True, help="Skip ids already written (by a finished or an interrupted run).")
@device_option()
@click.option("--base-dir", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Where relative photo paths of a table piped on - lie [default: the current directory]; a "
                   "Parquet file's own paths resolve against its directory.")
@click.option("--text-only", is_flag=True,
              help="Allow a product table without an image_paths column (products embedded from their text alone).")
@ray_options
@overwrite_option
@quiet_option
def embed(input_path, model_name, output, detections, kind, batch_size, dim, shard, resume, device, base_dir, text_only,
          ray_address, num_workers, cpus_per_worker, overwrite, quiet):
    """Embed INPUT: a folder of product photos (recursive; one product per photo), a catalogue or product
    listings Parquet (one product per row: all its photos, crops, title, category, attributes), a
    queries Parquet, or - (an Arrow stream of any of these).

    Writes id, vector (float32, unit norm), status / error (a row that fails is reported, not fatal)
    and the input's columns. The model's identity is stored in the file's metadata. When every row
    fails the exit code is 1.

    \b
    Example (each runs in tests/test_docs.py):
      moon embed world/catalog.parquet -m model --detections detections.parquet -o embeddings.parquet
      moon embed world/catalog.parquet -m tiny -o untrained.parquet
      moon embed world/catalog.parquet -m minilm -o minilm.parquet   # make baselines
      moon embed world/catalog.parquet -m model --detections detections.parquet -o ray.parquet --ray --num-workers 2
    """
    from moon_cli.embed.job import EmbedJob, run_embed
    from moon_cli.io import is_stdio
    from moon_cli.errors import MoonError

    job = EmbedJob(input_path, model_name, output, detections, kind, batch_size, dim, _shard(shard), resume, device,
                   base_dir, text_only, ray_address, num_workers, cpus_per_worker, overwrite, quiet)
    result = run_embed(job)
    echo_summary(f"moon embed: wrote {'stdout' if is_stdio(output) else output}", result.summary)
    if result.failure:
        raise MoonError(result.failure)
