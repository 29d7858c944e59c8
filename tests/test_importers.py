"""Importers: Stooq, wide panels, EDGAR submissions, Form 4, sectors."""

from __future__ import annotations

import pandas as pd
import pytest

from synthpm.data.errors import DataError, SynthpmError
from synthpm.data.importers import read_source, run_import
from tests.conftest import edgar_company, price_panel, write_json

STOOQ_HEADER = "Date,Open,High,Low,Close,Volume,OpenInt\n"


def stooq_file(folder, name, frame):
    body = frame[["date", "open", "high", "low", "close", "volume"]].assign(oi=0)
    (folder / name).write_text(STOOQ_HEADER + body.to_csv(index=False, header=False))


def test_stooq_folder_takes_tickers_from_file_names_and_skips_empty_files(tmp_path):
    panel = price_panel(("X",), days=10)
    stooq_file(tmp_path, "aapl.us.txt", panel)
    stooq_file(tmp_path, "brk-b.us.txt", panel)
    (tmp_path / "dead.us.txt").write_text("")
    batch = read_source("stooq", tmp_path)
    prices = batch.frames["prices"]
    assert sorted(prices["ticker"].unique()) == ["AAPL", "BRK-B"]
    assert len(prices) == 20
    assert batch.notes == {"files": 3, "empty_files": 1}
    assert any("dead.us.txt" in w for w in batch.warnings)


def test_stooq_errors_name_the_file(tmp_path):
    panel = price_panel(("X",), days=5)
    panel.loc[3, "close"] = 0
    stooq_file(tmp_path, "msft.us.txt", panel)
    with pytest.raises(DataError, match=r"msft.us.txt, ticker MSFT, row 4"):
        read_source("stooq", tmp_path)


def test_stooq_bulk_layout(tmp_path):
    (tmp_path / "ge.us.txt").write_text(
        "<TICKER>,<PER>,<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<VOL>,<OPENINT>\n"
        "GE.US,D,20170103,000000,31.6,31.8,31.4,31.7,123,0\n"
        "GE.US,D,20170104,000000,31.7,32.0,31.6,31.9,456,0\n"
    )
    prices = read_source("stooq", tmp_path).frames["prices"]
    assert prices["ticker"].tolist() == ["GE", "GE"]
    assert prices["date"].tolist() == [pd.Timestamp("2017-01-03"), pd.Timestamp("2017-01-04")]
    assert prices["volume"].tolist() == [123, 456]


def test_wide_panel_melts_to_close_only_and_drops_unlisted_days(tmp_path):
    wide = pd.DataFrame(
        {"Date": ["2020-01-02", "2020-01-03"], "AAA": [10.0, 11.0], "BBB": [None, 5.0]}
    )
    path = tmp_path / "wide.csv"
    wide.to_csv(path, index=False)
    prices = read_source("csv", path).frames["prices"]
    assert prices[["ticker", "close"]].values.tolist() == [
        ["AAA", 10.0],
        ["AAA", 11.0],
        ["BBB", 5.0],
    ]
    assert prices["open"].isna().all()


def test_wide_panel_errors_name_ticker_and_row(tmp_path):
    wide = pd.DataFrame({"date": ["2020-01-02", "2020-01-03"], "AAA": [10.0, -1.0]})
    path = tmp_path / "wide.csv"
    wide.to_csv(path, index=False)
    with pytest.raises(DataError, match="ticker AAA, row 2"):
        read_source("csv", path)


def _filing(acc, date, form, items="", accepted=None):
    return {
        "accessionNumber": acc,
        "filingDate": date,
        "reportDate": date,
        "form": form,
        "items": items,
        "acceptanceDateTime": accepted or f"{date}T17:05:00.000Z",
    }


def test_edgar_items_become_events_with_point_in_time_dates(tmp_path):
    write_json(
        tmp_path / "CIK0000000001.json",
        edgar_company(
            1,
            "AAA",
            [
                # Thursday after the close: known Friday. Results + exhibits: two events.
                _filing("a1", "2020-01-02", "8-K", "2.02,9.01", "2020-01-02T16:30:33.000Z"),
                # Before the close: known the same day.
                _filing("a2", "2020-01-06", "8-K/A", "5.02", "2020-01-06T09:15:00.000Z"),
                # Friday after the close: known Monday.
                _filing("a3", "2020-01-10", "4", "", "2020-01-10T18:00:00.000Z"),
                _filing("a4", "2020-01-10", "10-Q"),  # not an event
            ],
        ),
    )
    batch = read_source("edgar", tmp_path)
    events = batch.frames["events"].set_index("source_id")
    assert sorted(events.index) == ["a1#2.02", "a1#9.01", "a2#5.02", "a3"]
    assert events.loc["a1#2.02", "event_type"] == "results"
    assert events.loc["a1#2.02", "date_known"] == pd.Timestamp("2020-01-03")
    assert events.loc["a2#5.02", "date_known"] == pd.Timestamp("2020-01-06")
    assert events.loc["a2#5.02", "event_type"] == "officer_director_change"
    assert events.loc["a3", "event_type"] == "insider_filing"
    assert events.loc["a3", "date_known"] == pd.Timestamp("2020-01-13")
    assert (events["cik"] == "1").all() and (events["ticker"] == "AAA").all()
    assert batch.notes["8k_filings_with_items"] == 2


