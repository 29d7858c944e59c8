"""Validation of every frame before it reaches the store.

Checks are vectorised (a 1.5M-row panel validates in about a second) and each failure raises
a `DataError` naming the file, ticker and row of the first offending row, with a count of
the rest. Frames carry two bookkeeping columns from their importer: `_source` (the file) and
`_row` (1-based row in that file, after the header); they are dropped before storage.

Policy for bars whose range contradicts itself (high < low, or open/close outside
[low, high]): real vendor files have them (the 494-stock panel has 11 bars with a misplaced
decimal point in `high`, e.g. AVB 2012-11-19 high 11.696, low 110.64). The close is the most
checked number of a bar, so by default such a bar keeps its close and loses open/high/low
(becoming close-only), and the import reports each one; `strict=True` rejects the import
instead. Every other problem (missing columns, unparseable dates, non-numeric, NaN or
non-positive prices, negative volume, duplicate (ticker, date)) always rejects the import.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Annotated, NamedTuple

import numpy as np
import pandas as pd
from pydantic import AfterValidator

from synthpm.data.errors import ConfigError, DataError

PRICE_FIELDS = ("open", "high", "low", "close")
# A float32 source rounds open/close a hair outside [low, high]; that is not a bad bar.
RANGE_TOLERANCE = 1e-6

# The rules for what identifies a row, in one place (docs/usage.md, "Validation")
TICKER = r"[A-Z0-9][A-Z0-9.\-]{0,14}"
TICKER_RULE = "upper-case letters, digits, '.' and '-', starting with a letter or digit, 1-15 long"
FIRST_DATE = pd.Timestamp("1900-01-01")
# Numeric bounds: wide enough for any real share (Berkshire A, a split-adjusted 1980s penny),
# narrow enough that a typo or an overflow (1e308, 1e-320) is caught before returns are.
PRICE_BOUNDS = (1e-6, 1e9)
MAX_VOLUME = 1e13  # shares a day; the busiest days on record trade a few 1e9
MAX_SHARES = 1e12  # shares in one insider transaction

COLUMN_ALIASES = {
    "symbol": "ticker",
    "timestamp": "date",
    "datetime": "date",
    "vol": "volume",
}


def normalise_columns(
    df: pd.DataFrame, required: Iterable[str], source: str, aliases: dict[str, str] | None = None
) -> pd.DataFrame:
    """Lower-case, strip and alias headers; raise naming any required column that is missing."""
    aliases = {**COLUMN_ALIASES, **(aliases or {})}
    names = [str(col).strip().lower().replace(" ", "_") for col in df.columns]
    names = [aliases.get(name, name) for name in names]
    twice = [name for i, name in enumerate(names) if name in names[:i]]
    if twice:
        same = [str(c) for c, name in zip(df.columns, names, strict=True) if name == twice[0]]
        raise DataError(f"columns {same} all mean {twice[0]!r}: keep one", source=source)
    df = df.set_axis(names, axis=1)
    missing = [c for c in required if c not in df.columns]
    if missing:
        found = [c for c in df.columns if not c.startswith("_")]
        hints = []
        for col in missing:
            close = difflib.get_close_matches(col, found, n=1, cutoff=0.6)
            hints.append(f"{col!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise DataError(f"missing column(s) {', '.join(hints)}; found {found}", source=source)
    return df


def _location(df: pd.DataFrame, mask: np.ndarray | pd.Series) -> dict:
    """Where the first row under `mask` came from, and how many rows the mask holds."""
    mask = np.asarray(mask, dtype=bool)
    first = int(np.flatnonzero(mask)[0])
    row = df.iloc[first]
    return {
        "source": str(row["_source"]) if "_source" in df else None,
        "ticker": str(row["ticker"]) if "ticker" in df and pd.notna(row["ticker"]) else None,
        "row": int(row["_row"]) if "_row" in df else None,
        "count": int(mask.sum()),
    }


def fail_where(df: pd.DataFrame, mask, problem: str, column: str | None = None) -> None:
    """Raise a DataError at the first row under `mask`, if any."""
    if np.asarray(mask, dtype=bool).any():
        raise DataError(problem, column=column, **_location(df, mask))


def parse_dates(df: pd.DataFrame, column: str = "date") -> pd.Series:
    """Column parsed to day precision; unparseable or empty values raise."""
    raw = df[column]
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed = raw
    else:
        text = raw.astype("string").str.strip()
        parsed = pd.to_datetime(text, errors="coerce", format="mixed")
        bad = parsed.isna().to_numpy()
        if bad.any():
            first = text[bad].iloc[0]
            fail_where(df, bad, f"unparseable date {first!r}", column)
    fail_where(df, parsed.isna(), "missing date", column)
    return parsed.dt.tz_localize(None) if parsed.dt.tz is not None else parsed.dt.normalize()


def parse_numbers(df: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """Columns coerced to float; a value that is present but not a number raises."""
    out = df.copy()
    for col in columns:
        if col not in out:
            out[col] = np.nan
            continue
        raw = out[col]
        if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
            out[col] = raw.astype("float64")
            continue
        text = raw.astype("string").str.strip()
        empty = text.isna() | (text == "") | text.str.lower().isin(["nan", "null", "none"])
        number = pd.to_numeric(text.where(~empty), errors="coerce")
        bad = (number.isna() & ~empty).to_numpy()
        if bad.any():
            fail_where(df, bad, f"non-numeric value {text[bad].iloc[0]!r}", col)
        out[col] = number.astype("float64")
    return out


def check_tickers(df: pd.DataFrame) -> pd.Series:
    """Tickers upper-cased and stripped; an empty one, or one outside `TICKER` (a typo, a
    pasted sentence, "AA PL;DROP"), raises naming it."""
    tickers = df["ticker"].astype("string").str.strip().str.upper()
    fail_where(df, tickers.isna() | (tickers == ""), "missing ticker", "ticker")
    odd = ~tickers.str.fullmatch(TICKER).astype(bool).to_numpy()
    if odd.any():
        fail_where(df, odd, f"ticker {tickers[odd].iloc[0]!r} is not a ticker: {TICKER_RULE}",
                   "ticker")  # fmt: skip
    return tickers.astype(object)


def check_dates(df: pd.DataFrame, dates: pd.Series, column: str = "date") -> None:
    """A price's date must lie in 1900 .. today: anything else is a typo or a wrong format."""
    early = (dates < FIRST_DATE).to_numpy()
    fail_where(df, early, f"date {dates[early].min().date() if early.any() else ''} is "
               f"before {FIRST_DATE.date()}", column)  # fmt: skip
    late = (dates > pd.Timestamp.today().normalize()).to_numpy()
    fail_where(df, late, f"date {dates[late].max().date() if late.any() else ''} is in the "
               "future: a price is known only once its day has closed", column)  # fmt: skip


