"""Point-in-time universe (membership spells), dividend-adjusted panels, total-return index."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from synthpm.data.errors import DataError
from synthpm.data.importers import read_source, run_import
from synthpm.data.store import Store
from synthpm.data.universe import coverage, membership
from tests.conftest import file_digest, price_panel

SPELLS = "ticker,start,end\naaa,2020-01-02,2020-01-08\nBRK.B,2020-01-06,\nAAA,2020-01-08,\n"


def spell_file(tmp_path, text: str, name: str = "members.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------ importer errors
@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("ticker,start\nAAA,2020-01-02\n", r"members.csv: missing column\(s\) 'end'"),
        ("ticker,start,end\nAAA,2020-01-02,\nBBB,2020-13-45,\n", r"row 2, column 'start'.*"),
        ("ticker,start,end\nAAA,2020-01-02,someday\n", r"row 1, column 'end'.*'someday'"),
        ("ticker,start,end\nAAA,2020-01-02,2020-01-02\n", r"row 1, column 'end': end <= start"),
        (
            "ticker,start,end\nAAA,2020-01-02,2020-02-01\nAAA,2020-01-20,2020-03-01\n",
            r"ticker AAA, row 2, column 'start': spell overlaps the spell "
            r"2020-01-02 \.\. 2020-02-01 at row 1",
        ),
        (  # an open spell overlaps any later spell of its ticker
            "ticker,start,end\nAAA,2021-01-04,2021-02-01\nAAA,2020-01-02,\n",
            r"ticker AAA, row 1, .*overlaps the spell 2020-01-02 \.\. open at row 2",
        ),
    ],
    ids=["missing_column", "bad_start", "bad_end", "end_not_after_start", "overlap", "open"],
)
def test_universe_errors_name_file_and_row(tmp_path, text, match):
    with pytest.raises(DataError, match=match) as caught:
        read_source("universe", spell_file(tmp_path, text))
    assert "members.csv" in str(caught.value)


def test_touching_spells_are_not_an_overlap(tmp_path):
    text = "ticker,start,end\nFB,2013-12-23,2022-06-09\nFB,2022-06-09,\n"
    spells = read_source("universe", spell_file(tmp_path, text)).frames["universe"]
    assert len(spells) == 2


def test_failed_universe_import_writes_nothing(store, tmp_path):
    run_import(store, "universe", spell_file(tmp_path, SPELLS))
    before = file_digest(store.path)
    bad = spell_file(tmp_path, "ticker,start,end\nCCC,2020-01-02,\nDDD,2020-02-02,2020-01-01\n")
    with pytest.raises(DataError, match="end <= start"):
        run_import(store, "universe", bad)
    assert file_digest(store.path) == before


# ------------------------------------------------------------------ store round trip
def test_universe_round_trip_through_the_store(store, tmp_path):
    report = run_import(store, "universe", spell_file(tmp_path, SPELLS))
    assert report.rows == {"universe": 3} and report.notes["open_spells"] == 2
    spells = store.universe()
    assert spells["ticker"].tolist() == ["AAA", "AAA", "BRK.B"]  # upper-cased, dot kept
    assert spells["start"].dt.strftime("%Y-%m-%d").tolist() == [
        "2020-01-02",
        "2020-01-08",
        "2020-01-06",
    ]
    assert (
        spells["end"].iloc[0] == pd.Timestamp("2020-01-08") and spells["end"].iloc[1:].isna().all()
    )
    assert pd.api.types.is_datetime64_any_dtype(spells["end"])
    assert store.universe("brk.b")["ticker"].tolist() == ["BRK.B"]
    info = store.info()["universe"]
    assert (info["rows"], info["tickers"], info["open_spells"]) == (3, 2, 2)

    # a corrected file replaces a ticker's spells as a set: the old 2020-01-08 spell would
    # otherwise overlap the new one
    run_import(store, "universe", spell_file(tmp_path, "ticker,start,end\nAAA,2020-01-03,\n"))
    assert store.universe("AAA")["start"].tolist() == [pd.Timestamp("2020-01-03")]
    assert store.universe("BRK.B")["ticker"].tolist() == ["BRK.B"]


def test_store_without_a_universe_reads_an_empty_one(priced_store):
    spells = priced_store.universe()
    assert spells.empty and list(spells.columns) == ["ticker", "start", "end"]
    dates = pd.bdate_range("2020-01-01", periods=3)
    assert membership(spells, dates, pd.Index(["AAA"])).all()


def test_a_store_from_before_the_new_column_and_table_opens_and_migrates(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))  # the market table as it was, no universe table
    con.execute(
        "CREATE TABLE market (date DATE, index_open DOUBLE, index_high DOUBLE, "
        "index_low DOUBLE, index_close DOUBLE, vix DOUBLE, index_source VARCHAR, "
        "vix_source VARCHAR)"
    )
    con.execute("INSERT INTO market VALUES ('2021-01-04', 1, 1, 1, 1, 20, 'old', 'old')")
    con.close()
    old = Store(path)
    assert old.universe().empty
    assert old.market()["index_kind"].isna().all()
    assert "universe" not in old.info()
    run_import(old, "universe", spell_file(tmp_path, SPELLS))
    assert len(old.universe()) == 3
    assert old.market()["index_close"].tolist() == [1.0]  # old rows kept, kind unknown
    assert old.info()["market"]["index_kinds"] == {"unknown": 1}


# ------------------------------------------------------------------ spells from prices
def test_spells_from_prices_split_at_gaps_longer_than_ten_days(tmp_path):
    days = pd.bdate_range("2020-01-01", "2020-03-31")
    gap = (days >= pd.Timestamp("2020-02-01")) & (days < pd.Timestamp("2020-02-15"))
    rows = [("AAA", d) for d in days[~gap]]
    rows += [("BBB", d) for d in days[:5]]
    rows += [("aaa", pd.Timestamp("2020-04-06"))]  # a 6-day gap (weekend + holiday): no split
    panel = pd.DataFrame(rows, columns=["ticker", "date"]).assign(close=10.0)
    path = tmp_path / "survivors.parquet"
    panel.sample(frac=1, random_state=0).to_parquet(path)  # order must not matter
    spells = read_source("universe", path, from_prices=True).frames["universe"]
    as_text = [
        (t, s.strftime("%Y-%m-%d"), e.strftime("%Y-%m-%d"))
        for t, s, e in spells.itertuples(index=False)
    ]
    assert as_text == [
        ("AAA", "2020-01-01", "2020-02-01"),  # last row Fri 01-31, end the day after
        ("AAA", "2020-02-17", "2020-04-07"),  # 17 days apart: a new spell
        ("BBB", "2020-01-01", "2020-01-08"),
    ]


# ------------------------------------------------------------------ membership, coverage
def hand_made_spells() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ticker": ["AAA", "AAA", "BBB", "ZZZ"],
            "start": pd.to_datetime(["2020-01-02", "2020-01-08", "2020-01-03", "2019-01-01"]),
            "end": pd.to_datetime(["2020-01-06", None, "2020-01-07", "2019-06-01"]),
        }
    )


def test_membership_is_start_inclusive_end_exclusive():
    dates = pd.bdate_range("2020-01-01", "2020-01-09")  # W Th F M Tu W Th
    grid = membership(hand_made_spells(), dates, pd.Index(["AAA", "BBB", "CCC"]))
    assert grid.shape == (7, 3) and grid.dtype == bool
    assert grid[:, 0].tolist() == [False, True, True, False, False, True, True]  # out on 01-06
    assert grid[:, 1].tolist() == [False, False, True, True, False, False, False]  # out on 01-07
    assert not grid[:, 2].any()  # no spell: never a member


def test_membership_of_an_empty_universe_is_everything():
    dates = pd.bdate_range("2020-01-01", periods=4)
    empty = pd.DataFrame(columns=["ticker", "start", "end"])
    assert membership(empty, dates, pd.Index(["A", "B"])).all()
    assert membership(empty, dates, pd.Index(["A", "B"])).shape == (4, 2)


def test_membership_needs_sorted_dates():
    with pytest.raises(ValueError, match="sorted"):
        membership(hand_made_spells(), pd.DatetimeIndex(["2020-01-03", "2020-01-02"]), ["AAA"])


def test_coverage_counts_member_days_on_the_price_calendar():
    prices = pd.DataFrame(
        {
            "ticker": ["AAA", "AAA", "AAA", "BBB", "OTH"],
            "date": pd.to_datetime(
                ["2020-01-02", "2020-01-03", "2020-01-08", "2020-01-03", "2020-01-06"]
            ),
        }
    )
    spells = pd.concat(
        [
            hand_made_spells(),
            pd.DataFrame(
                {"ticker": ["CCC"], "start": [pd.Timestamp("2019-12-30")], "end": [pd.NaT]}
            ),
        ]
    )
    # calendar 01-02, 01-03, 01-06, 01-08: AAA member on 01-02, 01-03, 01-08 (3, all priced);
    # BBB on 01-03, 01-06 (2, one priced); CCC on all 4 (none priced); ZZZ never; OTH no spell
    out = coverage(spells, prices)
    assert (out["member_days"], out["priced_member_days"], out["share"]) == (9, 4, 0.4444)
    assert out["by_year"] == {2020: {"member_days": 9, "priced_member_days": 4, "share": 0.4444}}
    assert out["unpriced_tickers"] == ["CCC"]


# ------------------------------------------------------------------ dividend-adjusted panels
def test_adj_close_panel_stores_dividend_adjusted_bars(tmp_path):
    panel = price_panel(("AAA", "BBB"), days=10)
    factor = np.linspace(0.8, 1.0, len(panel))  # older rows carry more dividends back
    panel["adj_close"] = panel["close"] * factor
    panel.loc[3, "adj_close"] = np.nan  # missing: the row keeps its close
    path = tmp_path / "yahoo.parquet"
    panel.rename(columns={"adj_close": "Adj Close"}).to_parquet(path)
    batch = read_source("parquet", path)
    stored = batch.frames["prices"]
    assert batch.warnings == [] and batch.notes["rows_without_adj_close"] == 1
    scale = np.where(np.isnan(panel["adj_close"]), 1.0, factor)
    for col in ("open", "high", "low", "close"):
        np.testing.assert_allclose(stored[col], panel[col] * scale, rtol=1e-12)
    # volume as a split adjusts it: the stored traded value carries no later dividend
    np.testing.assert_allclose(stored["volume"], panel["volume"] / scale, rtol=1e-12)
    np.testing.assert_allclose(
        stored["close"] * stored["volume"], panel["close"] * panel["volume"], rtol=1e-12
    )
    assert (stored["low"] <= stored[["open", "close"]].min(axis=1)).all()
    assert (stored["high"] >= stored[["open", "close"]].max(axis=1)).all()


# ------------------------------------------------------------------ total-return index
def test_total_return_index_keeps_its_kind_through_a_vix_import(store, tmp_path):
    dates = pd.bdate_range("2021-01-01", periods=5)
    etfs = pd.DataFrame({"date": dates, "ticker": "SPY", "close": np.arange(100.0, 105.0)})
    etfs = pd.concat([etfs, etfs.assign(ticker="QQQ")])
    etfs.to_parquet(tmp_path / "etfs.parquet")
    run_import(
        store, "market", tmp_path / "etfs.parquet", series="index", ticker="SPY", total_return=True
    )
    # the VIX on four of the index's dates and one later date without an index
    vix = pd.DataFrame({"date": dates[1:].append(pd.DatetimeIndex(["2021-01-08"])), "vix": 20.0})
    vix.to_csv(tmp_path / "vix.csv", index=False)
    run_import(store, "market", tmp_path / "vix.csv", series="vix")
    market = store.market()
    assert market["index_kind"].tolist()[:5] == ["total_return"] * 5
    assert pd.isna(market["index_kind"].iloc[5]) and pd.isna(market["index_close"].iloc[5])
    assert market["vix"].notna().sum() == 5
    assert store.info()["market"]["index_kinds"] == {"total_return": 5}

    run_import(store, "market", tmp_path / "etfs.parquet", series="index", ticker="QQQ")
    assert set(store.market()["index_kind"].dropna()) == {"price"}  # the default


def test_total_return_is_for_an_index_only(tmp_path):
    pd.DataFrame({"date": ["2021-01-04"], "vix": [20.0]}).to_csv(tmp_path / "v.csv", index=False)
    with pytest.raises(Exception, match="total_return applies to an index"):
        read_source("market", tmp_path / "v.csv", series="vix", total_return=True)


# ------------------------------------------------------------------ command line
def test_cli_imports_a_universe_from_prices_and_info_shows_coverage(tmp_path):
    from typer.testing import CliRunner

    from synthpm.cli import app

    panel = price_panel(("AAA", "BBB"), days=20)
    members = panel[(panel["ticker"] == "AAA") | (panel.index % 20 < 10)]  # BBB: first 10 days
    panel.to_csv(tmp_path / "panel.csv", index=False)
    members[["ticker", "date"]].to_parquet(tmp_path / "members.parquet")
    store = str(tmp_path / "s.duckdb")
    runner = CliRunner()
    for args in (
        ["csv", str(tmp_path / "panel.csv")],
        ["universe", str(tmp_path / "members.parquet"), "--from-prices"],
    ):
        result = runner.invoke(app, ["data", "import", *args, "--store", store])
        assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["data", "info", "--store", store])
    assert result.exit_code == 0, result.output
    assert "universe coverage: 30 of 30 member-days have prices (100.0%)" in result.output
    wrong = runner.invoke(
        app,
        ["data", "import", "csv", str(tmp_path / "panel.csv"), "--store", store, "--from-prices"],
    )
    assert wrong.exit_code != 0
