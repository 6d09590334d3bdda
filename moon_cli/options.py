"""Click options shared by the stages, so every stage spells them the same way (and reads the same
environment variables)."""

import math
from pathlib import Path

import click


class Number(click.FloatRange):
    """A finite float, optionally within a range: click's FloatRange lets nan and inf through (every comparison
    with nan is false), and `--margin nan` would then silently change what a stage does."""

    name = "number"

    def __init__(self, min=None, max=None, min_open=False, max_open=False):
        super().__init__(min, max, min_open, max_open)

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number

overwrite_option = click.option("--overwrite", is_flag=True, help="Replace an existing output.")
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bars; only the final summary.")


def seed_option(help_text: str = "Random seed."):
    return click.option("--seed", type=int, default=0, show_default=True, envvar="MOON_SEED",
                        help=f"{help_text} (env: MOON_SEED)")


def output_option(help_text: str = "Output file, or - for an Arrow stream on stdout.", kind: str = "stream",
                  required: bool = True):
    """-o / --output. kind: "stream" (a table file, or - for stdout), "file" (a file only) or "dir"."""
    if kind == "stream":
        return click.option("-o", "--output", "output", required=required, help=help_text)
    path = click.Path(file_okay=kind != "dir", dir_okay=kind == "dir", allow_dash=False, path_type=Path)
    return click.option("-o", "--output", "output", required=required, type=path, help=help_text)


# What MODEL can be (moon_cli.model.resolve decides; tests/test_cli.py checks this names every preset and baseline).
MODEL_KINDS = ("a `moon train` checkpoint directory; a preset: mini (pretrained parts; a visual prior puts photos "
               "in its text space untrained), tiny or tiny-qwen3 (random init); a baseline: minilm (text only), "
               "efficientnet-lite0 / -lite1 / -lite2 (photos only), conse (photos into MiniLM's text space through "
               "ImageNet class names); or a Qwen2-VL / Qwen2.5-VL / Qwen3-VL hub id or local path")


def model_option(help_text: str = "", default: str | None = None, kinds: bool = True):
    """-m / --model: what MODEL means is decided in one place, ``moon_cli.model.resolve``."""
    text = " ".join(t for t in (help_text, f"MODEL is {MODEL_KINDS}." if kinds else "") if t)
    return click.option("-m", "--model", "model_name", required=default is None, default=default,
                        show_default=default is not None, envvar="MOON_MODEL", help=f"{text} (env: MOON_MODEL)")


def echo_summary(title: str, rows: dict) -> None:
    """Print a stage's closing summary to stderr (stdout is reserved for data)."""
    click.echo(f"{title}:", err=True)
    width = max(len(k) for k in rows) if rows else 0
    for key, value in rows.items():
        click.echo(f"  {key:<{width}}  {value}", err=True)


def detector_option(required: bool = False, help_text: str = "Detector directory from `moon detect-train`."):
    """--detector: one spelling wherever a trained detector is read (--weights, its old name, still works)."""
    return click.option("--detector", "--weights", "detector", required=required, default=None,
                        type=click.Path(path_type=Path), envvar="MOON_DETECTOR",
                        help=f"{help_text} (env: MOON_DETECTOR)")


def device_option():
    return click.option("--device", default=None, envvar="MOON_DEVICE",
                        help="torch device (env: MOON_DEVICE) [default: cuda:LOCAL_RANK if a GPU is visible, "
                             "else cpu].")


def memory_option(default: str = "off"):
    """--memory: search an in-memory FAISS copy of the index (moon_cli.index.searcher decides what each means)."""
    return click.option("--memory", type=click.Choice(["off", "on", "auto"]), default=default, show_default=True,
                        envvar="MOON_MEMORY",
                        help="Search an in-memory FAISS copy of the vectors (needs moon-cli[faiss]); on: required, "
                             "auto: when FAISS is installed and the copy fits MOON_MEMORY_LIMIT_GB (4) "
                             "(env: MOON_MEMORY)")


def ray_options(f):
    """--ray [ADDRESS] and its worker options, for the stages that fan out over a Ray cluster."""
    f = click.option("--cpus-per-worker", type=click.IntRange(min=1), default=1, show_default=True,
                     help="CPU cores each Ray worker reserves (and its torch threads).")(f)
    f = click.option("--num-workers", type=click.IntRange(min=1), default=None,
                     help="Ray workers, each loading the model once [default: one per GPU in the cluster; "
                          "without GPUs, "
                          "the cluster's CPUs / --cpus-per-worker].")(f)
    return click.option("--ray", "ray_address", default=None, is_flag=False, flag_value="local", envvar="MOON_RAY",
                        metavar="[ADDRESS]",
                        help="Run on Ray: alone, a local Ray on this machine; or a cluster's address (auto, HOST:PORT, "
                             "ray://HOST:PORT). Needs pip install 'moon-cli[ray]'. (env: MOON_RAY)")(f)


class SizeList(click.ParamType):
    """A comma-separated list of positive sizes, e.g. 64,128 (sorted, without repeats)."""

    name = "sizes"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            sizes = sorted({int(d) for d in str(value).split(",") if d.strip()})
        except ValueError:
            self.fail(f"'{value}' is not a comma-separated list of sizes, e.g. 64,128", param, ctx)
        if any(d <= 0 for d in sizes):
            self.fail("sizes must be positive", param, ctx)
        return sizes


class ModalityMix(click.ParamType):
    """IMAGE:TEXT:MULTIMODAL query-modality weights, e.g. 12:3:2."""

    name = "image:text:multimodal"

    def convert(self, value, param, ctx):
        if isinstance(value, dict):
            return value
        try:
            weights = [float(p) for p in str(value).split(":")]
        except ValueError:
            weights = []
        if len(weights) != 3 or any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            self.fail(f"'{value}' is not IMAGE:TEXT:MULTIMODAL weights, e.g. 12:3:2", param, ctx)
        return dict(zip(("image", "text", "multimodal"), weights))


def planned(text: str, name: str) -> str:
    """``text`` with the default of TrainConfig's ``name``, read from where it is decided (TrainConfig,
    recipes.toml), so a help text cannot drift from what a run uses."""
    from moon_cli.train.config import TrainConfig
    from moon_cli.train.plan import recipes

    if any(name in r for r in recipes().values()):
        return f"{text} [default: the model's recipe; --print-plan shows it]".strip()
    value = getattr(TrainConfig(), name)
    shown = ":".join(f"{v:g}" for v in value.values()) if isinstance(value, dict) else value
    return f"{text} [default: {shown}]".strip()
