"""Index membership: which tickers are in the universe on which dates.

A universe is a frame of spells `ticker, start, end` (as `Store.universe()` returns it):
the ticker is a member on date t when start <= t < end, and `end` is NaT while it still is.
An empty frame means no universe was imported, and then every ticker is a member on every
date: callers rely on this, so a store without membership data behaves as before.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def membership(
    universe: pd.DataFrame | None, dates: pd.DatetimeIndex, tickers: pd.Index
) -> np.ndarray:
    """A bool array (len(dates) x len(tickers)): True where the ticker is a member on the date.

    `dates` must be sorted ascending. Tickers without a spell are never members (unless the
    universe is empty: then all are). Overlapping spells of one ticker are tolerated.
    """
    dates, tickers = pd.DatetimeIndex(dates), pd.Index(tickers)
    if universe is None or universe.empty:
        return np.ones((len(dates), len(tickers)), dtype=bool)
    if not dates.is_monotonic_increasing:
        raise ValueError("membership: dates must be sorted ascending")
    col = tickers.get_indexer(universe["ticker"])
    known = col >= 0
    col = col[known]
    # One unit for all three: sources differ (s from Parquet, us from DuckDB, ns from pandas).
    day = _ns(dates)
    starts, ends = _ns(universe["start"])[known], _ns(universe["end"])[known]
    # Each spell adds +1 at its first date row and -1 after its last; the running sum over
    # dates is the number of spells covering a cell. Vectorised over spells, no date loop.
    first = np.searchsorted(day, starts, side="left")
    after = np.where(np.isnat(ends), len(day), np.searchsorted(day, ends, side="left"))
    marks = np.zeros((len(dates) + 1, len(tickers)), dtype=np.int32)
    np.add.at(marks, (first, col), 1)
    np.add.at(marks, (after, col), -1)
    return np.cumsum(marks[:-1], axis=0) > 0


def coverage(universe: pd.DataFrame, prices: pd.DataFrame) -> dict:
    """How much of the universe has prices, on the price calendar (the dates in `prices`).

    Returns `member_days` (member x calendar-day cells), `priced_member_days` (of those, the
    ones with a price row), `share` (their ratio, None without member-days), `by_year` (the
    same three per calendar year) and `unpriced_tickers`: tickers that are members on some
    calendar day but have no price row at all. `prices` needs `ticker` and `date` only.
    """
    # Factorised first: millions of price rows hold a few thousand dates and tickers, so
    # the lookups run on the distinct values only.
    date_codes, days = pd.factorize(pd.to_datetime(prices["date"]))
    ticker_codes, symbols = pd.factorize(prices["ticker"])
    calendar = pd.DatetimeIndex(days).sort_values()
    # With no universe everything is a member, so the priced tickers are the universe.
    names = pd.Index(symbols if universe.empty else universe["ticker"].unique()).sort_values()
    members = membership(universe, calendar, names)
    row = calendar.get_indexer(days)[date_codes]
    col = names.get_indexer(symbols)[ticker_codes]
    priced = np.zeros_like(members)
    priced[row[col >= 0], col[col >= 0]] = True
    per_day = pd.DataFrame(
        {"member_days": members.sum(axis=1), "priced_member_days": (members & priced).sum(axis=1)},
        index=calendar,
    )
    by_year = per_day.groupby(calendar.year).sum()
    unpriced = members.any(axis=0) & ~priced.any(axis=0)
    return {
        **_figures(int(per_day["member_days"].sum()), int(per_day["priced_member_days"].sum())),
        "by_year": {
            int(year): _figures(int(member_days), int(priced_days))
            for year, member_days, priced_days in by_year.itertuples()
        },
        "unpriced_tickers": names[unpriced].tolist(),
    }


def _ns(values) -> np.ndarray:
    return pd.to_datetime(pd.Series(values)).to_numpy().astype("datetime64[ns]")


def _figures(member_days: int, priced: int) -> dict:
    share = round(priced / member_days, 4) if member_days else None
    return {"member_days": member_days, "priced_member_days": priced, "share": share}