def iso_date(value: str) -> str:
    """A date option or setting (`--start`, `--date`): a calendar date pandas can hold, else
    a ValueError naming it (pydantic and typer turn it into a one-line error)."""
    try:
        day = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        day = pd.NaT
    if pd.isna(day) or not FIRST_DATE <= day <= pd.Timestamp("2262-04-11"):  # pandas' last
        raise ValueError(f"{value!r} is not a date (YYYY-MM-DD, from {FIRST_DATE.date()})")
    return value


# A date in a config or a CLI option, checked where it is given (see `iso_date`)
IsoDate = Annotated[str, AfterValidator(iso_date)]


def date_option(value: str, name: str = "--date") -> str:
    """`iso_date` for a required option, which typer passes on unchecked (a plain `str`)."""
    try:
        return iso_date(value)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


class Validated(NamedTuple):
    """A checked price frame, and the warnings about the bars it repaired."""

    prices: pd.DataFrame
    warnings: list[str]


def validate_prices(df: pd.DataFrame, *, strict: bool = False) -> Validated:
    """A long price frame checked and cleaned for the `prices` table.

    Returns the frame (sorted by ticker, date) and warnings about repaired bars.
    """
    df = df.reset_index(drop=True)
    df["ticker"] = check_tickers(df)
    df["date"] = parse_dates(df)
    check_dates(df, df["date"])
    df = parse_numbers(df, [*PRICE_FIELDS, "volume"])
    fail_where(df, df["close"].isna(), "missing close price", "close")
    for col in PRICE_FIELDS:
        values = df[col].to_numpy()
        fail_where(df, ~np.isfinite(values) & ~np.isnan(values), f"infinite {col} price", col)
        fail_where(df, values <= 0, f"non-positive {col} price {_first(df, col, values <= 0)}", col)
        odd = (values < PRICE_BOUNDS[0]) | (values > PRICE_BOUNDS[1])
        fail_where(df, odd, f"implausible {col} price {_first(df, col, odd)}: outside "
                   f"{PRICE_BOUNDS[0]:g} .. {PRICE_BOUNDS[1]:g}", col)  # fmt: skip
    volume = df["volume"].to_numpy()
    fail_where(df, volume < 0, "negative volume", "volume")
    fail_where(df, ~np.isfinite(volume) & ~np.isnan(volume), "infinite volume", "volume")
    huge = volume > MAX_VOLUME
    fail_where(df, huge, f"implausible volume {_first(df, 'volume', huge)}: above {MAX_VOLUME:g}",
               "volume")  # fmt: skip
    dup = df.duplicated(["ticker", "date"], keep=False).to_numpy()
    if dup.any():
        first = df[dup].iloc[0]
        rows = (
            df.loc[
                dup
                & (df["ticker"] == first["ticker"]).to_numpy()
                & (df["date"] == first["date"]).to_numpy(),
                "_row",
            ].tolist()
            if "_row" in df
            else []
        )
        fail_where(
            df, dup, f"duplicate (ticker, date) {first['date'].date()} at rows {rows}", "date"
        )
    df, warnings = _repair_inconsistent_bars(df, strict=strict)
    prices = df.sort_values(["ticker", "date"], kind="stable").reset_index(drop=True)
    return Validated(prices, warnings)