def test_an_8k_without_items_is_one_event_of_its_own_kind(tmp_path):
    write_json(
        tmp_path / "CIK0000000001.json",
        edgar_company(1, "AAA", [_filing("n1", "2020-01-02", "8-K", "")]),
    )
    events = read_source("edgar", tmp_path).frames["events"]
    assert events["source_id"].tolist() == ["n1#"]
    assert events["event_type"].tolist() == ["filing_8k"]


def test_edgar_flat_older_files_take_the_ticker_of_their_cik(tmp_path):
    write_json(
        tmp_path / "CIK0000000007.json",
        edgar_company(7, "OLD", [_filing("new1", "2015-05-01", "8-K", "8.01")]),
    )
    flat = {k: [v] for k, v in _filing("old1", "1999-03-01", "8-K", "5,7").items()}
    write_json(tmp_path / "CIK0000000007-submissions-001.json", flat)
    events = read_source("edgar", tmp_path).frames["events"]
    old = events[events["source_id"].str.startswith("old1")]
    assert old["ticker"].tolist() == ["OLD", "OLD"]
    assert old["event_type"].tolist() == ["other_event", "exhibits"]  # legacy items 5 and 7


def test_edgar_dedupes_filings_listed_twice_and_counts_filers_without_tickers(tmp_path):
    filing = _filing("dup", "2021-03-01", "8-K", "1.01")
    write_json(tmp_path / "CIK0000000002.json", edgar_company(2, "BBB", [filing]))
    write_json(tmp_path / "CIK0000000002_copy.json", edgar_company(2, "BBB", [filing]))
    write_json(
        tmp_path / "CIK0000000003.json",
        edgar_company(3, None, [_filing("p", "2021-03-01", "4")], name="A PERSON"),
    )
    batch = read_source("edgar", tmp_path)
    assert batch.frames["events"]["source_id"].tolist() == ["dup#1.01"]
    assert batch.notes["filings_without_ticker"] == 1
    assert any("A PERSON" in w for w in batch.warnings)
    companies = batch.frames["companies"].set_index("cik")
    assert pd.isna(companies.loc["3", "ticker"]) and companies.loc["2", "ticker"] == "BBB"


