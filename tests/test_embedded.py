"""The embedded default data: real, offline, labelled."""

from __future__ import annotations

import pandas as pd
import pytest

from synthpm.data.embedded import VIX_PROXY
from synthpm.data.importers import init_embedded


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    from synthpm.data.store import Store

    store = Store(tmp_path_factory.mktemp("embedded") / "store.duckdb")
    report = init_embedded(store)
    return store, report


def test_twenty_stocks_1990_to_2022_with_sectors(embedded):
    store, report = embedded
    assert report.rows == {"prices": 166_260, "market": 8_313, "sectors": 20}
    info = store.info()["prices"]
    assert (info["tickers"], info["first"], info["last"]) == (20, "1990-01-02", "2022-12-28")
    assert set(store.sectors()["ticker"]) == set(store.tickers())
    prices = store.prices("AAPL", "2020-01-02", "2020-01-02")
    assert prices["open"].isna().all() and prices["close"].iloc[0] > 0  # close-only source


def test_vix_is_real_where_covered_and_a_labelled_proxy_elsewhere(embedded):
    store, _ = embedded
    market = store.market()
    real = market[market["vix_source"] == "arch:vix"]
    assert real["date"].min() == pd.Timestamp("2014-01-03")
    assert real["date"].max() == pd.Timestamp("2019-01-03")
    proxy = market[market["vix_source"] == VIX_PROXY]
    assert len(proxy) > 6000 and proxy["vix"].between(1, 150).all()
    assert market.loc[market["vix"].isna(), "vix_source"].isna().all()  # first 21 days
    ohlc = market.dropna(subset=["index_open"])
    assert ohlc["date"].min().year == 1999 and ohlc["date"].max().year == 2018
    assert (ohlc["index_high"] >= ohlc["index_low"]).all()


def test_init_twice_is_idempotent(embedded):
    store, _ = embedded
    init_embedded(store)
    assert store.info()["prices"]["rows"] == 166_260