def _first(df: pd.DataFrame, col: str, mask: np.ndarray) -> str:
    return repr(float(df[col].to_numpy()[mask][0])) if mask.any() else ""


def _repair_inconsistent_bars(df: pd.DataFrame, *, strict: bool) -> Validated:
    o, h, lo, c = (df[k].to_numpy() for k in PRICE_FIELDS)
    tol_h = np.where(np.isnan(h), np.inf, h * (1 + RANGE_TOLERANCE))
    tol_l = np.where(np.isnan(lo), -np.inf, lo * (1 - RANGE_TOLERANCE))
    with np.errstate(invalid="ignore"):
        bad = (h < lo) | (c > tol_h) | (c < tol_l) | (o > tol_h) | (o < tol_l)
    if not bad.any():
        return Validated(df, [])
    if strict:
        loc = _location(df, bad)
        i = int(np.flatnonzero(bad)[0])
        problem = "high < low" if h[i] < lo[i] else "open or close outside [low, high]"
        raise DataError(
            f"inconsistent bar: {problem} "
            f"(open {o[i]:.6g}, high {h[i]:.6g}, low {lo[i]:.6g}, close {c[i]:.6g})",
            column="high",
            **loc,
        )
    shown = df.loc[bad].head(5)
    examples = "; ".join(
        f"{r['ticker']} {r['date'].date()}" + (f" (row {r['_row']})" if "_row" in r else "")
        for r in shown.to_dict("records")
    )
    sources = sorted(df.loc[bad, "_source"].astype(str).unique()) if "_source" in df else []
    df = df.copy()
    df.loc[bad, ["open", "high", "low"]] = np.nan
    warning = (
        f"{int(bad.sum())} bar(s) with high < low or open/close outside [low, high] kept as "
        f"close-only (open/high/low dropped) in {', '.join(sources[:3]) or 'input'}: {examples}"
        + (" ..." if bad.sum() > 5 else "")
    )
    return Validated(df, [warning])
