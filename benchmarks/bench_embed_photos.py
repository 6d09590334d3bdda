"""Photos/s of `moon embed FOLDER -m MODEL` against the same command at an earlier commit, side by side.

    python benchmarks/bench_embed_photos.py PHOTO_FOLDER [--ref COMMIT] [--rounds 5] [-m mini]

The earlier commit is checked out in a temporary git worktree and run with this interpreter (the same
packages), alternating with the working tree's code round by round, so that the machine's drift falls on both;
the figure is each side's median of the stage's own throughput line (embedding only, model load excluded).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def photos_per_s(code_root: Path, folder: Path, model: str, out: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(code_root))
    r = subprocess.run([sys.executable, "-m", "moon_cli.cli", "embed", str(folder), "-m", model, "-o", str(out),
                        "--overwrite", "--quiet"], capture_output=True, text=True, env=env, cwd=code_root)
    m = re.search(r"time\s+[\d.]+ s \(([\d.]+) products/s\)", r.stderr)
    if r.returncode or not m:
        sys.exit(f"bench_embed_photos: {code_root}: moon embed failed:\n{r.stderr[-2000:]}")
    return float(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--ref", default="HEAD", help="the earlier commit to compare against [HEAD]")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("-m", "--model", default="mini")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="moon-bench-") as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(old), args.ref], check=True)
        try:
            runs = {"earlier": [], "now": []}
            for _ in range(args.rounds):
                runs["earlier"].append(photos_per_s(old, args.folder, args.model, Path(tmp) / "old.parquet"))
                runs["now"].append(photos_per_s(REPO, args.folder, args.model, Path(tmp) / "new.parquet"))
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)], check=False)
    before, after = statistics.median(runs["earlier"]), statistics.median(runs["now"])
    print(f"moon embed {args.folder} -m {args.model}, {args.rounds} alternating rounds (medians):")
    print(f"  at {args.ref}: {before:.1f} photos/s   {runs['earlier']}")
    print(f"  now:        {after:.1f} photos/s   {runs['now']}")
    print(f"  ratio now / earlier: {after / before:.2f}")


if __name__ == "__main__":
    main()
