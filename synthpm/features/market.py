"""Market context per date, and the cross-sectional features computed within one date.

The index is the store's `market.index_close` (the S&P 500 in the embedded data, or what was
imported with `--series index`). With no index stored, an equal-weight index of the universe
stands in, compounded from the mean daily return of the tickers priced that day; the panel
records which in `index_source`. VIX is the stored column (real or the labelled proxy);
`vix_is_proxy` tells the model which it is reading.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import talib

from synthpm.features.technical import ANNUAL, shift

MARKET_FEATURES: dict[str, str] = {
    "idx_ret_21d": "market",
    "idx_ret_63d": "market",
    "idx_dist_sma_200": "market",
    "idx_vol_21d": "market",
    "vix": "market",
    "vix_z_252": "market",
    "vix_is_proxy": "market",
}
CROSS_SECTION_FEATURES: dict[str, str] = {
    "sector_rel_21d": "sector",
    "sector_rel_63d": "sector",
    "cs_rank_ret_21d": "cross_section",
    "cs_rank_ret_63d": "cross_section",
    "cs_rank_vol_21d": "cross_section",
    "cs_rank_dist_52w_high": "cross_section",
}


class BenchmarkClose(NamedTuple):
    """The benchmark's close on the panel's calendar, and where it comes from."""

    close: pd.Series
    source: str  # "index" (the stored index) or "equal_weight_universe" (the stand-in)


def benchmark_close(market: pd.DataFrame, closes: pd.DataFrame) -> BenchmarkClose:
    """The benchmark's close on the panel's calendar (`closes.index`), and its source.

    A date the index lacks takes the last known value (never a later one).
    """
    calendar = closes.index
    if not market.empty and market["index_close"].notna().any():
        series = market.set_index("date")["index_close"].dropna()
        close = series.reindex(series.index.union(calendar)).ffill().reindex(calendar)
        return BenchmarkClose(close, "index")
    daily = closes.pct_change(fill_method=None).mean(axis=1).fillna(0.0)
    return BenchmarkClose((1.0 + daily).cumprod().rename("index_close"), "equal_weight_universe")


class BenchmarkKind(NamedTuple):
    """What the stored index measures, and what it is (its stored source, or the stand-in)."""

    kind: str  # "total_return", "price" or "universe"
    source: str


def benchmark_kind(market: pd.DataFrame) -> BenchmarkKind:
    """(kind, source) of the stored index: kind "total_return" (dividends reinvested) or
    "price" (an index level without dividends; also any index stored without a kind), or
    "universe" for the equal-weight stand-in, whose returns are the stored closes' own."""
    if market.empty or not market["index_close"].notna().any():
        return BenchmarkKind("universe", "equal-weight universe of the stored closes")
    rows = market[market["index_close"].notna()]
    kinds = set(rows["index_kind"].dropna()) if "index_kind" in rows else set()
    sources = rows["index_source"].dropna() if "index_source" in rows else pd.Series([])
    source = str(sources.iloc[-1]) if len(sources) else "index"
    return BenchmarkKind("total_return" if kinds == {"total_return"} else "price", source)


def market_features(index_close: pd.Series, market: pd.DataFrame) -> pd.DataFrame:
    """Market context on the calendar of `index_close`: trend, volatility, VIX."""
    c = index_close.to_numpy(dtype=np.float64)
    out = pd.DataFrame(index=index_close.index)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["idx_ret_21d"] = c / shift(c, 21) - 1
        out["idx_ret_63d"] = c / shift(c, 63) - 1
        out["idx_dist_sma_200"] = c / talib.SMA(c, 200) - 1
        log_ret = np.log(c / shift(c, 1))
        out["idx_vol_21d"] = talib.STDDEV(log_ret, 21) * ANNUAL
    if market.empty:
        vix = pd.Series(np.nan, index=out.index)
        proxy = pd.Series(np.nan, index=out.index)
    else:
        m = market.set_index("date")
        vix = m["vix"].reindex(out.index)
        proxy = (
            m["vix_source"]
            .str.startswith("proxy:")
            .astype(float)
            .where(m["vix"].notna())
            .reindex(out.index)
        )
    out["vix"] = vix.to_numpy(dtype=np.float64)
    v = out["vix"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        out["vix_z_252"] = (v - talib.SMA(v, 252)) / talib.STDDEV(v, 252)
    out["vix_is_proxy"] = proxy.to_numpy(dtype=np.float64)
    return out


def cross_section_features(panel: pd.DataFrame, sectors: pd.Series) -> pd.DataFrame:
    """Features that compare a ticker with the others on the same date (no other dates)."""
    by_date = panel.groupby(level="date", sort=False)
    sector = sectors.reindex(panel.index.get_level_values("ticker")).fillna("Unknown").to_numpy()
    keys = [panel.index.get_level_values("date"), sector]
    out = pd.DataFrame(index=panel.index)
    for w in (21, 63):
        col = panel[f"ret_{w}d"]
        out[f"sector_rel_{w}d"] = col - col.groupby(keys, sort=False).transform("median")
    for name in ("ret_21d", "ret_63d", "vol_21d", "dist_52w_high"):
        out[f"cs_rank_{name}"] = by_date[name].rank(pct=True)
    return out
