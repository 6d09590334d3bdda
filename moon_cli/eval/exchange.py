"""Exchange rate: how much downstream CTR gain one unit of an intermediate (offline) metric buys.

Across model versions, fit ΔAUC (CTR with the version's embeddings, minus the ID-only model) against
each intermediate metric: the slope is the exchange rate, R² how well a line explains it, and the
Spearman rank correlation whether a better offline score reliably means a better CTR model — the
property that makes a metric worth optimising.
"""

from __future__ import annotations

import numpy as np

from moon_cli.ctr.metrics import average_ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    rx, ry = average_ranks(np.asarray(x, float)), average_ranks(np.asarray(y, float))
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def fit(x: np.ndarray, y: np.ndarray) -> dict:
    """Least-squares line y = slope·x + b, its R², and Spearman ρ."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0:
        return {"versions": len(x), "slope": None, "r2": None, "spearman": None}
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (slope * x + intercept)
    r2 = 1 - resid.var() / y.var() if y.var() > 0 else None
    return {"versions": len(x), "slope": float(slope), "r2": None if r2 is None else float(r2),
            "spearman": spearman(x, y)}


def exchange_rates(versions: list[dict], metrics: list[str]) -> list[dict]:
    """versions: {"label", "downstream": Δ, "metrics": {name: value or None}}. One row per metric, best first."""
    rows = []
    for m in metrics:
        have = [v for v in versions if v["metrics"].get(m) is not None]
        x = np.array([v["metrics"][m] for v in have])
        y = np.array([v["downstream"] for v in have])
        rows.append({"metric": m, **fit(x, y), "labels": [v["label"] for v in have]})
    key = lambda r: (r["spearman"] is not None, r["spearman"] or 0.0, r["r2"] or 0.0)  # noqa: E731
    return sorted(rows, key=key, reverse=True)


def format_or_na(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def rates_table(rows: list[dict], downstream: str = "auc") -> str:
    """The rates as a markdown table: Δdownstream per +0.01 of the metric, R², Spearman ρ, versions used."""
    from moon_cli.eval.report import COLUMNS

    lines = [f"| intermediate metric | Δ{downstream.upper()} per +0.01 | R² | Spearman ρ | versions |",
             "|---|---|---|---|---|"]
    for r in rows:
        per_point = None if r["slope"] is None else r["slope"] * 0.01
        lines.append(f"| {COLUMNS[r['metric']]} | {format_or_na(per_point, '+.5f')} | "
                     f"{format_or_na(r['r2'], '.2f')} | {format_or_na(r['spearman'], '+.2f')} | {r['versions']} |")
    return "\n".join(lines) + "\n"
