"""Progress bars, one way for every stage: on stderr, redrawn in place on a terminal; in a log file or CI (no
terminal) a line at most every 30 s and no repeat of the last line when the bar closes — the stage's closing
summary says where it ended."""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress(iterable=None, *, total: int | None = None, desc: str = "", unit: str = "it", quiet: bool = False,
             initial: int = 0, leave: bool = True) -> tqdm:
    terminal = sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, file=sys.stderr, disable=quiet,
                dynamic_ncols=terminal, mininterval=0.1 if terminal else 30.0, leave=leave and terminal)


def plural(unit: str) -> str:
    """"query" → "queries", "product" → "products": for throughput lines such as "12.5 queries/s"."""
    return unit[:-1] + "ies" if unit.endswith("y") and unit[-2:-1] not in "aeiou" else unit + "s"
