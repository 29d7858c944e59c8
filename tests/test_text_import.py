"""Dated texts: the close rule, the file layouts, errors that name the problem, idempotent
re-imports, 8-K events as text and the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import duckdb
import pandas as pd
import pytest

from synthpm.data.errors import DataError
from synthpm.data.importers import run_import
from synthpm.data.importers.text import events_as_text, import_text, known_from_post
from synthpm.data.schema import TEXTS, UNIVERSE
from synthpm.data.store import Store
from tests.conftest import edgar_company, file_digest, synthpm_here, write_json


def posts(tmp_path, rows, name="posts.csv", **columns):
    """A texts file from (ticker, time, text) rows, in the layout its suffix names."""
    frame = pd.DataFrame(rows, columns=["ticker", "time", "text"]).assign(**columns)
    path = tmp_path / name
    if name.endswith(".parquet"):
        frame.to_parquet(path)
    elif name.endswith(".jsonl"):
        path.write_text(
            "".join(json.dumps(r, default=str) + "\n" for r in frame.to_dict("records"))
        )
    else:
        frame.to_csv(path, index=False)
    return path


def known(*utc_times: str) -> list[str]:
    times = pd.Series(pd.to_datetime(list(utc_times)))
    return known_from_post(times).dt.strftime("%Y-%m-%d").tolist()


# ------------------------------------------------------------------ the close rule
def test_a_post_before_the_new_york_close_counts_that_day_else_the_next_business_day():
    # 2015-03-03 is a Tuesday in EST (UTC-5): the close is 21:00 UTC
    assert known("2015-03-03 20:59", "2015-03-03 21:00") == ["2015-03-03", "2015-03-04"]
    # 02:00 UTC on the 4th is 21:00 on the 3rd in New York: after that day's close
    assert known("2015-03-04 02:00") == ["2015-03-04"]
    # a premarket post counts that day
    assert known("2015-03-03 13:00") == ["2015-03-03"]


def test_weekends_count_from_monday():
    # Saturday 2015-03-07, before and after 16:00 New York; Friday after the close
    assert known("2015-03-07 12:00", "2015-03-07 23:00", "2015-03-06 22:00") == ["2015-03-09"] * 3


def test_the_close_moves_with_daylight_saving_time():
    # 20:30 UTC is 15:30 EST on Friday 2015-03-06, and 16:30 EDT on Monday 2015-03-09 (DST
    # began on Sunday 2015-03-08)
    assert known("2015-03-06 20:30", "2015-03-09 20:30") == ["2015-03-06", "2015-03-10"]
    assert known("2015-03-09 19:59") == ["2015-03-09"]


def test_a_federal_holiday_is_not_a_business_day():
    # Monday 2015-01-19 is Martin Luther King Jr. Day
    assert known("2015-01-16 22:00", "2015-01-19 15:00") == ["2015-01-20", "2015-01-20"]


# ------------------------------------------------------------------ layouts and times
ROWS = [
    ("aapl", "2015-03-03T15:59:00-05:00", "beats"),
    ("MSFT", "2015-03-03 21:00:00", "misses"),
]


@pytest.mark.parametrize("name", ["posts.csv", "posts.parquet", "posts.jsonl", "posts.tsv"])
def test_every_layout_reads_the_same_rows(tmp_path, name):
    if name.endswith(".tsv"):
        path = tmp_path / name
        pd.DataFrame(ROWS, columns=["ticker", "time", "text"]).to_csv(path, sep="\t", index=False)
    else:
        path = posts(tmp_path, ROWS, name=name, user_id=["1", "2"])  # an extra column: ignored
    texts = import_text(path).frames["texts"]
    assert list(texts.columns) == list(TEXTS.columns)
    assert texts["ticker"].tolist() == ["AAPL", "MSFT"]
    # the offset is converted; a time without a zone is taken as UTC
    assert texts["time"].tolist() == [
        pd.Timestamp("2015-03-03 20:59"),
        pd.Timestamp("2015-03-03 21:00"),
    ]
    assert texts["date_known"].dt.strftime("%Y-%m-%d").tolist() == ["2015-03-03", "2015-03-04"]
    assert set(texts["source"]) == {"posts"}  # the file's stem
    assert texts["text_id"].str.fullmatch("[0-9a-f]{16}").all()


@pytest.mark.parametrize("alias", ["created_at", "timestamp", "datetime", "Created At"])
def test_time_aliases(tmp_path, alias):
    path = tmp_path / "a.csv"
    pd.DataFrame({"ticker": ["AAA"], alias: ["2015-03-03 12:00"], "text": ["x"]}).to_csv(
        path, index=False
    )
    assert import_text(path).frames["texts"]["time"].tolist() == [pd.Timestamp("2015-03-03 12:00")]


def test_parquet_times_aware_in_any_zone_or_naive(tmp_path):
    aware = pd.to_datetime(["2015-03-03 15:59", "2015-03-03 16:00"]).tz_localize("America/New_York")
    naive = pd.to_datetime(["2015-03-03 20:59", "2015-03-03 21:00"])
    for i, times in enumerate((aware, naive)):
        path = tmp_path / f"t{i}.parquet"
        pd.DataFrame({"ticker": ["A", "B"], "created_at": times, "text": ["x", "y"]}).to_parquet(
            path
        )
        texts = import_text(path).frames["texts"]
        assert texts["time"].tolist() == list(naive)
        assert texts["date_known"].dt.strftime("%Y-%m-%d").tolist() == ["2015-03-03", "2015-03-04"]


def test_source_from_the_column_else_the_option_else_the_stem(tmp_path):
    path = posts(tmp_path, ROWS, source=["reddit", ""])
    assert import_text(path).frames["texts"]["source"].tolist() == ["reddit", "posts"]
    assert import_text(path, source="x").frames["texts"]["source"].tolist() == ["reddit", "x"]
    plain = posts(tmp_path, ROWS, name="plain.csv")
    assert set(import_text(plain, source="stocknet").frames["texts"]["source"]) == {"stocknet"}


def test_empty_texts_are_dropped_and_repeats_stored_once(store, tmp_path):
    rows = [*ROWS, ROWS[0], ("AAA", "2015-03-03", "   "), ("AAA", "2015-03-03", None)]
    batch = import_text(posts(tmp_path, rows))
    assert len(batch.frames["texts"]) == 2
    assert "2 row(s) with empty text dropped" in batch.warnings
    assert "1 repeated text row(s) stored once" in batch.warnings
    store.write(batch)
    assert len(store.texts()) == 2


def test_the_same_words_from_two_authors_are_two_posts(store, tmp_path):
    rows = [("AAA", "2015-03-03T15:00:00Z", "buy")] * 3
    batch = import_text(posts(tmp_path, rows, user_id=[1, 2, 1]))
    texts = batch.frames["texts"]
    assert sorted(texts["author"]) == ["1", "2"]  # the third row repeats the first
    assert "1 repeated text row(s) stored once" in batch.warnings
    store.write(batch)
    assert store.texts()["author"].tolist() == texts["author"].tolist()


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("ticker,time,body\nAAA,2015-03-03,x\n", "missing column(s) 'text'"),
        ("ticker,when,text\nAAA,2015-03-03,x\n", "missing column(s) 'time'"),
        (
            "ticker,time,text\nAAA,2015-03-03,x\nBBB,yesterday,y\n",
            "row 2, column 'time': unparseable time 'yesterday'",
        ),
        ("ticker,time,text\nAAA,2015-03-03,x\nBBB,,y\n", "row 2, column 'time': missing time"),
        (
            "ticker,time,text\nAAA,2015-03-03,x\nAA PL,2015-03-03,y\n",
            "row 2, column 'ticker': ticker 'AA PL'",
        ),
        ("ticker,time,text\nAAA,2999-01-01,x\n", "row 1, column 'time': time in the future"),
        ("ticker,time,text\n", "no rows"),
        ("ticker,time,text\nAAA,2015-03-03, \n", "no row has text"),
    ],
)
def test_bad_files_are_named_and_change_nothing(store, tmp_path, content, message):
    store.write(import_text(posts(tmp_path, ROWS, name="good.csv")))
    before = file_digest(store.path)
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError) as error:
        store.write(import_text(path))
    assert str(path) in str(error.value) and message in str(error.value), str(error.value)
    assert file_digest(store.path) == before


def test_jsonl_errors_name_the_file_and_row(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"ticker": "AAA", "time": "2015-03-03", "text": "x"}\n{"ticker": ')
    with pytest.raises(DataError, match="p.jsonl: cannot read"):
        import_text(path)
    path.write_text("")
    with pytest.raises(DataError, match="p.jsonl: no rows"):
        import_text(path)
    path.write_text('{"ticker": "A", "time": "2015-03-03", "text": "x"}\n'
                    '{"ticker": "B", "time": 1425340800, "text": "y"}\n')  # fmt: skip
    with pytest.raises(DataError, match="row 2, column 'time': time 1425340800 is a number"):
        import_text(path)


# ------------------------------------------------------------------ the store
def test_reimport_changes_nothing_and_reads_are_as_of_date_known(store, tmp_path):
    path = posts(tmp_path, ROWS)
    store.write(import_text(path))
    first = store.texts()
    report = store.write(import_text(path))
    assert report.rows == {"texts": 2}
    pd.testing.assert_frame_equal(store.texts(), first)
    assert store.texts(as_of="2015-03-03")["ticker"].tolist() == ["AAPL"]  # MSFT: the 4th
    assert store.texts("msft", start="2015-03-04")["text"].tolist() == ["misses"]
    assert store.info()["texts"] == {"rows": 2, "tickers": 2, "first": "2015-03-03",
                                     "last": "2015-03-04"}  # fmt: skip


def test_a_store_from_before_the_table_reads_no_texts(tmp_path):
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE prices (ticker VARCHAR, date DATE, close DOUBLE)")
    texts = Store(path).texts()
    assert texts.empty and list(texts.columns) == list(TEXTS.columns)


def test_universe_spells_are_still_replaced_per_ticker(store, tmp_path):
    assert UNIVERSE.replace_by == ("ticker",) and TEXTS.replace_by is None
    spells = tmp_path / "u.csv"
    spells.write_text(
        "ticker,start,end\nAAA,2020-01-02,2020-01-08\nAAA,2020-01-08,\nBBB,2020-01-02,\n"
    )
    run_import(store, "universe", spells)
    spells.write_text("ticker,start,end\nAAA,2020-01-03,\n")
    run_import(store, "universe", spells)
    assert store.universe()["ticker"].tolist() == ["AAA", "BBB"]
    assert store.universe("AAA")["start"].tolist() == [pd.Timestamp("2020-01-03")]


# ------------------------------------------------------------------ 8-K events as text
def test_events_become_texts_known_on_the_events_day(priced_store, tmp_path):
    with pytest.raises(DataError, match="no 8-K events with items"):
        events_as_text(priced_store)
    filings = [
        {"accessionNumber": "a1", "filingDate": "2020-01-02", "form": "8-K",
         "items": "2.02", "acceptanceDateTime": "2020-01-02T16:30:33.000Z"},
        {"accessionNumber": "f4", "filingDate": "2020-01-03", "form": "4", "items": ""},
    ]  # fmt: skip
    (tmp_path / "edgar").mkdir()
    write_json(tmp_path / "edgar" / "CIK1.json", edgar_company(1, "AAA", filings))
    run_import(priced_store, "edgar", tmp_path / "edgar")
    assert len(priced_store.events()) == 2  # the 8-K item and the Form 4
    batch = events_as_text(priced_store)
    texts = batch.frames["texts"]
    assert texts["text"].tolist() == [
        "8-K item 2.02 results: Results of operations and financial condition"
    ]
    assert texts["source"].tolist() == ["8-K"]
    assert texts["date_known"].tolist() == [pd.Timestamp("2020-01-03")]  # after the close
    assert texts["time"].tolist() == [pd.Timestamp("2020-01-03 17:00")]  # noon EST in UTC
    assert known_from_post(texts["time"]).tolist() == texts["date_known"].tolist()
    priced_store.write(batch)
    priced_store.write(events_as_text(priced_store))  # again: replaced, not added
    assert priced_store.texts()["text_id"].tolist() == texts["text_id"].tolist()


# ------------------------------------------------------------------ command line
def synthpm(*args, store):
    return subprocess.run(
        [sys.executable, "-m", "synthpm.cli", "text", "import", *map(str, args), "--store", store],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
    )


def test_cli_imports_a_file_and_a_bad_one_exits_2_with_one_line(tmp_path):
    store = tmp_path / "s.duckdb"
    good = synthpm_here(
        "text", "import", posts(tmp_path, ROWS), "--source", "desk", "--store", store
    )
    assert good.returncode == 0, good.stderr
    assert "text import" in good.stdout and "texts" in good.stdout
    before = file_digest(store)
    bad = tmp_path / "bad.csv"
    bad.write_text("ticker,time,text\nAAA,soon,x\n")
    result = synthpm(bad, store=store)  # a process as a user starts it: its stderr whole
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and "row 1, column 'time'" in lines[0]
    assert file_digest(store) == before
    both = synthpm_here("text", "import", bad, "--events", "--store", store, check=False)
    assert both.returncode == 2 and "not both or neither" in both.stderr
    assert Store(store).texts()["source"].tolist() == ["desk", "desk"]
