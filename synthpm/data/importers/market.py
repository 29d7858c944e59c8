"""Market context series: the index or the VIX, from a CSV or Parquet file.

`series="vix"` reads CBOE's `DATE, OPEN, HIGH, LOW, CLOSE` file (the close is the VIX) or a
`date, vix` file; `series="index"` reads `date, close` with optional open/high/low, or a long
panel filtered by `ticker` (e.g. SPY as the index of a stock panel). Only the given series'
columns are written: importing the VIX leaves the stored index (and its kind) alone, and
replaces a realised-volatility proxy on the dates it covers.

An index is stored with its kind, `market.index_kind`: "total_return" when `total_return`
is set (dividends reinvested, e.g. SPY's adjusted close), else "price" (an index level).
Dividend-adjusted stock returns are compared fairly only with a total-return benchmark.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from synthpm.data.errors import DataError, SynthpmError
from synthpm.data.importers.tabular import read_table
from synthpm.data.store import ImportBatch
from synthpm.data.validate import normalise_columns, validate_prices


def import_market(
    path: Path,
    *,
    series: Literal["vix", "index"] = "index",
    ticker: str | None = None,
    total_return: bool = False,
) -> ImportBatch:
    if total_return and series != "index":
        raise SynthpmError("total_return applies to an index (--series index), not the VIX")
    df = read_table(path)
    df = normalise_columns(df, ["date"], str(path))
    if ticker is not None:
        if "ticker" not in df:
            raise DataError("--ticker given but the file has no ticker column", source=str(path))
        df = df[df["ticker"].astype("string").str.upper() == ticker.upper()]
        if df.empty:
            raise DataError(f"no rows for ticker {ticker.upper()}", source=str(path))
    if series == "vix" and "vix" in df and "close" not in df:
        df = df.rename(columns={"vix": "close"})
    df = normalise_columns(df, ["close"], str(path))
    label = f"file:{path.name}" + (f":{ticker.upper()}" if ticker else "")
    df = df.assign(ticker=(ticker or series).upper())
    # The VIX is used by its close only; its early OHLC columns are known to be inconsistent.
    fields = ("close",) if series == "vix" else ("open", "high", "low", "close")
    keep = [c for c in ("ticker", "date", *fields, "_source", "_row") if c in df]
    bars, warnings = validate_prices(df[keep])
    if series == "vix":
        frame = bars[["date"]].assign(vix=bars["close"], vix_source=label)
    else:
        frame = bars[["date"]].assign(
            index_open=bars["open"],
            index_high=bars["high"],
            index_low=bars["low"],
            index_close=bars["close"],
            index_source=label,
            index_kind="total_return" if total_return else "price",
        )
    return ImportBatch(f"market:{series}", str(path), {"market": frame}, warnings)
