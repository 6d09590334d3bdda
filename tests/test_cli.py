import subprocess
import sys

from moon_cli import __version__
from moon_cli.cli import COMMANDS, cli

from conftest import run_moon


def test_help_lists_every_registered_command():
    result = run_moon("--help")
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


def test_short_help_flag_and_version():
    assert run_moon("-h").exit_code == 0
    result = run_moon("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_every_command_is_documented():
    for name in COMMANDS:
        cmd = cli.get_command(None, name)
        assert cmd is not None, name
        assert cmd.help and len(cmd.help.strip()) > 20, f"moon {name} has no help text"
        result = run_moon(name, "--help")
        assert result.exit_code == 0 and "Usage" in result.output


def test_help_does_not_import_heavy_modules():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from moon_cli.cli import cli\n"
        "CliRunner().invoke(cli, ['--help'])\n"
        "heavy = [m for m in ('torch', 'transformers', 'polars', 'ultralytics', 'lancedb') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"`moon --help` imported {out}"


def test_unknown_command_is_a_usage_error():
    result = run_moon("no-such-stage")
    assert result.exit_code == 2
    assert "No such command" in result.output
