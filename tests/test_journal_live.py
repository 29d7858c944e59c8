"""The live loop against the backtest: a paper account decided one day at a time, the store
growing by one imported day before each decision, takes the backtest's decisions."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import session_market

from synthpm.backtest.engine import BacktestConfig, run_signals
from synthpm.backtest.market import Market
from synthpm.data.store import ImportBatch, Store
from synthpm.dataset import build_contexts, decision_points
from synthpm.features import FeatureConfig, PanelInputs, build_features
from synthpm.forecast import ForecastConfig, walk_forward
from synthpm.journal.live import as_of, decide, is_review_day, write_decided
from synthpm.journal.outcomes import excess_returns, update_journal
from synthpm.journal.records import read_journal
from synthpm.limits import Limits
from synthpm.strategies import make_strategy

TICKERS = [f"T{i}" for i in range(6)]
FORECAST = ForecastConfig(min_train_days=150, refit_months=12, train_stride=3,
                          model_params={"rounds": 30, "min_data_in_leaf": 20})  # fmt: skip
CONFIG = BacktestConfig(limits=Limits(max_positions=3))


def market_data(seed: int = 0) -> dict[str, pd.DataFrame]:
    """Six tickers and an index on the NYSE's sessions, 2016-01 .. 2018-03."""
    return session_market(TICKERS, "2016-01-04", "2018-03-29", seed)


