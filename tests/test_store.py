"""The store: all-or-nothing imports, idempotent re-imports, point-in-time reads."""

from __future__ import annotations

import pandas as pd
import pytest

from synthpm.data import store as store_module
from synthpm.data.errors import DataError, SynthpmError, UnknownTickerError
from synthpm.data.importers import read_source, run_import
from synthpm.data.store import Store
from tests.conftest import file_digest, price_panel


def test_failed_import_leaves_the_store_byte_for_byte(priced_store, tmp_path):
    before = file_digest(priced_store.path)
    bad = price_panel(("NEW",))
    bad.loc[len(bad) - 1, "close"] = -5.0  # the last row is bad: nothing before it may land
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)
    with pytest.raises(DataError):
        run_import(priced_store, "csv", path)
    assert file_digest(priced_store.path) == before
    assert "NEW" not in priced_store.tickers()


def test_crash_midway_through_a_write_changes_nothing(priced_store, tmp_path, monkeypatch):
    """A failure after some rows were written (here: in the second table) rolls back all."""
    before = file_digest(priced_store.path)
    batch = read_source("csv", _panel_file(tmp_path, ("NEW",)))
    batch.frames["sectors"] = pd.DataFrame({"ticker": ["NEW"], "sector": ["Energy"]})
    real = store_module._replace_by_key
    calls = []

    def explode(con, table):
        calls.append(table.name)
        real(con, table)
        if len(calls) == 2:
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(store_module, "_replace_by_key", explode)
    with pytest.raises(RuntimeError, match="simulated crash"):
        priced_store.write(batch)
    assert calls == ["prices", "sectors"]
    assert file_digest(priced_store.path) == before
    assert not list(tmp_path.glob("*.importing*"))
    assert "NEW" not in priced_store.tickers()


def test_reimport_is_idempotent_and_replaces_by_key(store, tmp_path):
    path = _panel_file(tmp_path, ("AAA",))
    run_import(store, "csv", path)
    run_import(store, "csv", path)
    assert len(store.prices()) == 30
    changed = price_panel(("AAA",))
    changed["close"] *= 2
    changed[["open", "high", "low"]] *= 2
    changed.to_csv(path, index=False)
    run_import(store, "csv", path)
    assert store.prices("AAA")["close"].to_numpy() == pytest.approx(changed["close"].to_numpy())


def test_price_reads_filter_and_reject_unknown_tickers(priced_store):
    got = priced_store.prices(["aaa", "BBB"], start="2020-01-06", end="2020-01-10")
    assert set(got["ticker"]) == {"AAA", "BBB"}
    assert got["date"].min() == pd.Timestamp("2020-01-06")
    assert got["date"].max() == pd.Timestamp("2020-01-10")
    assert list(got.columns) == ["ticker", "date", "open", "high", "low", "close", "volume"]
    wide = priced_store.closes(end="2020-01-03")
    assert list(wide.columns) == ["AAA", "BBB", "CCC"] and len(wide) == 3
    with pytest.raises(UnknownTickerError, match="unknown ticker\\(s\\) NOPE"):
        priced_store.prices(["AAA", "NOPE"])


def test_missing_store_says_how_to_make_one(tmp_path):
    with pytest.raises(SynthpmError, match="synthpm data init"):
        Store(tmp_path / "absent.duckdb").prices()


def test_insider_reads_are_as_of_date_known(priced_store, tmp_path):
    rows = pd.DataFrame(
        {
            "ticker": ["AAA", "AAA"],
            "owner": ["X", "Y"],
            "code": ["P", "S"],
            "transaction_date": ["2020-01-02", "2020-01-09"],
            "shares": [5, 7],
            "price": [10, 11],
        }
    )
    path = tmp_path / "f4.csv"
    rows.to_csv(path, index=False)
    run_import(priced_store, "form4", path)
    # Thu 2020-01-02 + 2 business days = Mon 2020-01-06; Thu 01-09 -> Mon 01-13.
    assert priced_store.insider("AAA", as_of="2020-01-03").empty
    assert priced_store.insider("AAA", as_of="2020-01-06")["owner"].tolist() == ["X"]
    assert priced_store.insider("AAA", as_of="2020-01-13")["owner"].tolist() == ["X", "Y"]


def test_vix_import_keeps_the_index_and_replaces_the_proxy(store, tmp_path):
    dates = pd.bdate_range("2021-01-01", periods=5)
    index = pd.DataFrame({"date": dates, "close": [100, 101, 102, 103, 104]})
    (tmp_path / "index.csv").write_text(index.to_csv(index=False))
    run_import(store, "market", tmp_path / "index.csv", series="index")
    vix = pd.DataFrame(
        {
            "DATE": dates[2:].strftime("%m/%d/%Y"),
            "OPEN": 20,
            "HIGH": 19,
            "LOW": 21,
            "CLOSE": [20.0, 21.0, 22.0],
        }
    )  # CBOE layout; OHLC ignored
    (tmp_path / "vix.csv").write_text(vix.to_csv(index=False))
    run_import(store, "market", tmp_path / "vix.csv", series="vix")
    market = store.market()
    assert market["index_close"].tolist() == [100, 101, 102, 103, 104]
    assert market["vix"].isna().tolist() == [True, True, False, False, False]
    assert set(market["vix_source"].dropna()) == {"file:vix.csv"}
    assert set(market["index_source"]) == {"file:index.csv"}


def test_index_from_a_ticker_of_a_long_panel(store, tmp_path):
    path = _panel_file(tmp_path, ("SPY", "AAA"))
    run_import(store, "market", path, series="index", ticker="spy")
    market = store.market()
    assert len(market) == 30 and market["index_source"].iloc[0] == "file:panel.csv:SPY"


def test_info_counts_rows_tickers_and_spans(priced_store):
    info = priced_store.info()
    assert info["prices"] == {"rows": 90, "tickers": 3, "first": "2020-01-01", "last": "2020-02-11"}
    assert info["events"]["rows"] == 0


def _panel_file(tmp_path, tickers):
    path = tmp_path / "panel.csv"
    price_panel(tickers).to_csv(path, index=False)
    return path
