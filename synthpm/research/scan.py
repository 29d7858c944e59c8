"""Find tickers that move independently of a start ticker: a greedy correlation scan.

    least_correlated(inputs.closes(), "AAPL", n=10, as_of="2017-12-29")

Choices, stated once:
- Point in time: only closes dated on or before `as_of` are read, so a scan run for a past
  date gives the answer it would have given then (changing later prices changes nothing).
- Daily simple returns over the last `window` trading days ending at `as_of` (the index of
  `closes` is the calendar; a day a ticker has no close gives it no return that day, and
  the day after a gap gives none either, so a gap is never one long "daily" return).
- Pairwise Pearson correlation of those returns, each pair over the days both have
  (`DataFrame.corr(min_periods=min_overlap)`); a pair with fewer common days has no
  correlation, and a candidate without a correlation to every ticker already selected is
  left out of that step and the later ones (it cannot be judged against the set).
- Greedy: each step adds the candidate whose mean absolute correlation to the tickers already
  selected is lowest, ties broken by ticker name. Absolute, because a strongly negatively
  correlated ticker is as redundant for diversification scoring as a positively correlated
  one. The result is a good, not an optimal, set: the exact problem is combinatorial.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from synthpm.data.errors import ConfigError, did_you_mean

COLUMNS = ["step", "ticker", "mean_abs_corr", "max_abs_corr"]


class _Window(NamedTuple):
    """The daily returns of the scan's window, and the date it ends on."""

    returns: pd.DataFrame  # dates x tickers, NaN where a ticker has no return
    as_of: pd.Timestamp


def _window_returns(
    closes: pd.DataFrame, as_of: pd.Timestamp | None, window: int | None
) -> _Window:
    """Daily simple returns of the `window` trading days ending at `as_of` (inclusive)."""
    closes = closes.set_axis(pd.DatetimeIndex(pd.to_datetime(closes.index))).sort_index()
    if as_of is None:
        as_of = closes.index[-1]
    closes = closes.loc[:as_of]
    if closes.empty:
        raise ConfigError(f"no closes on or before as_of={as_of.date()}")
    if window is not None:
        closes = closes.iloc[-(window + 1) :]  # window + 1 closes give `window` returns
    returns = closes.astype(np.float64).pct_change(fill_method=None).iloc[1:]
    return _Window(returns.replace([np.inf, -np.inf], np.nan), as_of)  # a zero close: no return


def least_correlated(
    closes: pd.DataFrame,
    start: str,
    n: int = 10,
    as_of: str | pd.Timestamp | None = None,
    window: int | None = 252,
    min_overlap: int = 60,
) -> pd.DataFrame:
    """Greedily pick `n` tickers (the start ticker included) with low mutual correlation.

    `closes` is wide: a date index and one column of closes per ticker (for example
    `PanelInputs.closes()`). `window` is the number of daily returns read (None: all history
    up to `as_of`); `min_overlap` the fewest common return days a pair needs to count.

    Returns one row per selected ticker in selection order: `step` (0 for `start`),
    `ticker`, and `mean_abs_corr` / `max_abs_corr`, the mean and largest absolute correlation
    to the tickers selected before it (NaN for the start). Fewer than `n` rows when fewer
    tickers qualify. `attrs` hold `as_of`, `window_start` and `window_days`.
    """
    if n < 1:
        raise ConfigError(f"n must be at least 1 (the start ticker counts), got {n}")
    if window is not None and window < 2:
        raise ConfigError(f"window must be at least 2 trading days or None, got {window}")
    if min_overlap < 2:
        raise ConfigError(f"min_overlap must be at least 2 days, got {min_overlap}")
    if start not in closes.columns:
        names = [str(c) for c in closes.columns]
        raise ConfigError(
            f"unknown start ticker {start!r}{did_you_mean(str(start), names)}: "
            f"the closes hold {len(names)} tickers"
        )
    when = None if as_of is None else pd.Timestamp(as_of)
    returns, when = _window_returns(closes, when, window)
    have = returns.notna().sum()
    if have[start] < min_overlap:
        first = returns.index[0].date() if len(returns) else when.date()
        raise ConfigError(
            f"start ticker {start!r} has {int(have[start])} daily returns between {first} and "
            f"{when.date()}; min_overlap={min_overlap} are needed to correlate it"
        )
    # Tickers that cannot reach min_overlap with anyone are dropped before the O(N^2) corr.
    returns = returns.loc[:, have >= min_overlap]
    corr = returns.corr(min_periods=min_overlap).abs()
    names = np.asarray(corr.columns)
    matrix = corr.to_numpy()

    selected = [int(np.flatnonzero(names == start)[0])]
    rows: list[tuple[int, str, float, float]] = [(0, start, np.nan, np.nan)]
    total = np.zeros(len(names))
    worst = np.zeros(len(names))
    open_ = np.ones(len(names), dtype=bool)
    open_[selected[0]] = False
    order = np.argsort(names.astype(str), kind="stable")  # tie-break by name
    while len(rows) < n:
        last = matrix[:, selected[-1]]
        open_ &= ~np.isnan(last)  # no correlation to a selected ticker: cannot be judged
        total += np.nan_to_num(last)
        worst = np.maximum(worst, np.nan_to_num(last))
        if not open_[order].any():
            break
        mean = total / len(selected)
        candidates = order[open_[order]]
        pick = int(candidates[np.argmin(mean[candidates])])  # first minimum: by name
        rows.append((len(rows), str(names[pick]), float(mean[pick]), float(worst[pick])))
        selected.append(pick)
        open_[pick] = False
    out = pd.DataFrame(rows, columns=COLUMNS)
    out.attrs.update(
        as_of=when,
        window_start=returns.index[0] if len(returns) else when,
        window_days=len(returns),
    )
    return out
