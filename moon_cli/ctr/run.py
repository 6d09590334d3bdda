"""Train and test the CTR model for every (embeddings variant × behaviour-sequence length × seed)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from moon_cli.ctr.data import CTRData
from moon_cli.ctr.metrics import auc, gauc
from moon_cli.ctr.model import CTRModel

ID_ONLY = "ids only"


@dataclass
class CTRConfig:
    seq_lens: list[int] = field(default_factory=lambda: [2, 8, 32])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    epochs: int = 4
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-5
    id_dim: int = 16
    bins: int = 10
    att_dim: int = 32
    test_fraction: float = 0.25


def content_table(data: CTRData, ids: list[str], vectors: np.ndarray) -> tuple[torch.Tensor, int]:
    """(n_items + 1, D) frozen embeddings in item-index order (row 0 and missing items = zeros); missing count."""
    row = {item: i for i, item in enumerate(ids)}
    table = np.zeros((len(data.item_ids) + 1, vectors.shape[1]), dtype=np.float32)
    missing = 0
    for k, item in enumerate(data.item_ids):
        if item in row:
            table[k + 1] = vectors[row[item]]
        else:
            missing += 1
    return torch.from_numpy(table), missing


def _tensors(split: dict, seq_len: int) -> list[torch.Tensor]:
    return [torch.from_numpy(split["user"]), torch.from_numpy(split["item"]), torch.from_numpy(split["category"]),
            torch.from_numpy(np.ascontiguousarray(split["history"][:, -seq_len:]))]


def fit_and_score(data: CTRData, content: torch.Tensor | None, seq_len: int, seed: int, cfg: CTRConfig) -> dict:
    """Train on the train split, score the test split: AUC, GAUC and the seconds it took."""
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    train, test = data.split(False), data.split(True)
    model = CTRModel(data.n_users, len(data.item_ids), data.n_categories, torch.from_numpy(data.item_category),
                     content, cfg.id_dim, cfg.bins, cfg.att_dim)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    features, labels = _tensors(train, seq_len), torch.from_numpy(train["label"])
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(cfg.epochs):
        for idx in torch.randperm(len(labels), generator=gen).split(cfg.batch_size):
            logits = model(*(f[idx] for f in features))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    test_features = _tensors(test, seq_len)
    with torch.no_grad():
        scores = torch.cat([model(*(f[idx] for f in test_features))
                            for idx in torch.arange(len(test["label"])).split(4096)]).numpy()
    return {"auc": auc(test["label"], scores), "gauc": gauc(test["user_ids"], test["label"], scores),
            "seconds": time.perf_counter() - t0}


def summarise(runs: list[dict]) -> list[dict]:
    """Mean ± std over seeds per (variant, seq_len), with the gain over the ID-only model at the same length."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["variant"], r["seq_len"]), []).append(r)
    base = {L: np.mean([r["auc"] for r in rs]) for (v, L), rs in groups.items() if v == ID_ONLY}
    base_g = {L: np.mean([r["gauc"] for r in rs]) for (v, L), rs in groups.items() if v == ID_ONLY}
    rows = []
    for (variant, L), rs in groups.items():
        a, g = np.array([r["auc"] for r in rs]), np.array([r["gauc"] for r in rs])
        rows.append({"variant": variant, "seq_len": L, "seeds": len(rs),
                     "auc": float(a.mean()), "auc_std": float(a.std()), "gauc": float(g.mean()),
                     "gauc_std": float(g.std()),
                     "delta_auc": float(a.mean() - base[L]) if L in base else None,
                     "delta_gauc": float(g.mean() - base_g[L]) if L in base_g else None})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| variant | seq len | AUC | GAUC | ΔAUC vs ids | ΔGAUC vs ids |", "|---|---|---|---|---|---|"]
    fmt = lambda v: "—" if v is None else f"{v:+.4f}"  # noqa: E731
    for r in rows:
        lines.append(f"| {r['variant']} | {r['seq_len']} | {r['auc']:.4f} ± {r['auc_std']:.4f} | "
                     f"{r['gauc']:.4f} ± {r['gauc_std']:.4f} | {fmt(r['delta_auc'])} | {fmt(r['delta_gauc'])} |")
    return "\n".join(lines) + "\n"
