"""The embedded default data: real, offline, installed with pip.

- Prices: daily adjusted closes of 20 large US stocks, 1990-01-02 .. 2022-12-28
  (`skfolio.datasets.load_sp500_dataset`). Close-only: no open, high, low or volume.
- Index: the S&P 500 close over the same dates (`skfolio.datasets.load_sp500_index`), with
  open/high/low from `arch.data.sp500` where it covers them (1999-2018; its close matches
  skfolio's to 1e-8). It is the price index, without dividends: `market.index_kind` "price".
- VIX: CBOE's VIX from `arch.data.vix` where it covers (2014-01-03 .. 2019-01-03); on every
  other date a proxy, the index's realised volatility (21 trading days, annualised, in VIX
  points), labelled `proxy:realised_vol_21d` in `market.vix_source`. The proxy at t uses
  returns up to t only. It reads lower than the VIX on average (the VIX carries a variance
  risk premium); it is not rescaled, because fitting a scale on 2014-2019 would leak those
  years into earlier rows.
- Sectors: GICS sectors of the 20 tickers, written as data in this package.
"""

from __future__ import annotations

from importlib.resources import files

import numpy as np
import pandas as pd

from synthpm.data.importers.tabular import with_provenance
from synthpm.data.store import ImportBatch
from synthpm.data.validate import validate_prices

PROXY_WINDOW = 21
VIX_PROXY = f"proxy:realised_vol_{PROXY_WINDOW}d"


def realised_vol_proxy(index_close: pd.Series, window: int = PROXY_WINDOW) -> pd.Series:
    """Annualised realised volatility of daily log returns in VIX points, trailing only."""
    returns = np.log(index_close).diff()
    return returns.rolling(window, min_periods=window).std(ddof=1) * np.sqrt(252) * 100


def embedded_batch() -> ImportBatch:
    from arch.data import sp500 as arch_sp500
    from arch.data import vix as arch_vix
    from skfolio.datasets import load_sp500_dataset, load_sp500_index

    wide = load_sp500_dataset()
    long = (
        wide.rename_axis("date")
        .reset_index()
        .melt(id_vars="date", var_name="ticker", value_name="close")
    )
    long = with_provenance(long.dropna(subset=["close"]), "skfolio:sp500_dataset")
    prices, warnings = validate_prices(long)

    index = load_sp500_index()["SP500"].rename("index_close").rename_axis("date")
    # The S&P 500 *price* index: without dividends, so it lags a total-return benchmark.
    market = index.to_frame().assign(index_source="skfolio:SP500", index_kind="price")
    ohlc = arch_sp500.load()[["Open", "High", "Low"]]
    ohlc.columns = ["index_open", "index_high", "index_low"]
    market = market.join(ohlc, how="left")
    market.loc[market["index_open"].notna(), "index_source"] = "skfolio:SP500+arch:sp500_ohlc"

    real_vix = arch_vix.load()["vix"]
    market["vix"] = real_vix.reindex(market.index)
    market["vix_source"] = np.where(market["vix"].notna(), "arch:vix", VIX_PROXY)
    proxy = realised_vol_proxy(market["index_close"])
    market["vix"] = market["vix"].fillna(proxy)
    market.loc[market["vix"].isna(), "vix_source"] = None
    market = market.reset_index()

    sectors = pd.read_csv(files("synthpm.data").joinpath("embedded_sectors.csv").open())
    return ImportBatch(
        "embedded",
        "skfolio.datasets + arch.data + synthpm sectors",
        {"prices": prices, "market": market, "sectors": sectors},
        warnings,
    )
