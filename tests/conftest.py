import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from moon_cli.cli import cli

# Keep tests deterministic and polite on 2 cores; never reach for a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]


def run_moon(*args, input=None):
    """Invoke the CLI in-process through click's test runner."""
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


def moon_subprocess(args: str, **kw) -> subprocess.CompletedProcess:
    """Run a shell command line with this interpreter's `moon` on PATH (real pipes)."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run(args, shell=True, capture_output=True, env=env, **kw)


@pytest.fixture(scope="session")
def world_template(tmp_path_factory) -> Path:
    """A small synthetic world shared (read-only) by the tests."""
    out = tmp_path_factory.mktemp("world") / "w"
    result = run_moon("synth", out, "--products", 120, "--seed", 3, "--quiet")
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def world(world_template, tmp_path) -> Path:
    """A private copy of the small world that a test may modify."""
    dst = tmp_path / "world"
    shutil.copytree(world_template, dst)
    return dst


@pytest.fixture(scope="session")
def mined_pairs(world_template, tmp_path_factory) -> Path:
    """The small world's query → purchase pairs (read-only)."""
    out = tmp_path_factory.mktemp("pairs") / "pairs.parquet"
    w = world_template
    r = run_moon("mine-pairs", w / "behavior.parquet", "--catalog", w / "catalog.parquet", "-o", out, "-q")
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="session")
def catalog_index(world_template, tmp_path_factory):
    """The small world's catalogue embedded by the tiny model and indexed: (dir holding idx/, index summary)."""
    d = tmp_path_factory.mktemp("index")
    assert run_moon("embed", world_template / "catalog.parquet", "-m", "tiny", "-o", d / "e.parquet",
                    "--quiet", "--batch-size", 32).exit_code == 0
    r = run_moon("index", d / "e.parquet", "-o", d / "idx")
    assert r.exit_code == 0, r.output
    return d, r.output


@pytest.fixture(scope="session")
def detector(world_template, tmp_path_factory):
    """A detector trained for one epoch on the small world (weak, but real ultralytics weights)."""
    out = tmp_path_factory.mktemp("det") / "detector"
    r = run_moon("detect-train", world_template / "boxes.parquet", "-o", out, "--epochs", 1, "--imgsz", 64,
                 "--max-images", 80, "--batch", 16)
    assert r.exit_code == 0, r.output
    return out
