"""Forward-looking targets (labels): the only code that reads the future, on purpose.

For a row (t, ticker) and horizon h trading days on the panel's calendar:
- `excess_h` = close[t+h]/close[t] - 1 minus the same for the benchmark (close to close; the
  benchmark is the one the features use, see `features.market.benchmark_close`);
- `vol_h`   = annualised sample std (ddof=1) of the daily log returns over (t, t+n],
  n = max(h, 5): one day has no dispersion, so the 1d horizon reads the coming week;
- `mdd_h`   = the largest peak-to-trough fall of close over [t, t+h] (<= 0);
- `event_g` = 1 when a filing of event group g becomes known in (t, t+21 trading days],
  for tickers with any filing known by t (no coverage, no label).

A row's targets read closes up to t + `lookahead()` trading days, which is what the
walk-forward purge keeps out of every training set.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from synthpm.columns import event_target_col, target_col
from synthpm.features.filings import EVENT_GROUPS, GROUP_OF, day_numbers
from synthpm.features.market import benchmark_close
from synthpm.features.panel import PanelInputs
from synthpm.forecast.base import HORIZONS

EVENT_HORIZON = 21  # trading days: "next period" for event probabilities
MIN_VOL_DAYS = 5


def lookahead(horizons: dict[str, int]) -> int:
    """Trading days after t that some target of row t reads."""
    return max(*horizons.values(), MIN_VOL_DAYS, EVENT_HORIZON)


def _max_drawdown_ahead(close: np.ndarray, h: int, chunk: int = 64) -> np.ndarray:
    """Max drawdown of each column over rows [t, t+h]; NaN where the window leaves the data."""
    n_dates, n_tickers = close.shape
    out = np.full_like(close, np.nan)
    if h >= n_dates:
        return out
    for lo in range(0, n_tickers, chunk):
        windows = sliding_window_view(close[:, lo : lo + chunk], h + 1, axis=0)
        peak = np.maximum.accumulate(windows, axis=-1)
        out[: n_dates - h, lo : lo + chunk] = (windows / peak - 1.0).min(axis=-1)
    return out


def _long(wide: pd.DataFrame | np.ndarray, like: pd.DataFrame, index: pd.MultiIndex) -> np.ndarray:
    """A wide (date x ticker) array as values aligned with the panel's (date, ticker) rows."""
    frame = pd.DataFrame(wide, index=like.index, columns=like.columns)
    dates = like.index.get_indexer(index.get_level_values("date"))
    tickers = like.columns.get_indexer(index.get_level_values("ticker"))
    return frame.to_numpy()[dates, tickers]


def return_targets(
    inputs: PanelInputs, index: pd.MultiIndex, horizons: dict[str, int] = HORIZONS
) -> pd.DataFrame:
    """`excess_h`, `vol_h`, `mdd_h` for every panel row (NaN where the future is missing)."""
    closes = inputs.closes()
    bench, _ = benchmark_close(inputs.market, closes)
    c = closes.to_numpy(dtype=np.float64)
    b = bench.to_numpy(dtype=np.float64)[:, None]
    log_ret = pd.DataFrame(np.log(c[1:] / c[:-1]))
    out: dict[str, np.ndarray] = {}
    for name, h in horizons.items():
        fwd = np.full_like(c, np.nan)
        fwd[:-h] = c[h:] / c[:-h] - 1.0 - (b[h:] / b[:-h] - 1.0)
        out[target_col("excess", name)] = _long(fwd, closes, index)
        n = max(h, MIN_VOL_DAYS)
        vol = np.full_like(c, np.nan)
        # log_ret row j is the return from day j to j+1, so rows t..t+n-1 are (t, t+n].
        rolled = log_ret.rolling(n).std().to_numpy() * np.sqrt(252.0)
        if n <= len(rolled):
            vol[: len(rolled) - n + 1] = rolled[n - 1 :]
        out[target_col("vol", name)] = _long(vol, closes, index)
        out[target_col("mdd", name)] = _long(_max_drawdown_ahead(c, h), closes, index)
    return pd.DataFrame(out, index=index)


def event_targets(inputs: PanelInputs, index: pd.MultiIndex) -> pd.DataFrame:
    """`event_g` per event group: a filing of g known within the next `EVENT_HORIZON` days."""
    calendar = inputs.closes().index
    cal_days = day_numbers(calendar)
    ahead = np.full(len(cal_days), np.iinfo(np.int64).max)
    ahead[: -EVENT_HORIZON or None] = cal_days[EVENT_HORIZON:]
    row_pos = calendar.get_indexer(index.get_level_values("date"))
    row_days, end_days = cal_days[row_pos], ahead[row_pos]
    complete = end_days != np.iinfo(np.int64).max
    tickers = index.get_level_values("ticker").to_numpy()
    out = {event_target_col(g): np.full(len(index), np.nan) for g in EVENT_GROUPS}
    if inputs.events.empty:
        return pd.DataFrame(out, index=index)
    events = inputs.events.assign(
        group=inputs.events["event_type"].map(GROUP_OF),
        day=day_numbers(inputs.events["date_known"]),
    )
    for ticker, filings in events.groupby("ticker"):
        rows = np.flatnonzero(tickers == ticker)
        first = filings["day"].min()
        covered = rows[(row_days[rows] >= first) & complete[rows]]
        for group in EVENT_GROUPS:
            known = np.sort(filings.loc[filings["group"] == group, "day"].to_numpy())
            hits = np.searchsorted(known, end_days[covered], "right") - np.searchsorted(
                known, row_days[covered], "right"
            )
            out[event_target_col(group)][covered] = (hits > 0).astype(np.float64)
    return pd.DataFrame(out, index=index)
