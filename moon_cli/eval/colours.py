"""One colour per run, the same in every panel and plot of a report, and never one colour for two runs."""

from __future__ import annotations


def colours(labels) -> dict[str, tuple]:
    """label → RGBA, in the order given: matplotlib's tab10 for up to 10 runs, tab20 up to 20, then evenly
    spaced hues (matplotlib's default cycle repeats after 10, and restarts in every panel)."""
    from matplotlib import colormaps

    labels = list(dict.fromkeys(labels))
    n = len(labels)
    if n <= 10:
        palette = [colormaps["tab10"](i) for i in range(n)]
    elif n <= 20:
        palette = [colormaps["tab20"](i) for i in range(n)]
    else:
        palette = [colormaps["hsv"](i / n) for i in range(n)]
    return dict(zip(labels, palette))
