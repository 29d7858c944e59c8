"""Price panels from CSV or Parquet.

Two shapes, recognised from the headers (case-insensitive):
- long: `ticker, date, open, high, low, close, volume` (open/high/low/volume optional);
- wide: `date` plus one close column per ticker (missing values are "not listed yet",
  not errors, and are dropped).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from synthpm.data.errors import DataError
from synthpm.data.importers.tabular import read_table
from synthpm.data.store import ImportBatch
from synthpm.data.validate import normalise_columns, validate_prices


def import_panel(path: Path, *, strict: bool = False, kind: str = "panel") -> ImportBatch:
    df = read_table(path)
    headers = {str(c).strip().lower() for c in df.columns}
    if headers & {"ticker", "symbol"}:
        df = normalise_columns(df, ["ticker", "date", "close"], str(path))
        df = df[
            [
                c
                for c in (
                    "ticker",
                    "date",
                    "open",
                    "high",
                    "low",
                    "close",
                    "volume",
                    "_source",
                    "_row",
                )
                if c in df.columns
            ]
        ]
    elif "date" in headers:
        df = _wide_to_long(df, str(path))
    else:
        raise DataError(
            "neither a long panel (ticker, date, ..., close) nor a wide panel (date plus one "
            f"close column per ticker); headers are {_headers(df)}",
            source=str(path),
        )
    prices, warnings = validate_prices(df, strict=strict)
    return ImportBatch(kind, str(path), {"prices": prices}, warnings)


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