def test_edgar_rejects_files_that_are_not_submissions(tmp_path):
    (tmp_path / "CIK0000000009.json").write_text('{"hello": 1}')
    with pytest.raises(DataError, match="CIK0000000009.json: not an EDGAR submissions file"):
        read_source("edgar", tmp_path)
    (tmp_path / "CIK0000000009.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        read_source("edgar", tmp_path)


def test_edgar_import_keeps_cik_links_and_warns_about_unpriced_tickers(priced_store, tmp_path):
    write_json(
        tmp_path / "CIK0000000001.json",
        edgar_company(1, "AAA", [_filing("x", "2020-01-02", "8-K", "2.02")]),
    )
    write_json(
        tmp_path / "CIK0000000005.json",
        edgar_company(5, "EEE", [_filing("y", "2020-01-02", "8-K", "2.02")]),
    )
    report = run_import(priced_store, "edgar", tmp_path)
    assert report.rows["events"] == 2
    assert any("1 events row(s) for 1 ticker(s) with no prices" in w for w in report.warnings)
    assert set(priced_store.companies()["ticker"]) == {"AAA", "EEE"}
    assert priced_store.events("AAA", as_of="2020-01-02").empty  # after the close: known 01-03
    assert len(priced_store.events("AAA", as_of="2020-01-03")) == 1


FORM4_COLUMNS = dict(
    ticker="AAA",
    reporting_owner="DOE JANE",
    reporting_owner_cik="0001",
    reporting_owner_position="Chief Executive Officer",
    transaction_type="P",
    transaction_shares="100",
    transaction_price="10.5",
    shares_after_transaction="1000",
)


def test_form4_known_two_business_days_later_across_a_holiday(tmp_path):
    rows = pd.DataFrame(
        [
            {**FORM4_COLUMNS, "id": 1, "transaction_date": "2023-06-30"},  # Fri; Jul 4 is a holiday
            {**FORM4_COLUMNS, "id": 2, "transaction_date": "2023-07-06", "transaction_price": None},
        ]
    )
    path = tmp_path / "f4.parquet"
    rows.to_parquet(path)
    insider = read_source("form4", path).frames["insider"].set_index("source_id")
    assert insider.loc["form4:1", "date_known"] == pd.Timestamp("2023-07-05")
    assert insider.loc["form4:2", "date_known"] == pd.Timestamp("2023-07-10")
    assert insider.loc["form4:1", "value"] == pytest.approx(1050.0)
    assert pd.isna(insider.loc["form4:2", "value"])
    assert insider.loc["form4:1", "role"] == "Chief Executive Officer"


def test_form4_uses_the_filing_date_when_there_is_one(tmp_path):
    rows = pd.DataFrame(
        [{**FORM4_COLUMNS, "transaction_date": "2023-06-01", "filing_date": "2023-06-20"}]
    )
    path = tmp_path / "f4.csv"
    rows.to_csv(path, index=False)
    insider = read_source("form4", path).frames["insider"]
    assert insider["date_known"].tolist() == [pd.Timestamp("2023-06-21")]  # after-close default


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("transaction_shares", "-5", "negative shares"),
        ("transaction_shares", "lots", "non-numeric value 'lots'"),
        ("transaction_date", "someday", "unparseable date 'someday'"),
        ("transaction_type", "", "missing transaction code"),
    ],
)
def test_form4_bad_rows_are_named(tmp_path, column, value, message):
    rows = pd.DataFrame([{**FORM4_COLUMNS, "transaction_date": "2023-06-01"}] * 3)
    rows.loc[2, column] = value
    path = tmp_path / "f4.csv"
    rows.to_csv(path, index=False)
    with pytest.raises(DataError, match=rf"f4.csv, ticker AAA, row 3.*{message}"):
        read_source("form4", path)


def test_sectors_accept_gics_headers_and_reject_conflicts(tmp_path):
    path = tmp_path / "sectors.csv"
    pd.DataFrame({"Symbol": ["aaa", "BBB"], "GICS Sector": ["Energy", "Financials"]}).to_csv(
        path, index=False
    )
    assert read_source("sectors", path).frames["sectors"].values.tolist() == [
        ["AAA", "Energy"],
        ["BBB", "Financials"],
    ]
    pd.DataFrame({"ticker": ["AAA", "AAA"], "sector": ["Energy", "Utilities"]}).to_csv(
        path, index=False
    )
    with pytest.raises(DataError, match="two different sectors"):
        read_source("sectors", path)


def test_unknown_kind_is_named(tmp_path):
    with pytest.raises(SynthpmError, match="unknown import kind 'xls'"):
        read_source("xls", tmp_path)


def test_form4_without_ids_reimports_idempotently(priced_store, tmp_path):
    dates = ("2020-01-02", "2020-01-03")
    rows = pd.DataFrame([{**FORM4_COLUMNS, "transaction_date": d} for d in dates])
    path = tmp_path / "f4.csv"
    rows.to_csv(path, index=False)
    first = run_import(priced_store, "form4", path)
    run_import(priced_store, "form4", path)
    stored = priced_store.insider()
    assert first.rows["insider"] == 2 and len(stored) == 2
    assert stored["source_id"].str.fullmatch(r"form4:[0-9a-f]{16}").all()
    assert stored["source_id"].nunique() == 2


def test_form4_share_class_lists_take_the_first_and_rows_without_a_ticker_are_dropped(tmp_path):
    rows = pd.DataFrame([{**FORM4_COLUMNS, "transaction_date": "2023-06-01"}] * 4)
    rows["ticker"] = ["LEN, LEN.B", "PARAA,PARA", "-", "AAA"]
    rows["transaction_shares"] = ["1", "2", "3", "4"]
    path = tmp_path / "f4.csv"
    rows.to_csv(path, index=False)
    batch = read_source("form4", path)
    assert batch.frames["insider"]["ticker"].tolist() == ["LEN", "PARAA", "AAA"]
    assert any("2 row(s) list several share classes" in w for w in batch.warnings)
    assert any("1 row(s) without a usable ticker dropped: '-'" in w for w in batch.warnings)
    rows["ticker"] = "-"
    rows.to_csv(path, index=False)
    with pytest.raises(DataError, match="f4.csv, ticker -, row 1, column 'ticker': no row has"):
        read_source("form4", path)
