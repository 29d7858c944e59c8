"""Portfolio manager and engine: invariants over random signal streams, no look-ahead, costs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import synthetic_inputs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synthpm.backtest.engine import (
    BacktestConfig,
    BenchmarkHold,
    Market,
    run_backtest,
    run_benchmark,
    run_rule,
    run_signals,
)
from synthpm.dataset import build_contexts, decision_points
from synthpm.features import build_features
from synthpm.limits import Limits
from synthpm.portfolio.manager import Book, Outcome, PortfolioManager
from synthpm.signals import Signal
from synthpm.strategies import make_strategy

LIMITS = Limits(max_positions=4, max_position=0.2, max_sector=0.5)


def signal(decision: str, conviction: float = 0.8, hold: int = 20) -> Signal:
    return Signal(decision=decision, conviction=conviction, hold_duration_days=hold, reasoning="")


class RandomSource:
    """Seeded random signals: BUY, SELL or SKIP per context."""

    name = "random"

    def __init__(self, seed: int, p_buy: float = 0.3, p_sell: float = 0.1):
        self.rng = np.random.default_rng(seed)
        self.p = (p_buy, p_sell, 1 - p_buy - p_sell)

    def signals(self, contexts):
        choices = self.rng.choice(["BUY", "SELL", "SKIP"], len(contexts), p=self.p)
        convictions = self.rng.uniform(0, 1, len(contexts))
        holds = self.rng.integers(1, 60, len(contexts))
        drawn = zip(choices, convictions, holds, strict=True)
        return [signal(d, float(c), int(h)) for d, c, h in drawn]


class Momentum:
    """BUY what rose over the last month, SELL what fell: reads only its contexts."""

    name = "momentum"

    def signals(self, contexts):
        r = contexts.frame["ret_21d"].to_numpy()
        return [signal("BUY" if x > 0.02 else "SELL" if x < -0.02 else "SKIP") for x in r]


def setup(inputs):
    panel = build_features(inputs)
    contexts = build_contexts(inputs, panel, None, decision_points(panel.index, inputs.events))
    return contexts, Market.from_inputs(inputs)


@pytest.fixture(scope="module")
def world():
    inputs = synthetic_inputs(tickers=8, days=320)
    # T7 stops trading two thirds in: the engine must sell it at its last close
    gone = (inputs.prices["ticker"] == "T7") & (
        inputs.prices["date"] > inputs.prices["date"].unique()[210]
    )
    inputs.prices = inputs.prices[~gone].reset_index(drop=True)
    inputs.sectors = pd.Series({f"T{i}": ("A", "B", "C")[i % 3] for i in range(8)})
    return inputs, *setup(inputs)


def reconcile(result, market):
    """Shares per day rebuilt from trades.csv, and the identity equity = cash + marked shares."""
    signed = result.trades.assign(
        q=np.where(result.trades["side"].isin(["BUY", "COVER"]), 1, -1) * result.trades["shares"]
    )
    daily = signed.pivot_table(index="date", columns="ticker", values="q", aggfunc="sum")
    dates = pd.DatetimeIndex(result.equity["date"])
    shares = daily.reindex(index=dates, columns=market.tickers).fillna(0).cumsum()
    marks = pd.DataFrame(market.mark, index=market.dates, columns=market.tickers).reindex(dates)
    marked = (shares * marks.fillna(0)).sum(axis=1).to_numpy()
    return shares, result.equity["cash"].to_numpy() + marked


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 10_000), p_buy=st.floats(0.05, 0.9), p_sell=st.floats(0.0, 0.1))
def test_engine_invariants_over_random_signal_streams(world, seed, p_buy, p_sell):
    _, contexts, market = world
    config = BacktestConfig(limits=LIMITS)
    result = run_backtest(RandomSource(seed, p_buy, p_sell), contexts, market, config)
    eq = result.equity
    assert (eq["cash"] >= -1e-6).all()  # cash never negative
    shares, identity = reconcile(result, market)
    np.testing.assert_allclose(eq["equity"], identity, rtol=1e-9)  # equity = cash + positions
    assert (shares.round(9) >= 0).all().all()  # long-only manager
    assert ((shares.abs() > 1e-9).sum(axis=1).to_numpy() == eq["positions"].to_numpy()).all()
    assert (eq["positions"] <= LIMITS.max_positions).all()
    buys = result.decisions[result.decisions["status"].isin(["executed", "resized"])]
    buys = buys[buys["decision"] == "BUY"]
    at = eq.set_index("date")["equity"].reindex(buys["date"]).to_numpy()
    assert (buys["size"].to_numpy() <= LIMITS.max_position * at + 1e-6).all()
    assert len(result.decisions) == len(contexts.frame)  # every signal is logged
    assert result.decisions["status"].isin(["executed", "resized", "rejected", "skipped"]).all()


@settings(max_examples=60, deadline=None)
@given(
    held=st.lists(st.floats(0, 50), min_size=9, max_size=9),
    close=st.lists(st.floats(5, 200), min_size=9, max_size=9),
    cash=st.floats(0, 5_000),
    decisions=st.lists(st.sampled_from(["BUY", "SELL", "SKIP"]), min_size=9, max_size=9),
    convictions=st.lists(st.floats(0, 1), min_size=9, max_size=9),
)
def test_manager_never_breaks_a_limit(held, close, cash, decisions, convictions):
    shares = np.where(np.array(held) < 20, 0.0, np.array(held))
    sectors = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    book = Book(cash, shares, np.array(close), peak_equity=0.0)
    equity = book.equity
    signals = [signal(d, c) for d, c in zip(decisions, convictions, strict=True)]
    manager = PortfolioManager(LIMITS, cost_rate=0.001)
    plan = manager.decide(book, np.arange(9), sectors, signals, set())
    assert len(plan.outcomes) == len(signals)
    orders = plan.orders
    sold = {o.column for o in orders if o.shares < 0}
    assert all(shares[c] > 0 and decisions[c] == "SELL" for c in sold)
    bought = {o.column: o.shares * close[o.column] for o in orders if o.shares > 0}
    after = np.where(np.isin(np.arange(9), list(sold)), 0.0, shares * np.array(close))
    for col, value in bought.items():
        after[col] += value
        assert after[col] <= LIMITS.max_position * equity + 1e-6
    for s in {sectors[c] for c in bought}:
        assert after[sectors == s].sum() <= LIMITS.max_sector * equity + 1e-6
    if bought:
        spent = sum(bought.values()) * 1.001
        proceeds = sum(shares[c] * close[c] for c in sold) * 0.999
        assert cash + proceeds - spent >= LIMITS.cash_floor * equity - 1e-6
        assert ((after > 0).sum() <= LIMITS.max_positions) or not (
            set(bought) - set(np.flatnonzero(shares))
        )


def test_the_manager_says_why():
    close = np.full(4, 10.0)
    sectors = np.array([0, 0, 0, 1])
    book = Book(650.0, np.array([5.0, 0.0, 0.0, 30.0]), close, peak_equity=1000.0)
    limits = Limits(max_position=0.25, max_sector=0.3, cash_floor=0.1)
    manager = PortfolioManager(limits)
    signals = [signal("BUY", 1.0), signal("BUY", 0.9), signal("SELL"), signal("SKIP")]
    out = manager.decide(book, np.array([0, 1, 2, 3]), sectors, signals, set()).outcomes
    assert out[0] == Outcome("resized", pytest.approx(200.0), "position_limit")  # 50 held
    assert out[1] == Outcome("resized", pytest.approx(50.0), "sector_limit")  # 250 taken
    assert out[2] == Outcome("rejected", 0.0, "not_held")
    assert out[3].status == "skipped"
    deep = Book(700.0, np.zeros(4), close, peak_equity=1000.0)  # 30% below its peak
    plan = manager.decide(deep, np.array([0]), sectors, [signal("BUY")], set())
    assert plan.outcomes[0].reason == "drawdown" and not plan.orders
    unlimited = PortfolioManager(limits.model_copy(update={"derisk_drawdown": None}))
    plan = unlimited.decide(deep, np.array([0]), sectors, [signal("BUY")], set())
    assert plan.outcomes[0].status == "executed" and plan.orders  # the limit off


def test_changing_prices_after_t_leaves_the_past_unchanged(world):
    inputs, contexts, market = world
    cut = market.dates[200]
    base = run_backtest(Momentum(), contexts, market, BacktestConfig(limits=LIMITS))
    changed = synthetic_inputs(tickers=8, days=320)
    changed.prices = inputs.prices.copy()
    changed.sectors = inputs.sectors
    later = changed.prices["date"] > cut
    changed.prices.loc[later, ["open", "high", "low", "close"]] *= np.random.default_rng(3).uniform(
        0.5, 1.5, (later.sum(), 1)
    )
    after = run_backtest(Momentum(), *setup(changed), BacktestConfig(limits=LIMITS))
    for name in ("equity", "trades", "decisions"):
        a, b = getattr(base, name), getattr(after, name)
        pd.testing.assert_frame_equal(
            a[a["date"] <= cut].reset_index(drop=True), b[b["date"] <= cut].reset_index(drop=True)
        )
    assert not base.equity.equals(after.equity)
    assert (base.trades["date"] <= cut).sum() > 5


def test_costs_fills_and_delisting(world):
    _, contexts, market = world
    free = run_backtest(
        Momentum(), contexts, market, BacktestConfig(commission_bps=0, slippage_bps=0)
    )
    paid = run_backtest(
        Momentum(), contexts, market, BacktestConfig(commission_bps=20, slippage_bps=30)
    )
    assert paid.equity["equity"].iloc[-1] < free.equity["equity"].iloc[-1]
    assert free.trades["cost"].sum() == 0 and paid.trades["cost"].sum() > 0
    first = paid.trades.iloc[0]
    day = market.dates.get_loc(first["date"])
    col = market.tickers.get_loc(first["ticker"])
    assert first["price"] == pytest.approx(market.open[day, col] * 1.003)  # next open + slippage
    decided = paid.decisions[paid.decisions["status"] != "skipped"]["date"].min()
    assert first["date"] > decided  # fills come after the decision, never on its bar
    assert "next bar open" in paid.notes["fills"]


class HoldT7:
    name = "t7"

    def signals(self, contexts):
        return [signal("BUY" if t == "T7" else "SKIP", 1.0, 365) for t in contexts.frame["ticker"]]


def test_a_delisted_name_is_sold_at_its_last_close_when_its_bar_goes_missing(world):
    inputs, contexts, market = world
    result = run_backtest(HoldT7(), contexts, market, BacktestConfig(limits=LIMITS))
    exit_ = result.trades[result.trades["reason"] == "no_bar"]
    assert len(exit_) == 1 and exit_["ticker"].iloc[0] == "T7"
    last = inputs.prices.loc[inputs.prices["ticker"] == "T7", "date"].max()
    assert exit_["date"].iloc[0] == market.dates[market.dates.get_loc(last) + 1]
    last_close = inputs.prices.set_index(["ticker", "date"]).loc[("T7", last), "close"]
    assert exit_["price"].iloc[0] == pytest.approx(last_close * (1 - 5e-4))  # less slippage


def test_benchmark_hold_is_the_index_less_one_entry_cost(world):
    _, contexts, market = world
    result = run_backtest(
        BenchmarkHold(), contexts, market, BacktestConfig(commission_bps=5, slippage_bps=5)
    )
    eq = result.equity
    assert eq["equity"].iloc[-1] == pytest.approx(eq["benchmark"].iloc[-1] * 0.999)


def test_run_backtest_runs_each_kind_with_its_own_function(world):
    _, contexts, market = world
    config = BacktestConfig(limits=LIMITS)
    rule, source = make_strategy("equal_weight", every="week"), Momentum()
    runs = {
        "benchmark": (BenchmarkHold(), run_benchmark(contexts, market, config)),
        "rule": (rule, run_rule(rule, contexts, market, config)),
        "signals": (source, run_signals(source, contexts, market, config)),
    }
    for strategy, direct in runs.values():
        by_kind = run_backtest(strategy, contexts, market, config)
        assert by_kind.name == direct.name == strategy.name
        for part in ("equity", "trades", "decisions"):
            pd.testing.assert_frame_equal(getattr(by_kind, part), getattr(direct, part))
    ruled = runs["rule"][1]
    # a rule is its own risk model: no stops, only its rebalances and the forced exits
    assert set(ruled.trades["reason"]) == {"rebalance", "no_bar"} and ruled.decisions.empty
    assert len(runs["signals"][1].decisions) == len(contexts.frame)
