"""The journal's writes (two writers; kill -9 in test_kill.py), human entries and their
validation, stats."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import file_digest
from typer.testing import CliRunner

from synthpm.cli import app
from synthpm.context import Context
from synthpm.data.errors import DataError
from synthpm.data.store import Store
from synthpm.journal.human import import_trades
from synthpm.journal.outcomes import update_journal
from synthpm.journal.records import entry, read_journal, write_entries
from synthpm.limits import Limits
from synthpm.signals import Signal

WRITER = """
import sys, datetime
from synthpm.context import Context
from synthpm.data.store import Store
from synthpm.journal.records import entry, write_entries
from synthpm.limits import Limits
from synthpm.signals import Signal
store, tag, batches = Store(sys.argv[1]), sys.argv[2], int(sys.argv[3])
signal = Signal(decision="BUY", conviction=0.6, hold_duration_days=20, reasoning="x")
for b in range(batches):
    rows = [entry(Context(ticker="AAA", date=datetime.date(2020, 1, 2 + i)), signal,
                  source=tag, account=tag, limits=Limits(), status="executed")
            for i in range(5)]
    write_entries(store, rows, tag)
    print(b + 1, flush=True)
"""


def writer(store: Path, tag: str, batches: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(store), tag, str(batches)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def one_row(store: Store, ticker: str = "AAA") -> None:
    signal_ = Signal(decision="SKIP", conviction=0.5, hold_duration_days=5, reasoning="seed")
    context = Context(ticker=ticker, date=pd.Timestamp("2020-01-02").date())
    write_entries(
        store, [entry(context, signal_, source="t", account="t", limits=Limits(), status="x")], "t"
    )


def test_two_writers_lose_nothing(priced_store):
    procs = [writer(priced_store.path, tag, 15) for tag in ("a", "b")]
    for proc in procs:
        assert proc.wait(timeout=300) == 0
    rows = read_journal(priced_store)
    assert rows.groupby("source").size().to_dict() == {"a": 75, "b": 75}
    assert rows["id"].is_unique


def trades_file(path: Path, **changes) -> Path:
    frame = pd.DataFrame(
        {
            "ticker": ["AAA", "AAA", "BBB"],
            "date": ["2020-01-20", "2020-02-05", "2020-01-21"],
            "side": ["BUY", "SELL", "BUY"],
            "shares": [100, 100, 50],
            "price": [101.0, 104.0, 99.5],
            "rationale": ["cheap", "target hit", ""],
        }
    )
    for column, value in changes.items():
        if value is None:
            frame = frame.drop(columns=column)
        else:
            frame[column] = value
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"side": None}, "missing column(s) 'side'"),
        ({"ticker": ["AAA", "ZZZ", "BBB"]}, "row 2, column 'ticker': unknown ticker 'ZZZ'"),
        ({"side": ["BUY", "HOLD", "BUY"]}, "row 2, column 'side': side must be BUY or SELL"),
        ({"shares": [100, float("nan"), 50]}, "row 2, column 'shares'"),
        ({"price": [101.0, -1.0, 99.5]}, "row 2, column 'price'"),
    ],
)
def test_a_malformed_human_import_names_the_problem_and_writes_nothing(
    priced_store, tmp_path, changes, message
):
    one_row(priced_store)
    before = file_digest(priced_store.path)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        import_trades(priced_store, trades_file(tmp_path / "t.csv", **changes), "ann")
    assert file_digest(priced_store.path) == before


def test_human_trades_get_contexts_and_outcomes(priced_store, tmp_path):
    n = import_trades(priced_store, trades_file(tmp_path / "t.csv"), "ann")
    assert n == 3
    update_journal(priced_store)
    rows = read_journal(priced_store, source="human:ann").set_index(["ticker", "date"])
    buy = rows.loc[("AAA", pd.Timestamp("2020-01-20"))]
    assert Context.model_validate_json(buy["context"]).ticker == "AAA"
    assert "AAA" in buy["prompt"] and buy["status"] == "human"
    assert buy["pnl"] == pytest.approx((104.0 - 101.0) * 100)  # the position's round trip
    sell = rows.loc[("AAA", pd.Timestamp("2020-02-05"))]
    assert sell["pnl"] == pytest.approx(300.0)
    assert pd.isna(rows.loc[("BBB", pd.Timestamp("2020-01-21")), "pnl"])  # still open
    # the panel's equal-weight benchmark; the last trade's window runs past the 30 days
    assert rows["excess_5d"].notna().tolist() == [True, True, False]


def test_journal_cli_add_show_stats(priced_store, tmp_path):
    runner = CliRunner()
    store = ["--store", str(priced_store.path)]
    result = runner.invoke(
        app,
        ["journal", "add", "--ticker", "aaa", "--date", "2020-01-10", "--decision", "BUY",
         "--conviction", "0.8", "--rationale", "momentum", "--name", "bob", *store],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    runner.invoke(app, ["journal", "import", str(trades_file(tmp_path / "t.csv")), *store])
    assert runner.invoke(app, ["journal", "update", *store]).exit_code == 0
    shown = runner.invoke(app, ["journal", "show", *store])
    assert "human:bob" in shown.output and "human:me" in shown.output
    bob = read_journal(priced_store, source="human:bob")["id"].iloc[0]
    assert runner.invoke(app, ["journal", "note", bob, "sized too small", *store]).exit_code == 0
    assert read_journal(priced_store, ids=[bob])["notes"].iloc[0] == "sized too small"
    missing = runner.invoke(app, ["journal", "note", "nope", "x", *store])
    assert missing.exit_code != 0 and "no journal entry with id 'nope'" in str(missing.exception)
    stats = runner.invoke(app, ["journal", "stats", "--out", str(tmp_path / "st"), *store])
    assert stats.exit_code == 0, stats.output
    assert "calibration" in stats.output and "hit rate" in stats.output
    assert (tmp_path / "st" / "reliability.csv").exists()
