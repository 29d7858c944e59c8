"""Index membership (the point-in-time universe): spells `ticker, start, end`.

Two sources:
- a spell file (CSV or Parquet) with `ticker, start, end`: ISO dates, `end` exclusive and
  empty while the ticker is still a member (e.g. the S&P 500 membership file). Tickers are
  upper-cased; class shares keep their dot (BRK.B).
- `from_prices=True`: a price panel whose rows *are* the membership (a survivorship-free
  panel holding each ticker only while an index fund held it). Each ticker gets one spell
  from its first date to the day after its last, split where consecutive rows are more
  than `max_gap_days` calendar days apart (a ticker that left and rejoined).

Rejected, naming the file and row: missing columns, unparseable dates, end <= start, and
overlapping spells of one ticker (touching spells, one ending the day the next starts, are
fine). The store replaces a ticker's stored spells as a set (see `Store.write`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from synthpm.data.importers.panel import python_dates
from synthpm.data.importers.tabular import read_table
from synthpm.data.store import ImportBatch
from synthpm.data.validate import check_tickers, fail_where, normalise_columns, parse_dates

SPELL = ["ticker", "start", "end"]
# Trading days are at most 7 calendar days apart in these years (2001-09-10 .. 09-17, after
# 9/11), so a longer gap between a ticker's rows means it left the index and came back.
MAX_GAP_DAYS = 10


def import_universe(
    path: Path, *, from_prices: bool = False, max_gap_days: int = MAX_GAP_DAYS
) -> ImportBatch:
    """A validated batch for the `universe` table; nothing is written."""
    df = read_table(path)
    if from_prices:
        spells, notes = spells_from_prices(df, str(path), max_gap_days), {"price_rows": len(df)}
    else:
        spells, notes = _read_spells(df, str(path)), {}
    notes["open_spells"] = int(spells["end"].isna().sum())
    kind = "universe:prices" if from_prices else "universe"
    return ImportBatch(kind, str(path), {"universe": spells}, notes=notes)


def _read_spells(df: pd.DataFrame, source: str) -> pd.DataFrame:
    df = normalise_columns(df, SPELL, source)
    df["ticker"] = check_tickers(df)
    df["start"] = parse_dates(df, "start")
    df["end"] = _optional_dates(df, "end")
    fail_where(df, (df["end"] <= df["start"]).to_numpy(), "end <= start (end is exclusive)", "end")
    _check_overlaps(df)
    return df[SPELL].sort_values(["ticker", "start"]).reset_index(drop=True)


def _optional_dates(df: pd.DataFrame, column: str) -> pd.Series:
    """Dates where given; empty cells are NaT (an open spell), anything else unparseable raises."""
    raw = df[column]
    if pd.api.types.is_datetime64_any_dtype(raw):
        return raw.dt.tz_localize(None) if raw.dt.tz is not None else raw.dt.normalize()
    text = raw.astype("string").str.strip()
    empty = (text.isna() | (text == "")).to_numpy()
    parsed = pd.to_datetime(text.where(~empty), errors="coerce", format="mixed")
    bad = parsed.isna().to_numpy() & ~empty
    if bad.any():
        fail_where(df, bad, f"unparseable date {text[bad].iloc[0]!r}", column)
    return parsed.dt.normalize()


def _check_overlaps(df: pd.DataFrame) -> None:
    """Raise at the first (in file order) spell that starts before its predecessor ends."""
    order = df.sort_values(["ticker", "start"], kind="stable")
    same = order["ticker"].eq(order["ticker"].shift())
    prev_end = order["end"].shift()
    # an open predecessor (NaT end) overlaps everything after its start
    overlap = same & (prev_end.isna() | (order["start"] < prev_end))
    if not overlap.any():
        return
    mask = overlap.reindex(df.index).to_numpy()
    first = df.index[mask][0]
    prev = order.index[order.index.get_loc(first) - 1]
    other = f"row {df.at[prev, '_row']}" if "_row" in df else "another spell"
    span = _span(df.at[prev, "start"], df.at[prev, "end"])
    fail_where(df, mask, f"spell overlaps the spell {span} at {other} of the same ticker", "start")


def _span(start: pd.Timestamp, end: pd.Timestamp) -> str:
    return f"{start.date()} .. {'open' if pd.isna(end) else end.date()}"


def spells_from_prices(
    df: pd.DataFrame, source: str, max_gap_days: int = MAX_GAP_DAYS
) -> pd.DataFrame:
    """Spells from a long price frame's (ticker, date) rows: one per run of rows whose
    consecutive dates are at most `max_gap_days` apart; `end` is the day after the run's last
    date (exclusive, like a spell file)."""
    df = normalise_columns(df, ["ticker", "date"], source)
    df = df[[c for c in ("ticker", "date", "_source", "_row") if c in df]].reset_index(drop=True)
    df["ticker"] = check_tickers(df)
    df["date"] = parse_dates(df.assign(date=python_dates(df["date"])))
    rows = df[["ticker", "date"]].drop_duplicates().sort_values(["ticker", "date"])
    ticker, date = rows["ticker"].to_numpy(), rows["date"].to_numpy()
    new = np.ones(len(rows), dtype=bool)
    new[1:] = (ticker[1:] != ticker[:-1]) | (
        (date[1:] - date[:-1]) > np.timedelta64(max_gap_days, "D")
    )
    spell = np.cumsum(new) - 1
    spells = rows.groupby(spell).agg(
        ticker=("ticker", "first"), start=("date", "min"), end=("date", "max")
    )
    spells["end"] += pd.Timedelta(days=1)
    return spells[SPELL].reset_index(drop=True)
