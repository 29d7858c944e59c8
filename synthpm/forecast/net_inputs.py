"""What the nets read: panel rows as standardised float32 features, and for the LSTM the
trailing window of each row's ticker.

`Preprocessor` learns its statistics from the training rows only (point in time).
`WindowIndex` finds, for a row (t, ticker), the `window` rows of the same ticker up to and
including t without building every window; a ticker's first rows are left-padded.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from synthpm.data.errors import ConfigError


def index_level(index: pd.MultiIndex, name: str, pos: int) -> pd.Index:
    """The level `name` of the panel's index, or the one at `pos` when levels are unnamed."""
    return index.get_level_values(name if name in index.names else pos)


def take_features(panel: pd.DataFrame, rows: np.ndarray, columns: list[str]) -> np.ndarray:
    """float32 values of `columns` at panel positions `rows` (copies only those cells)."""
    col_idx = panel.columns.get_indexer(columns)
    if (col_idx < 0).any():
        missing = [c for c, i in zip(columns, col_idx, strict=True) if i < 0]
        raise ConfigError(f"the panel lacks feature column(s) the model was fitted on: {missing}")
    return panel.iloc[rows, col_idx].to_numpy(dtype=np.float32)


class Preprocessor:
    """Per feature: clip at the training 1st/99th percentiles, impute the training median,
    standardise by the mean and std of the clipped training values.

    Clipping first makes mean/std robust to the fat tails of financial features (as robust as
    median/IQR, and unlike the IQR it never degenerates to 0 on a mostly-constant feature such
    as an event flag). Non-finite training values are ignored; at predict, +-inf is clipped to
    the bounds and NaN becomes the median. Columns with no finite training value are dropped.
    """

    STATS = ("lo", "hi", "median", "mean", "std")

    def __init__(self, columns: list[str], stats: dict[str, np.ndarray]) -> None:
        self.columns = columns
        self.stats = stats

    @classmethod
    def fit(cls, values: np.ndarray, columns: list[str]) -> Preprocessor:
        kept: list[str] = []
        rows: list[tuple[float, ...]] = []
        for j, name in enumerate(columns):
            col = values[:, j].astype(np.float64)
            col = col[np.isfinite(col)]
            if col.size == 0:
                continue
            lo, hi = np.quantile(col, [0.01, 0.99])
            clipped = np.clip(col, lo, hi)
            std = float(clipped.std())
            kept.append(name)
            rows.append((lo, hi, float(np.median(col)), float(clipped.mean()), std or 1.0))
        if not kept:
            raise ConfigError("no feature column has a finite value on the training rows")
        arr = np.asarray(rows, dtype=np.float64).T
        return cls(kept, dict(zip(cls.STATS, arr, strict=True)))

    def transform(self, values: np.ndarray) -> np.ndarray:
        s = {k: v.astype(np.float32) for k, v in self.stats.items()}
        x = np.clip(values.astype(np.float32, copy=False), s["lo"], s["hi"])
        x = np.where(np.isnan(x), s["median"], x)
        x -= s["mean"]
        x /= s["std"]
        return x

    def state(self) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v.copy()) for k, v in self.stats.items()}

    @classmethod
    def from_state(cls, columns: list[str], state: dict[str, torch.Tensor]) -> Preprocessor:
        return cls(columns, {k: state[k].numpy().astype(np.float64) for k in cls.STATS})


class WindowIndex:
    """Index arithmetic for trailing windows of the same ticker, without building them all.

    `order` lists panel positions in (ticker, date) order, `rank[p]` is position p's place in
    `order`, and `depth[p]` the number of earlier rows of p's ticker. The window of p is then
    `order[rank[p] - window + 1 .. rank[p]]`, with the slots before the ticker's first row
    (offset < -depth[p]) marked -1.
    """

    def __init__(self, index: pd.MultiIndex, window: int) -> None:
        n = len(index)
        dates = pd.factorize(index_level(index, "date", 0), sort=True)[0]
        tickers = pd.factorize(index_level(index, "ticker", 1))[0]
        self.window = window
        self.order = np.lexsort((dates, tickers))
        self.rank = np.empty(n, dtype=np.intp)
        self.rank[self.order] = np.arange(n)
        sorted_t = tickers[self.order]
        first = np.r_[True, sorted_t[1:] != sorted_t[:-1]] if n else np.zeros(0, bool)
        starts = np.maximum.accumulate(np.where(first, np.arange(n), 0))
        self.depth = np.empty(n, dtype=np.intp)
        self.depth[self.order] = np.arange(n) - starts

    def positions(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), window) panel positions of each row's window, oldest first; -1 = pad."""
        offsets = np.arange(-(self.window - 1), 1)
        k = self.rank[rows][:, None] + offsets
        valid = self.depth[rows][:, None] + offsets >= 0
        return np.where(valid, self.order[np.where(valid, k, 0)], -1)

    def needed(self, rows: np.ndarray) -> np.ndarray:
        """Sorted panel positions that the windows of `rows` read (a difference array)."""
        n = len(self.order)
        hi = self.rank[rows]
        lo = hi - np.minimum(self.depth[rows], self.window - 1)
        diff = np.bincount(lo, minlength=n + 1) - np.bincount(hi + 1, minlength=n + 1)
        return np.sort(self.order[np.cumsum(diff[:n]) > 0])
