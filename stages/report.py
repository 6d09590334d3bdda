"""`moon report`: the reports of a run folder (`make reproduce`, `make scaling`) and the layout their scripts write."""

from pathlib import Path

import click

run_dir_argument = click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
command_option = click.option("--command", default="", help="The command that produced the run (for the record).")
seconds_option = click.option("--seconds", type=float, default=None, help="The run's wall time in seconds.")


@click.group("report")
def report():
    """Reports of a run folder, read where moon_cli/eval/layout.py says each step wrote.

    \b
    Example (each runs in tests/test_docs.py):
      moon report table eval/model eval/untrained
      moon report layout reproduce
    """


@report.command("reproduce")
@run_dir_argument
@click.option("--title", default="MOON reproduction", show_default=True)
@command_option
@seconds_option
@click.option("--order", default="", help="Comma-separated row order (rows not named follow).")
@click.option("--ours", default="moon", show_default=True, help="The row held to the goal table's bar.")
@click.option("--dual", default="dual-encoder", show_default=True, help="The dual-encoder row it is compared with.")
@click.option("--notes", "notes_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Markdown appended at the end (what reproduced and what did not).")
def reproduce(run_dir, title, command, seconds, order, ours, dual, notes_file):
    """RUN_DIR/results.md (and its plots) from a `make reproduce` folder: the bench table (mean ± std over seeds),
    the goal table, CTR and the exchange rates."""
    from moon_cli.eval.results import write_results

    out = write_results(run_dir, title, command, seconds, order, notes_file, ours, dual)
    click.echo(f"moon report: wrote {out}", err=True)


@report.command("scaling")
@run_dir_argument
@command_option
@seconds_option
def scaling(run_dir, command, seconds):
    """RUN_DIR/scaling.md, scaling.json and scaling.png from a `make scaling` folder: power-law fits and verdicts."""
    from moon_cli.eval.scaling import write_scaling

    out = write_scaling(run_dir, command, seconds)
    click.echo(f"moon report: wrote {out}", err=True)


@report.command("table")
@click.argument("evaluations", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
def table(evaluations):
    """Print the bench table of EVALUATIONS (`moon evaluate -o` folders), one row each, deltas against the first."""
    from moon_cli.eval.report import load_metrics, summary_table

    click.echo(summary_table([load_metrics(d) for d in evaluations]))


@report.command("layout")
@click.argument("kind", type=click.Choice(["reproduce", "scaling"]))
@click.option("--root-var", default="run", show_default=True, help="The shell variable holding the run folder.")
def layout(kind, root_var):
    """Print a bash function `layout NAME FIELD...` giving each path of a KIND run folder: the scripts that write
    one (examples/reproduce.sh, examples/scaling.sh) eval it, so they write where `moon report` reads."""
    from moon_cli.eval.layout import RunLayout

    click.echo(RunLayout(kind, ".").shell(root_var), nl=False)
