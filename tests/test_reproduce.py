import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import run_moon
from moon_cli.eval.results import collect, goal_table, margin, paper_table, train_seconds
from moon_cli.eval.scaling import power_law, recall_noise, verdict

REPO = Path(__file__).resolve().parents[1]


def test_power_law_recovers_the_exponent_and_refuses_what_is_not_one():
    x = np.array([100, 200, 400, 800, 1600])
    fit = power_law(x, 0.02 * x ** 0.35)
    assert fit["b"] == pytest.approx(0.35) and fit["a"] == pytest.approx(0.02) and fit["fits"]
    assert not power_law(x, np.array([0.3, 0.1, 0.5, 0.05, 0.4]))["fits"]
    assert power_law(x[:2], x[:2])["b"] is None
    assert power_law(x, np.array([-0.01, 0.002, 0.004, 0.005, 0.006]))["b"] is None  # not fitted on the positive part


def test_scaling_verdict_tells_a_power_law_from_mere_growth_and_from_none():
    x = [240, 480, 960, 1920]
    clean = [0.02 * v ** 0.35 for v in x]
    assert verdict(x, clean, power_law(x, clean)).startswith("holds (power law, exponent 0.35")
    noisy = [0.067, 0.050, 0.067, 0.133]
    assert verdict(x, noisy, power_law(x, noisy)).startswith("partly: grows")
    falling = [0.30, 0.25, 0.26, 0.20]
    assert verdict(x, falling, power_law(x, falling)).startswith("does not hold here")
    negative = [-0.015, -0.003, -0.004, 0.001]  # growing ΔAUC that crosses zero: no fit, yet it grows
    assert verdict(x, negative, power_law(x, negative)).startswith("partly: grows")
    flat = [0.975, 0.983, 0.992, 0.992]  # a power law of exponent 0.01, but 0.017 over 120 queries is noise
    assert verdict(x, flat, power_law(x, flat), recall_noise(0.975, 0.992, 120)).startswith("not shown")


def _two_seeds_of_moon(run_dir):
    """A reproduce folder where `moon` was evaluated on two seeds (image→product 0.2 and 0.4) and trained 60 s each."""
    for seed, image in ((0, 0.2), (1, 0.4)):
        d = run_dir / f"seed{seed}" / "eval" / "moon"
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps({
            "label": "moon", "retrieval": {"image_to_product": {"recall@10": image}},
            "classification": {"level1": {"accuracy": 0.5}, "level2": {"accuracy": 0.3}}, "attributes": {}}))
        (run_dir / f"seed{seed}" / "moon.seconds").write_text("60\n")


def test_results_table_is_mean_and_std_over_seeds(tmp_path):
    _two_seeds_of_moon(tmp_path)
    runs = collect(tmp_path)
    row = paper_table(runs, ["moon"]).splitlines()[2]
    assert row.startswith("| moon | 0.300 ± 0.100 | n/a |") and "| 0.400 ± 0.000 |" in row and row.endswith("| 2 |")


def test_the_goal_table_pairs_seeds_against_the_dual_and_needs_two_sigma():
    h = lambda image, text=None: {"image_to_product": image, "text_to_product": text}  # noqa: E731
    runs = {"moon": [h(0.50, 0.6), h(0.52, 0.6), h(0.54, 0.6)],
            "dual-encoder": [h(0.40), h(0.41), h(0.45)],
            "efficientnet-lite0": [h(0.51)], "minilm": [h(None, 0.7)]}
    diff, sd = margin(runs["moon"], runs["dual-encoder"], "image_to_product")  # paired: 0.10, 0.11, 0.09
    assert diff == pytest.approx(0.10) and sd == pytest.approx(np.std([0.10, 0.11, 0.09]))
    assert margin(runs["moon"], runs["minilm"], "image_to_product") is None  # minilm cannot read photos
    table = goal_table(runs)
    assert "| dual-encoder | image→product | +0.100 ± 0.008 | beats it (> 2σ) |" in table
    # +0.010 over a baseline evaluated once, against MOON's own spread over seeds (0.016): not enough
    assert "| efficientnet-lite0 | image→product | +0.010 ± 0.016 | ahead, within 2σ |" in table
    assert "| minilm | text→product | -0.100 ± 0.000 | behind |" in table
    assert goal_table({"dual-encoder": runs["dual-encoder"]}) == ""
    assert "| minilm | image→product |" not in table
    level = goal_table({"moon": [h(0.5, 0.7)] * 2, "minilm": [h(None, 0.7)]})
    assert "| minilm | text→product | +0.000 ± 0.000 | level |" in level
    one = goal_table({"moon": runs["moon"][:1], "dual-encoder": runs["dual-encoder"][:1]})
    assert "| +0.100 ± 0.000 | ahead (one seed: σ unknown) |" in one


