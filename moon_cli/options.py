"""Click options shared by the stages, so every stage spells them the same way."""

import click

overwrite_option = click.option("--overwrite", is_flag=True, help="Replace an existing output.")
seed_option = click.option("--seed", type=int, default=0, show_default=True, envvar="MOON_SEED",
                           help="Random seed (env: MOON_SEED).")
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bars; only the final summary.")


def output_option(help_text: str = "Output file, or - for an Arrow stream on stdout."):
    return click.option("-o", "--output", "output", required=True, help=help_text)


def echo_summary(title: str, rows: dict) -> None:
    """Print a stage's closing summary to stderr (stdout is reserved for data)."""
    click.echo(f"{title}:", err=True)
    width = max(len(k) for k in rows) if rows else 0
    for key, value in rows.items():
        click.echo(f"  {key:<{width}}  {value}", err=True)
