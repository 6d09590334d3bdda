"""The `moon` command group.

Subcommands live in ``stages/<name>.py`` and are imported only when invoked, so ``moon --help`` stays
fast (no torch, no polars). Each entry below is (module path, one-line help shown in ``moon --help``).
"""

import os
import sys

import click

from moon_cli import __version__

# transformers' "Loading weights" bar on every model load is noise beside moon's own progress and summaries
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

# name -> (module:attribute, short help). Register only commands that work.
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("stages.synth:synth",
              "Generate a seeded synthetic e-commerce world (catalogue, images, behaviour, bench)."),
    "detect-train": ("stages.detect_train:detect_train",
                     "Train the core-product detector (ultralytics YOLO, random init, offline)."),
    "detect": ("stages.detect:detect",
               "Detect the core product in images and write its box and crop (one row per image)."),
    "mine-pairs": ("stages.mine_pairs:mine_pairs",
                   "Mine search-query -> purchased-item positive pairs from behaviour logs."),
    "sample-negatives": ("stages.sample_negatives:sample_negatives",
                         "Sample hard negatives per pair (same category, embedding neighbours, random)."),
    "train": ("stages.train:train",
              "Train MOON contrastively on query -> product pairs (or pre-train on the catalogue)."),
    "embed": ("stages.embed:embed",
              "Embed products (a folder of photos or a catalogue) or queries into unit-norm vectors."),
    "index": ("stages.index:index", "Index embeddings in LanceDB (cosine; exact or recall-checked ANN)."),
    "search": ("stages.search:search",
               "Search an index with text / image queries, or a file of them (JSON lines on stdout)."),
    "serve": ("stages.serve:serve", "Serve an index: search API and a web page of result photos."),
    "evaluate": ("stages.evaluate:evaluate",
                 "Evaluate a model on an MBE-style bench (retrieval, zero-shot classification)."),
    "ctr": ("stages.ctr:ctr",
            "Train a CTR model on impressions with / without frozen embeddings (AUC, GAUC, seq lengths)."),
    "exchange-rate": ("stages.exchange_rate:exchange_rate",
                      "Which offline metric buys the most CTR gain across model versions (slope, rank correlation)."),
    "export": ("stages.export:export", "Export a checkpoint (no MoE) as a plain Hugging Face model directory."),
    "report": ("stages.report:report",
               "Reports of a reproduce or scaling run folder (results.md, scaling.md) and its layout."),
    "inspect": ("stages.inspect:inspect",
                "Describe an artifact (rows, columns, manifest) and check it against a contract."),
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when that subcommand runs, and turns the
    library's ``MoonError`` into click's one-line ``Error: ...`` with exit status 1."""

    def invoke(self, ctx):
        from moon_cli.errors import MoonError

        try:
            return super().invoke(ctx)
        except MoonError as exc:
            raise click.ClickException(exc.message) from None
        except OSError as exc:  # the environment, not a bug: a path that cannot be read or written, a full disk
            if exc.filename is None and exc.strerror is None:
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}; check the path, its permissions and free "
                                       f"space") from None
        except MemoryError:
            raise click.ClickException("ran out of memory; use a smaller --batch-size, split the input (e.g. "
                                       "--shard I/N) or run on a machine with more memory") from None

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module_name, attr = COMMANDS[name][0].split(":")
        import importlib

        return getattr(importlib.import_module(module_name), attr)

    def format_commands(self, ctx, formatter):
        # Short help comes from the table above, so listing commands imports nothing.
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="moon")
def cli():
    """moon — MOON multimodal product embeddings as composable stages.

    Stages read and write Parquet artifacts (or an Arrow IPC stream when a path is `-`), so they chain
    in shell scripts and pipes:

        moon synth world/ && moon mine-pairs world/behavior.parquet -o - | ...
    """


def main():
    """Console entry point: user errors print one line; unexpected ones too, unless MOON_DEBUG=1."""
    try:
        cli.main(standalone_mode=True)
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - last line of defence against tracebacks
        if os.environ.get("MOON_DEBUG"):
            raise
        click.echo(f"Error: internal error: {type(exc).__name__}: {exc} (set MOON_DEBUG=1 for a traceback)", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
