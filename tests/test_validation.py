"""One test per validation error class: each names the file, the ticker and the row."""

from __future__ import annotations

import pandas as pd
import pytest

from synthpm.data.errors import DataError
from synthpm.data.importers import read_source, run_import
from tests.conftest import price_panel


def write(tmp_path, df: pd.DataFrame, name: str = "panel.csv"):
    path = tmp_path / name
    df.to_csv(path, index=False) if name.endswith(".csv") else df.to_parquet(path)
    return path


def test_clean_panel_passes_and_headers_are_case_insensitive(tmp_path):
    df = price_panel().rename(columns=str.upper)
    batch = read_source("csv", write(tmp_path, df))
    assert len(batch.frames["prices"]) == len(df)
    assert batch.warnings == []


def test_missing_column_is_named(tmp_path):
    path = write(tmp_path, price_panel().drop(columns=["close"]))
    with pytest.raises(DataError, match=r"panel.csv.*missing column\(s\) 'close'"):
        read_source("csv", path)


def test_misnamed_column_gets_a_suggestion(tmp_path):
    path = write(tmp_path, price_panel().rename(columns={"close": "closee"}))
    with pytest.raises(DataError, match="did you mean 'closee'"):
        read_source("csv", path)


def test_non_numeric_price_names_file_ticker_row_and_column(tmp_path):
    df = price_panel().astype({"close": object})
    df.loc[33, "close"] = "12,5x"
    with pytest.raises(DataError) as info:
        read_source("csv", write(tmp_path, df))
    err = info.value
    assert (err.ticker, err.row, err.column) == ("BBB", 34, "close")
    assert "panel.csv" in str(err) and "non-numeric value '12,5x'" in str(err)


@pytest.mark.parametrize(
    ("row", "column", "value", "message"),
    [
        (5, "close", float("nan"), r"ticker AAA, row 6, column 'close': missing close price"),
        (5, "close", 0.0, r"ticker AAA, row 6, column 'close': non-positive close price 0.0"),
        (5, "close", -3.0, r"row 6, column 'close': non-positive close price -3.0"),
        (7, "open", -1.0, r"row 8, column 'open': non-positive open"),
        (2, "volume", -10, r"row 3, column 'volume': negative volume"),
        (9, "date", "2020-13-45", r"row 10, column 'date': unparseable date '2020-13-45'"),
        (1, "ticker", None, r"row 2, column 'ticker': missing ticker"),
        (3, "close", 1e308, r"row 4, column 'close': implausible close price 1e\+308"),
        (3, "low", 1e-320, r"row 4, column 'low': implausible low price"),
        (4, "volume", 1e14, r"row 5, column 'volume': implausible volume"),
        (4, "volume", float("inf"), r"row 5, column 'volume': infinite volume"),
    ],
)
def test_bad_cell_rejects_the_import_naming_file_row_and_column(
    tmp_path, row, column, value, message
):
    df = price_panel().astype({column: object})
    df.loc[row, column] = value
    with pytest.raises(DataError, match=rf"panel.csv, .*{message}"):
        read_source("csv", write(tmp_path, df))


def test_high_below_low_is_an_error_when_strict(tmp_path):
    df = price_panel()
    df.loc[40, "high"] = df.loc[40, "low"] / 10  # a misplaced decimal point, as real files have
    with pytest.raises(DataError, match=r"ticker BBB, row 41.*high < low"):
        read_source("csv", write(tmp_path, df), strict=True)


def test_high_below_low_is_kept_close_only_and_reported_by_default(tmp_path):
    df = price_panel()
    df.loc[40, "high"] = df.loc[40, "low"] / 10
    batch = read_source("csv", write(tmp_path, df))
    prices = batch.frames["prices"].set_index(["ticker", "date"])
    bar = prices.loc[("BBB", pd.Timestamp(df.loc[40, "date"]))]
    assert bar[["open", "high", "low"]].isna().all()
    assert bar["close"] == pytest.approx(df.loc[40, "close"])
    assert len(batch.warnings) == 1 and "BBB" in batch.warnings[0] and "row 41" in batch.warnings[0]


def test_close_outside_range_counts_as_inconsistent(tmp_path):
    df = price_panel()
    df.loc[3, "close"] = df.loc[3, "high"] * 1.5
    with pytest.raises(DataError, match="outside"):
        read_source("csv", write(tmp_path, df), strict=True)


def test_float32_rounding_is_not_an_inconsistent_bar(tmp_path):
    df = price_panel()
    df.loc[3, "close"] = df.loc[3, "high"] * (1 + 1e-8)
    assert read_source("csv", write(tmp_path, df), strict=True).warnings == []


def test_duplicate_ticker_date_names_both_rows(tmp_path):
    df = price_panel()
    df = pd.concat([df, df.iloc[[4]]], ignore_index=True)
    with pytest.raises(DataError, match=r"duplicate \(ticker, date\).*rows \[5, 61\]"):
        read_source("csv", write(tmp_path, df))


def test_parquet_is_validated_too(tmp_path):
    df = price_panel()
    df.loc[0, "close"] = -1.0
    with pytest.raises(DataError, match=r"panel.parquet.*row 1"):
        read_source("parquet", write(tmp_path, df, "panel.parquet"))


def test_unknown_shape_and_empty_file_are_named(tmp_path):
    with pytest.raises(DataError, match="neither a long panel"):
        read_source("csv", write(tmp_path, pd.DataFrame({"x": [1], "y": [2]})))
    empty = tmp_path / "empty.csv"
    empty.write_text("ticker,date,close\n")
    with pytest.raises(DataError, match="empty.csv.*no rows"):
        read_source("csv", empty)