def test_the_results_table_reports_each_rows_train_time(tmp_path):
    for seed, t in ((0, 100), (1, 140)):
        (tmp_path / f"seed{seed}").mkdir()
        (tmp_path / f"seed{seed}" / "moon.seconds").write_text(f"{t}\n")
    runs = {"moon": [{"image_to_product": 0.5}], "minilm": [{"text_to_product": 0.7}]}
    lines = paper_table(runs, ["moon", "minilm"], train_seconds(tmp_path)).splitlines()
    assert lines[0].endswith("| seeds | train time |")
    assert lines[2].endswith("| 1 | 120 s |") and lines[3].endswith("| 1 | — |")


def _reproduce(data: Path, run: Path) -> subprocess.CompletedProcess:
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "DATA": str(data), "HOME": str(run.parent)}
    return subprocess.run(["bash", str(REPO / "examples" / "reproduce.sh"), str(run)], capture_output=True, text=True,
                          env=env)


def test_data_without_the_contract_tables_names_the_missing_table_and_column(tmp_path, world_template):
    data = tmp_path / "data"
    data.mkdir()
    catalog = pq.read_table(world_template / "catalog.parquet")
    pq.write_table(catalog.drop_columns(["image_paths"]), data / "catalog.parquet")
    r = _reproduce(data, tmp_path / "run")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "catalog.parquet: missing column 'image_paths'" in r.stderr

    pq.write_table(catalog, data / "catalog.parquet")
    r = _reproduce(data, tmp_path / "run")
    assert r.returncode != 0 and "behavior.parquet: no such file" in r.stderr
    assert not (tmp_path / "run" / "seed0").exists()  # nothing trained on a half-valid DATA


@pytest.mark.parametrize("kind", ["reproduce", "scaling"])
def test_the_shell_scripts_layout_function_gives_the_paths_the_reader_reads(kind, tmp_path):
    from moon_cli.eval.layout import RunLayout

    script = run_moon("report", "layout", kind).output
    for name in RunLayout(kind, ".").templates:
        layout = RunLayout(kind, tmp_path / name)  # a folder per path: a file of one is a folder of another
        fields = {f: f"{f}-{i}" for i, f in enumerate(layout.fields(name))}
        got = subprocess.run(["bash", "-c", f'run={layout.root}\n{script}\nlayout "$@"', "layout", name,
                              *fields.values()], capture_output=True, text=True, check=True).stdout.strip()
        assert got == str(layout.path(name, **fields)), name
        path = layout.path(name, **fields)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        assert layout.find(name) == [(fields, path)]  # what the writer wrote is found, with its fields
    r = subprocess.run(["bash", "-c", f"run=x\n{script}\nlayout no-such"], capture_output=True, text=True)
    assert r.returncode == 2 and "no path 'no-such'" in r.stderr


def test_moon_report_writes_results_md_from_a_run_folder_and_refuses_an_empty_one(tmp_path):
    _two_seeds_of_moon(tmp_path)
    r = run_moon("report", "reproduce", tmp_path, "--title", "T", "--seconds", 120)
    assert r.exit_code == 0, r.output
    text = (tmp_path / "results.md").read_text()
    assert text.startswith("# T") and "| moon | 0.300 ± 0.100 |" in text and "| 60 s |" in text
    (tmp_path / "empty").mkdir()
    r = run_moon("report", "reproduce", tmp_path / "empty")
    assert r.exit_code == 1 and "holds no evaluation" in r.output and not (tmp_path / "empty" / "results.md").exists()
    r = run_moon("report", "scaling", tmp_path / "empty")
    assert r.exit_code == 1 and "holds no sweep point" in r.output


def test_moon_report_names_a_damaged_metrics_file_in_one_line(tmp_path):
    _two_seeds_of_moon(tmp_path)
    damaged = tmp_path / "seed1" / "eval" / "moon" / "metrics.json"
    damaged.write_text('{"label": "moon", "retr')
    r = run_moon("report", "reproduce", tmp_path)
    assert r.exit_code == 1 and f"{damaged}: not a readable JSON report" in r.output
    assert "internal error" not in r.output
    assert not (tmp_path / "results.md").exists()
