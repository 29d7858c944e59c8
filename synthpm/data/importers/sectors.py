"""Sector labels: a CSV or Parquet of ticker -> sector (`Symbol`/`GICS Sector` headers too)."""

from __future__ import annotations

from pathlib import Path

from synthpm.data.importers.tabular import read_table
from synthpm.data.store import ImportBatch
from synthpm.data.validate import check_tickers, fail_where, normalise_columns

ALIASES = {"gics_sector": "sector"}


def import_sectors(path: Path) -> ImportBatch:
    df = normalise_columns(read_table(path), ["ticker", "sector"], str(path), ALIASES)
    df["ticker"] = check_tickers(df)
    sector = df["sector"].astype("string").str.strip()
    fail_where(df, sector.isna() | (sector == ""), "missing sector", "sector")
    df["sector"] = sector.astype(object)
    dup = df.duplicated("ticker", keep=False) & ~df.duplicated(["ticker", "sector"], keep=False)
    fail_where(df, dup, "ticker listed with two different sectors", "ticker")
    sectors = df[["ticker", "sector"]].drop_duplicates().reset_index(drop=True)
    return ImportBatch("sectors", str(path), {"sectors": sectors})