def import_until(store: Store, data: dict, first: pd.Timestamp, last: pd.Timestamp) -> None:
    prices, market = data["prices"], data["market"]
    frames = {
        "prices": prices[(prices["date"] >= first) & (prices["date"] <= last)],
        "market": market[(market["date"] >= first) & (market["date"] <= last)],
    }
    if first == data["prices"]["date"].min():
        frames["sectors"] = data["sectors"]
    store.write(ImportBatch("test", "day", frames))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A store holding the data up to the simulated days, and the forecast run fitted on it."""
    tmp = tmp_path_factory.mktemp("live")
    data = market_data()
    dates = pd.DatetimeIndex(data["market"]["date"])
    # four weeks, one a day, into a new year: its forecast fold is fitted live on 2018-01-02,
    # and two weeks are decided on it
    days = dates[(dates >= "2017-12-18") & (dates <= "2018-01-12")]
    store = Store(tmp / "store.duckdb")
    import_until(store, data, dates[0], days[0] - pd.Timedelta(days=1))
    inputs = PanelInputs.from_store(store)
    panel = build_features(inputs, FeatureConfig())
    walk_forward(panel, inputs, FORECAST, log=lambda _: None).save(tmp / "forecast")
    return tmp, store, data, days


def test_review_days_are_the_exchange_calendars():
    assert is_review_day(pd.Timestamp("2018-03-02"))  # a Friday
    assert not is_review_day(pd.Timestamp("2018-03-01"))
    assert is_review_day(pd.Timestamp("2018-03-29"))  # Thursday before Good Friday
    assert is_review_day(pd.Timestamp("2018-03-30"))  # Good Friday itself, if data had a bar


def test_a_paper_account_decided_daily_equals_the_backtest(world):
    tmp, store, data, days = world
    rules = make_strategy("rules", min_expected=0.0, min_confidence=0.0, sell_below=-0.002)
    for day in days:
        import_until(store, data, day, day)  # the store grows by one day
        today = as_of(store, day, tmp / "forecast")
        decided = decide(store, rules, today, source="rules", account="paper", config=CONFIG)
        write_decided(store, decided, "paper", "rules", CONFIG, book=False)
        update_journal(store)
    journal = read_journal(store, account="paper")
    fridays = days[[is_review_day(d) for d in days]]  # each week's review day, and no other
    assert len(fridays) == 4
    assert pd.DatetimeIndex(journal["date"].unique()).sort_values().equals(fridays)
    assert (journal["status"] == "executed").any()
    fitted = json.loads((tmp / "forecast" / "folds.json").read_text())
    assert [f["test_start"] for f in fitted] == ["2017-01-03", "2018-01-02"]

    # the backtest over the same days, on the finished store and a fresh walk-forward
    inputs = PanelInputs.from_store(store)
    panel = build_features(inputs, FeatureConfig())
    forecasts = walk_forward(panel, inputs, FORECAST, log=lambda _: None).forecasts
    points = decision_points(panel.index, inputs.events, start=days[0], end=days[-1])
    contexts = build_contexts(inputs, panel, forecasts, points)
    run = CONFIG.model_copy(update={"start": str(days[0].date()), "end": str(days[-1].date())})
    result = run_signals(rules, contexts, Market.from_inputs(inputs), run)
    expected = result.decisions
    got = journal.sort_values(["date", "ticker"]).reset_index(drop=True)
    assert len(got) == len(expected)
    assert (got["ticker"].to_numpy() == expected["ticker"].to_numpy()).all()
    assert (got["date"].to_numpy() == pd.to_datetime(expected["date"]).to_numpy()).all()
    for column in ("decision", "status", "reason"):
        assert got[column].tolist() == expected[column].tolist(), column
    np.testing.assert_allclose(got["conviction"], expected["conviction"])
    np.testing.assert_allclose(got["size"], expected["size"], rtol=1e-9)

    # the fills journal update found are the backtest's trades
    filled = [f for fills in got["fills"] for f in json.loads(fills)]
    trades = result.trades[result.trades["reason"].isin(["signal", "sell_signal"])]
    trades = trades[trades["date"] <= days[-1]]
    assert len(filled) == len(trades) > 0
    np.testing.assert_allclose(sorted(f["shares"] for f in filled), sorted(trades["shares"]))

    # outcomes: a sample by hand from the stored closes and index
    closes = inputs.closes()
    index = inputs.market.set_index("date")["index_close"]
    early = got[got["date"] <= days[5]].head(3)
    for row in early.itertuples():
        t = closes.index.get_loc(row.date)
        a, b = closes.index[t + 1], closes.index[t + 6]
        stock = closes.at[b, row.ticker] / closes.at[a, row.ticker] - 1
        bench = index[b] / index[a] - 1
        assert row.excess_5d == pytest.approx(stock - bench, rel=1e-9)
        assert np.isnan(row.excess_63d)  # its window runs past the data
    recomputed = excess_returns(inputs, got)
    np.testing.assert_allclose(recomputed["excess_21d"], got["excess_21d"])


def test_deciding_twice_on_a_date_is_refused(world):
    tmp, store, _data, days = world
    rules = make_strategy("rules")
    today = as_of(store, days[-1], tmp / "forecast")
    with pytest.raises(Exception, match="already decided"):
        decide(store, rules, today, source="rules", account="paper", config=CONFIG)


def test_two_decides_of_one_date_journal_it_once(finished):
    tmp, store, _, days = finished
    rules = make_strategy("rules")
    today = as_of(store, days[-1], tmp / "forecast")
    # both read the journal before either writes, as two processes could
    first, second = (decide(store, rules, today, source="rules", account="race") for _ in "ab")
    assert write_decided(store, first, "race", "rules", CONFIG, book=False) > 0
    with pytest.raises(Exception, match="another decide wrote them meanwhile"):
        write_decided(store, second, "race", "rules", CONFIG, book=False)
    assert len(read_journal(store, account="race")) == len(first.rows)


def test_an_account_decides_dates_in_order(world):
    tmp, store, _, days = world
    today = as_of(store, days[4], tmp / "forecast")  # a Friday the account decided already
    with pytest.raises(Exception, match="decide dates in order"):
        decide(store, make_strategy("rules"), today, source="rules", account="paper")


def test_a_date_the_store_has_not_reached_is_refused(world):
    tmp, store, _, days = world
    with pytest.raises(Exception, match="import 2018-01-16's prices first"):
        as_of(store, days[-1] + pd.Timedelta(days=4), tmp / "forecast")  # Monday's a holiday


@pytest.fixture(scope="module")
def finished(world):
    """The world's store holding every simulated day (idempotent: rows replace by key)."""
    _, store, data, days = world
    import_until(store, data, days[0], days[-1])
    return world


