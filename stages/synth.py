"""`moon synth`: generate a seeded synthetic e-commerce world."""

from pathlib import Path

import click

from moon_cli.options import echo_summary, overwrite_option, quiet_option, seed_option


@click.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--products", type=click.IntRange(min=1), default=300, show_default=True,
              help="Number of products in the catalogue.")
@seed_option("Same seed, same tables and image bytes")
@click.option("--image-size", type=click.IntRange(min=64, max=1024), default=128, show_default=True,
              help="Side of the square product photos, in pixels.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Render processes [default: all cores].")
@overwrite_option
@quiet_option
def synth(out_dir: Path, products: int, seed: int, image_size: int, workers, overwrite: bool, quiet: bool):
    """Generate a synthetic marketplace in OUT_DIR.

    Writes catalog.parquet (products: title, 3-level category path, attributes, photos),
    behavior.parquet (search sessions with text / image / multimodal queries, impressions, clicks,
    carts, purchases), boxes.parquet (the core product's box in every photo), images/, queries/ and
    bench/ (held-out MBE-style evaluation tasks; see bench/README.md). Deterministic for a seed.

    \b
    Example (each runs in tests/test_docs.py):
      moon synth world --products 120 --seed 0
    """
    from moon_cli.io import atomic_dir
    from moon_cli.synth.world import build_world

    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        summary = build_world(tmp, products, seed, image_size=image_size, workers=workers, progress=not quiet)
    events = ", ".join(f"{k} {v}" for k, v in sorted(summary["events"].items()))
    bench = ", ".join(f"{k} {v}" for k, v in summary["bench"].items())
    echo_summary(f"moon synth: wrote {out_dir}", {
        "catalog.parquet": f"{summary['products']} products, {summary['families']} families, "
                           f"{summary['leaf_categories']} leaf categories",
        "behavior.parquet": f"{summary['behavior_rows']} events ({events}); {summary['sessions']} sessions, "
                            f"{summary['users']} users",
        "boxes.parquet": f"{summary['boxes']} boxes",
        "images": f"{summary['images']} photos",
        "bench/": bench,
        "time": f"{summary['seconds']} s ({summary['products_per_second']} products/s)",
    })
