"""Idle cash held in the benchmark: the cash earns the index, stock trades pay the index leg."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import synthetic_inputs

from synthpm.backtest.engine import BacktestConfig, Market, run_backtest
from synthpm.dataset import build_contexts, decision_points
from synthpm.features import build_features
from synthpm.signals import Signal


@pytest.fixture(scope="module")
def world():
    inputs = synthetic_inputs(tickers=4, days=200)
    panel = build_features(inputs)
    contexts = build_contexts(inputs, panel, None, decision_points(panel.index, inputs.events))
    return contexts, Market.from_inputs(inputs)


class Idle:
    name = "idle"

    def signals(self, contexts):
        return [Signal(decision="SKIP", conviction=0.0, hold_duration_days=1, reasoning="")] * len(
            contexts
        )


class BuyT1:
    """Buys T1 whenever it is offered and holds it 30 days: trades both ways."""

    name = "t1"

    def signals(self, contexts):
        return [
            Signal(decision="BUY" if t == "T1" else "SKIP", conviction=1.0,
                   hold_duration_days=30, reasoning="")
            for t in contexts.frame["ticker"]
        ]  # fmt: skip


def test_a_book_that_never_trades_is_the_benchmark(world):
    contexts, market = world
    result = run_backtest(Idle(), contexts, market, BacktestConfig(idle_cash="benchmark"))
    eq = result.equity
    assert result.trades.empty
    np.testing.assert_allclose(eq["equity"], eq["benchmark"], rtol=1e-12)
    assert eq["benchmark"].nunique() > 1  # the index moved, and the cash with it
    assert result.notes["idle_cash"] == "benchmark"
    kept = run_backtest(Idle(), contexts, market, BacktestConfig())
    assert (kept.equity["equity"] == 1_000_000.0).all() and kept.notes["idle_cash"] == "cash"


def test_stock_trades_pay_the_index_leg_and_cash_between_trades_earns_the_index(world):
    contexts, market = world
    costs = {"commission_bps": 5.0, "slippage_bps": 5.0}
    swept = run_backtest(BuyT1(), contexts, market, BacktestConfig(idle_cash="benchmark", **costs))
    plain = run_backtest(BuyT1(), contexts, market, BacktestConfig(**costs))
    assert {"BUY", "SELL"} <= set(swept.trades["side"])
    slip = 5e-4
    for result, index_leg in ((plain, 0.0), (swept, 1e-3)):  # commission + slippage, per side
        t = result.trades
        moved = np.where(t["side"] == "BUY", slip / (1 + slip), slip / (1 - slip))
        np.testing.assert_allclose(t["cost"] / t["value"], 5e-4 + index_leg + moved, rtol=1e-9)
    # on a day without fills the cash grows by the index's return exactly
    eq = swept.equity.set_index("date")
    quiet = ~eq.index.isin(swept.trades["date"])
    quiet[0] = False
    growth = (eq["cash"] / eq["cash"].shift())[quiet]
    index = (eq["benchmark"] / eq["benchmark"].shift())[quiet]
    np.testing.assert_allclose(growth, index, rtol=1e-12)
    assert (eq["cash"] >= 0).all()
    # equity is still cash plus the marked shares
    shares = swept.trades.assign(
        q=np.where(swept.trades["side"] == "BUY", 1, -1) * swept.trades["shares"]
    ).pivot_table(index="date", columns="ticker", values="q", aggfunc="sum")
    held = shares.reindex(index=eq.index, columns=market.tickers).fillna(0).cumsum()
    marks = pd.DataFrame(market.mark, index=market.dates, columns=market.tickers).reindex(eq.index)
    np.testing.assert_allclose(eq["equity"], eq["cash"] + (held * marks).sum(axis=1), rtol=1e-9)