def test_events_for_unpriced_tickers_warn_and_count(priced_store, tmp_path):
    insider = pd.DataFrame(
        {
            "ticker": ["AAA", "ZZZ", "ZZZ"],
            "reporting_owner": ["A", "B", "C"],
            "transaction_date": ["2020-01-06"] * 3,
            "transaction_type": ["P", "S", "S"],
            "transaction_shares": [10, 20, 30],
            "transaction_price": [1.0, 2.0, 3.0],
        }
    )
    path = tmp_path / "f4.csv"
    insider.to_csv(path, index=False)
    report = run_import(priced_store, "form4", path)
    assert report.rows["insider"] == 3
    assert any(
        "2 insider row(s) for 1 ticker(s) with no prices" in w and "ZZZ (2)" in w
        for w in report.warnings
    )


# issue 23's findings: each a named error, never a traceback, and nothing stored


def test_a_misspelt_ticker_header_is_named_not_taken_for_a_wide_panel(tmp_path):
    df = price_panel()[["ticker", "date", "close"]].rename(columns={"ticker": "tick"})
    with pytest.raises(DataError, match=r"missing column\(s\) 'ticker' \(did you mean 'tick'\?\)"):
        read_source("csv", write(tmp_path, df))


@pytest.mark.parametrize("bad", ["AA PL;DROP", "BF/B", "X" * 16, "ÄPFEL", "-AB"])
def test_a_ticker_outside_the_pattern_is_named(tmp_path, bad):
    df = price_panel()
    df.loc[5, "ticker"] = bad
    with pytest.raises(DataError, match=rf"row 6, column 'ticker': ticker {bad!r} is not a"):
        read_source("csv", write(tmp_path, df))


@pytest.mark.parametrize("ok", ["BRK.B", "BF-B", "aapl", " msft ", "7203"])
def test_real_ticker_shapes_pass(tmp_path, ok):
    df = price_panel(("AAA",))
    df["ticker"] = ok
    batch = read_source("csv", write(tmp_path, df))
    assert batch.frames["prices"]["ticker"].iloc[0] == ok.strip().upper()


@pytest.mark.parametrize(
    "day, message", [("1850-01-02", "date 1850-01-02 is before 1900-01-01"),
                     ("2999-01-04", "date 2999-01-04 is in the future")],
)  # fmt: skip
def test_an_implausible_date_is_named(priced_store, tmp_path, day, message):
    from tests.conftest import file_digest

    df = price_panel()
    df.loc[7, "date"] = day
    before = file_digest(priced_store.path)
    with pytest.raises(DataError, match=f"row 8, column 'date': {message}"):
        run_import(priced_store, "csv", write(tmp_path, df))
    assert file_digest(priced_store.path) == before


def test_an_unknown_strategy_lists_every_choice():
    from synthpm.cli.backtest import BASELINES, strategy_named
    from synthpm.data.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown strategy 'nope'") as caught:
        strategy_named("nope")
    assert all(name in str(caught.value) for name in ("lm", "benchmark", *BASELINES))


def test_two_columns_that_mean_the_same_are_named(tmp_path):
    df = price_panel().assign(Symbol="AAA")
    with pytest.raises(DataError, match=r"panel.csv: columns \['ticker', 'Symbol'\] all mean"):
        read_source("csv", write(tmp_path, df))


def test_an_edgar_ticker_outside_the_pattern_and_a_bad_layout_are_named(tmp_path):
    from tests.conftest import edgar_company, write_json

    path = write_json(tmp_path / "CIK0000000001.json", edgar_company(1, "AA PL", []))
    with pytest.raises(
        DataError, match="CIK0000000001.json, ticker AA PL, column 'ticker': ticker"
    ):
        read_source("edgar", path)
    doc = edgar_company(1, "AAA", [])
    doc["filings"] = 5
    with pytest.raises(DataError, match="`filings.recent` is not an object"):
        read_source("edgar", write_json(path, doc))


def test_a_store_path_that_is_a_folder_or_not_a_store_is_named(tmp_path):
    from synthpm.data.errors import ConfigError
    from synthpm.data.store import Store

    with pytest.raises(ConfigError, match="is a folder, not a store file"):
        Store(tmp_path)
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(DataError, match="notes.txt: not a synthpm store"):
        Store(other).tickers()
    with pytest.raises(DataError, match="notes.txt: not a synthpm store"):
        run_import(Store(other), "csv", write(tmp_path, price_panel()))
    assert other.read_text() == "hello"


@pytest.mark.parametrize("bad", ["2020-13-45", "nope", "1850-01-01", "99999-01-01", ""])
def test_a_date_setting_is_checked_where_it_is_given(bad):
    from pydantic import ValidationError

    from synthpm.backtest import BacktestConfig

    with pytest.raises(ValidationError, match="is not a date"):
        BacktestConfig(start=bad)
    assert BacktestConfig(start="2020-02-29").start == "2020-02-29"


@pytest.mark.parametrize(
    "text", [b"", b"{", b'{"decision":"HOLD"}', b"\xff\xfe", b"[1,2]", b'{"decision":"BUY",'
             b'"conviction":1.5,"hold_duration_days":5,"reasoning":""}']
)  # fmt: skip
def test_text_that_is_no_signal_is_a_named_decode_error(text):
    from synthpm.lm.decode import DecodeError, parse_signal

    with pytest.raises(DecodeError, match="signal|hold_duration_days"):
        parse_signal(text)
    with pytest.raises(DecodeError):
        parse_signal(text, signal_only=True)
