"""Impressions → CTR examples: label = clicked, ID features, the user's recent clicks, a time-based split.

Every impression of a session gets the same behaviour sequence: the user's clicks *before the session
started*, most recent last, so nothing from the session itself (or the future) leaks into its features.
Index 0 is padding / unknown in every vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from moon_cli.errors import MoonError


@dataclass
class CTRData:
    user: np.ndarray  # (N,) int64, 0 = a user never seen in training
    item: np.ndarray  # (N,) int64, 1..n_items (catalogue order), 0 = not in the catalogue
    category: np.ndarray  # (N,) int64 leaf-category index of the item
    history: np.ndarray  # (N, L_max) int64 item indices of earlier clicks, right-aligned, 0 = padding
    label: np.ndarray  # (N,) float32, 1 = clicked
    is_test: np.ndarray  # (N,) bool: impression at or after the time cut
    user_ids: np.ndarray  # (N,) the raw user ids (GAUC groups)
    item_ids: list[str]  # catalogue item ids, index i + 1
    item_category: np.ndarray  # (n_items + 1,) int64 category index per item index
    n_users: int
    n_categories: int
    cut: object  # the first test timestamp
    counts: dict

    def split(self, test: bool) -> dict[str, np.ndarray]:
        rows = self.is_test if test else ~self.is_test
        return {k: getattr(self, k)[rows] for k in ("user", "item", "category", "history", "label", "user_ids")}


def build_ctr_data(behavior: pa.Table, catalog: pa.Table, max_len: int, test_fraction: float,
                   source: str = "behavior") -> CTRData:
    import polars as pl

    cat = pl.from_arrow(catalog.select(["item_id", "category_path"]))
    item_ids = cat["item_id"].to_list()
    item_index = {it: i + 1 for i, it in enumerate(item_ids)}
    leaf = [" > ".join(p or []) for p in cat["category_path"].to_list()]
    categories = {c: j + 1 for j, c in enumerate(sorted(set(leaf)))}
    item_category = np.array([0] + [categories[c] for c in leaf], dtype=np.int64)

    log = pl.from_arrow(behavior.select(["user_id", "session_id", "ts", "item_id", "event"]))
    imp = log.filter(pl.col("event") == "impression")
    if imp.height == 0:
        raise MoonError(f"{source}: no 'impression' events; a CTR model trains on impressions (label = clicked)")
    clicks = log.filter(pl.col("event") == "click")
    clicked = clicks.select("session_id", "item_id").unique().with_columns(pl.lit(1.0).alias("label"))
    imp = (imp.join(clicked, on=["session_id", "item_id"], how="left")
              .with_columns(pl.col("label").fill_null(0.0))
              .sort("ts", "session_id", "item_id"))

    # the time cut: the last ``test_fraction`` of sessions (by start time) are the test set
    starts = imp.group_by("session_id").agg(pl.col("ts").min().alias("start")).sort("start")
    cut = starts["start"][min(starts.height - 1, int(starts.height * (1 - test_fraction)))]
    imp = imp.join(starts, on="session_id").with_columns((pl.col("start") >= cut).alias("is_test"))

    for name, part in (("train", imp.filter(~pl.col("is_test"))), ("test", imp.filter(pl.col("is_test")))):
        if part["label"].n_unique() < 2:
            raise MoonError(f"{source}: the {name} split ({part.height} impressions) needs both clicked and unclicked "
                            f"impressions; give a longer log or change --test-fraction")
    known = imp.filter(~pl.col("is_test"))["user_id"].unique().sort().to_list()
    user_index = {u: i + 1 for i, u in enumerate(known)}
    n_unknown_items = int((~imp["item_id"].is_in(item_ids)).sum())

    history = _histories(clicks, imp, item_index, max_len)
    item = np.array([item_index.get(i, 0) for i in imp["item_id"].to_list()], dtype=np.int64)
    users = imp["user_id"].to_numpy()
    return CTRData(
        user=np.array([user_index.get(u, 0) for u in users], dtype=np.int64),
        item=item,
        category=item_category[item],
        history=history,
        label=imp["label"].to_numpy().astype(np.float32),
        is_test=imp["is_test"].to_numpy(),
        user_ids=users,
        item_ids=item_ids,
        item_category=item_category,
        n_users=len(known),
        n_categories=len(categories),
        cut=cut,
        counts={"impressions": imp.height, "clicks": int(imp["label"].sum()),
                "train": int((~imp["is_test"]).sum()), "test": int(imp["is_test"].sum()),
                "items not in the catalogue": n_unknown_items},
    )


def _histories(clicks, imp, item_index: dict[str, int], max_len: int) -> np.ndarray:
    """(N, max_len) right-aligned item indices of each impression's user's clicks before its session start."""
    by_user: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for (user,), group in clicks.sort("ts").group_by(["user_id"], maintain_order=True):
        by_user[user] = (group["ts"].to_numpy(), np.array([item_index.get(i, 0) for i in group["item_id"].to_list()]))
    sessions = imp.select("session_id", "user_id", "start").unique("session_id")
    rows = {}
    for sid, user, start in sessions.iter_rows():
        seq = np.zeros(max_len, dtype=np.int64)
        if user in by_user:
            times, items = by_user[user]
            before = items[: np.searchsorted(times, np.datetime64(start), side="left")]
            before = before[before > 0][-max_len:]
            if len(before):
                seq[-len(before):] = before
        rows[sid] = seq
    order = imp["session_id"].to_list()
    return np.stack([rows[s] for s in order]) if order else np.zeros((0, max_len), dtype=np.int64)

