"""Price panels from CSV or Parquet.

Two shapes, recognised from the headers (case-insensitive):
- long: `ticker, date, open, high, low, close, volume` (open/high/low/volume optional);
- wide: `date` plus one close column per ticker (missing values are "not listed yet",
  not errors, and are dropped).

Dividend adjustment. A long panel with an `adj_close` column (split- and dividend-adjusted,
beside a `close` adjusted for splits only, as Yahoo gives them) is stored with
close := adj_close and open/high/low multiplied by adj_close / close on each row, so stored
returns include dividends and every bar keeps its shape (the same factor scales all four
prices). Volume is divided by the same factor, as a split adjustment divides it, so stored
close × volume is the day's traded value as the source gave it, with no later dividend in it
(a liquidity measure must not rank a stock by dividends it pays later). A row without
adj_close keeps its close, bar and volume as given.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from synthpm.data.errors import DataError
from synthpm.data.importers.tabular import read_table
from synthpm.data.store import ImportBatch
from synthpm.data.validate import (
    PRICE_FIELDS,
    normalise_columns,
    parse_numbers,
    validate_prices,
)

LONG = ("ticker", "date", "open", "high", "low", "close", "volume", "_source", "_row")
ADJ_ALIASES = {"adjclose": "adj_close", "adjusted_close": "adj_close"}


def import_panel(path: Path, *, strict: bool = False, kind: str = "panel") -> ImportBatch:
    df = read_table(path)
    headers = {str(c).strip().lower() for c in df.columns}
    notes: dict[str, int] = {}
    # price fields name a long panel's columns: with no ticker column it is a long panel
    # whose ticker header is missing or misspelt, not a wide panel of tickers named "close"
    if headers & {"ticker", "symbol"} or headers & {*PRICE_FIELDS, "volume", "adj_close"}:
        df = normalise_columns(df, ["ticker", "date", "close"], str(path), ADJ_ALIASES)
        df["date"] = python_dates(df["date"])
        if "adj_close" in df:
            df, notes = _dividend_adjusted(df)
        df = df[[c for c in LONG if c in df.columns]]
    elif "date" in headers:
        df = _wide_to_long(df, str(path))
    else:
        raise DataError(
            "neither a long panel (ticker, date, ..., close) nor a wide panel (date plus one "
            f"close column per ticker); headers are {_headers(df)}",
            source=str(path),
        )
    prices, warnings = validate_prices(df, strict=strict)
    return ImportBatch(kind, str(path), {"prices": prices}, warnings, notes)


class _Adjusted(NamedTuple):
    """The dividend-adjusted long frame, and how many of its rows had an adj_close to use."""

    prices: pd.DataFrame
    notes: dict[str, int]  # rows_dividend_adjusted, rows_without_adj_close


def _dividend_adjusted(df: pd.DataFrame) -> _Adjusted:
    """close := adj_close, open/high/low scaled by adj_close / close (see the module doc)."""
    df = parse_numbers(df, ["open", "high", "low", "close", "adj_close", "volume"])
    close, adj = df["close"].to_numpy(), df["adj_close"].to_numpy()
    has_adj = ~np.isnan(adj)
    with np.errstate(divide="ignore", invalid="ignore"):
        # No usable close to scale from (missing or non-positive): the bar cannot be scaled,
        # so it becomes close-only at adj_close rather than mixing two adjustments.
        factor = np.where(has_adj, np.where(close > 0, adj / close, np.nan), 1.0)
    for col in ("open", "high", "low"):
        df[col] = df[col].to_numpy() * factor
    scaled = np.isfinite(factor) & (factor > 0)
    df["volume"] = df["volume"].to_numpy() / np.where(scaled, factor, 1.0)
    df["close"] = np.where(has_adj, adj, close)
    notes = {"rows_dividend_adjusted": int(has_adj.sum()), "rows_without_adj_close": 0}
    notes["rows_without_adj_close"] = len(df) - notes["rows_dividend_adjusted"]
    return _Adjusted(df, notes)


def python_dates(raw: pd.Series) -> pd.Series:
    """A Parquet date32 column (Python dates) as datetime64; any other column unchanged.

    Such columns convert far faster directly than through `parse_dates`' text parser
    (benchmarks/results/design_choices.md); anything else is left for `parse_dates`, which
    names the row of a bad value.
    """
    if raw.dtype == object and len(raw) and type(raw.iloc[0]) is date and raw.notna().all():
        try:
            return pd.to_datetime(raw)
        except (TypeError, ValueError):
            pass  # mixed contents
    return raw


def _wide_to_long(df: pd.DataFrame, source: str) -> pd.DataFrame:
    df = normalise_columns(df, ["date"], source)
    tickers = [c for c in df.columns if c not in ("date", "_source", "_row")]
    if not tickers:
        raise DataError("wide panel has a date column but no ticker columns", source=source)
    long = df.melt(
        id_vars=["date", "_source", "_row"],
        value_vars=tickers,
        var_name="ticker",
        value_name="close",
    )
    text = long["close"].astype("string").str.strip()
    return long[text.notna() & (text != "")].reset_index(drop=True)


def _headers(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if not c.startswith("_")]