def cli(*args) -> str:
    from typer.testing import CliRunner

    from synthpm.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_a_journaled_backtest_is_replayed_to_its_own_fills(finished, tmp_path):
    _, store, _, days = finished
    inputs = PanelInputs.from_store(store)  # a forecast run over every day, as a backtest needs
    panel = build_features(inputs, FeatureConfig())
    walk_forward(panel, inputs, FORECAST, log=lambda _: None).save(tmp_path / "forecast")
    rules = ["--strategy", "rules", "--param", "rules.min_expected=0", "--param",
             "rules.min_confidence=0", "--max-positions", "3"]  # fmt: skip
    out = cli("backtest", *rules, "--forecasts", tmp_path / "forecast", "--start", days[0].date(),
              "--end", days[-1].date(), "--store", store.path, "--out", tmp_path / "bt",
              "--journal", "bt")  # fmt: skip
    assert "as account 'bt'" in out
    cli("journal", "update", "--store", store.path)
    journal = read_journal(store, account="bt").sort_values(["date", "ticker"])
    decisions = pd.read_parquet(tmp_path / "bt" / "decisions.parquet")
    assert journal["decision"].tolist() == decisions["decision"].tolist()
    assert journal["status"].tolist() == decisions["status"].tolist()
    trades = pd.read_csv(tmp_path / "bt" / "trades.csv")
    ours = trades[trades["reason"].isin(["signal", "sell_signal"])]
    assert sum(len(json.loads(f)) for f in journal["fills"]) == len(ours) > 0
    # each closed position's P&L is credited once, to the BUY that opened it
    buys = journal[journal["decision"] == "BUY"]
    assert buys["pnl"].sum() == pytest.approx(trades["pnl"].sum(), rel=1e-9)
    with pytest.raises(AssertionError, match="exists"):  # an account is journaled once
        cli("backtest", *rules, "--forecasts", tmp_path / "forecast", "--store", store.path,
            "--start", days[0].date(), "--out", tmp_path / "bt2", "--journal", "bt")  # fmt: skip


def test_decide_on_a_given_book_sells_what_it_holds(finished, tmp_path):
    tmp, store, _, days = finished
    book = tmp_path / "book.json"
    held = [{"ticker": t, "shares": 100, "cost_basis": 50.0, "entry_date": "2017-06-01"}
            for t in ("T0", "T1")]  # fmt: skip
    book.write_text(json.dumps({"cash": 50_000, "positions": held}))
    rules = ["--strategy", "rules", "--param", "rules.sell_below=0.5", "--param",
             "rules.min_expected=0.6"]  # fmt: skip
    where = ["--forecasts", tmp / "forecast", "--store", store.path]
    out = cli("decide", "--date", days[-1].date(), *rules, *where, "--book", book,
              "--account", "mine")  # fmt: skip
    assert "orders for the next bar" in out and "journaled 6 entries" in out
    rows = read_journal(store, account="mine").set_index("ticker")
    assert rows.loc["T0", "status"] == "executed" and rows.loc["T0", "decision"] == "SELL"
    assert rows.loc["T2", "status"] == "rejected"  # not held
    state = json.loads(rows.loc["T0", "context"])["portfolio"]
    assert {p["ticker"] for p in state["positions"]} == {"T0", "T1"}
    bad = tmp_path / "bad.json"
    position = {"ticker": "ZZZ", "shares": 1, "cost_basis": 1, "entry_date": "2018-01-02"}
    bad.write_text(json.dumps({"cash": 1, "positions": [position]}))
    with pytest.raises(AssertionError, match="unknown tickers"):
        cli("decide", "--date", days[-1].date(), *rules, *where, "--book", bad, "--account", "x")
