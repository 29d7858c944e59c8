"""The broker of a backtest: one account's cash and positions, its fills and their costs.

The engine (`synthpm.backtest.engine`) runs every strategy's days through a `Broker`; the
fill, cost and idle-cash rules are stated on the class, where they are implemented. The
account's state has one shape per reader, each converted here: `Broker.book` (the portfolio
manager's `Book`) and `Broker.state` (the `PortfolioState` a prompt shows).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd

from synthpm.context import PortfolioState, Position
from synthpm.portfolio.manager import Book, Order

if TYPE_CHECKING:
    from synthpm.backtest.engine import BacktestConfig
    from synthpm.backtest.market import Market

HISTORY = 13  # decision dates of equity history a context's portfolio state shows


class Trade(NamedTuple):
    """One fill: a row of trades.csv."""

    date: pd.Timestamp
    ticker: str
    side: str  # BUY | SELL | SHORT | COVER
    shares: float
    price: float  # after slippage
    value: float
    cost: float  # commission and slippage (and the index leg, with idle cash in the index)
    reason: str  # the order's reason
    pnl: float  # realised, net of both sides' costs; NaN for an opening fill
    holding_days: float  # calendar days since the entry; NaN for an opening fill


TRADE_COLUMNS = list(Trade._fields)


class Broker:
    """Cash, signed shares and cost basis per column of the market; fills orders, records trades.

    - **Fills** at the next bar's open; where the data have no open (close-only sources such
      as the embedded adjusted closes) or `fill="close"`, at the next bar's close. A queued
      order whose name has no bar that day is dropped (counted in the run's notes). Sells fill
      before buys; a buy the cash cannot pay for at the fill price is cut to what the cash
      pays for, so cash never goes negative (shorts, for portfolio rules, add their proceeds
      to cash).
    - **Costs.** Slippage moves the fill price against the trade by `slippage_bps`;
      commission is `commission_bps` of the traded value. A position's cost basis includes
      its entry costs, so a trade's realised P&L is net of both sides. Shares are fractional.
    - **Idle cash** (`idle_cash`, the same for every strategy). "cash": it earns nothing.
      "benchmark": it is swept into the benchmark index (`sweep`): each bar, after that bar's
      fills, the cash balance (short proceeds included) grows by the index's close-to-close
      return, so no fill is sized with cash that counts bar t's close; proceeds of an open
      fill earn the whole bar's index return, cash spent at the open none of it (exact with
      fills at the close). A stock buy is paid for by selling the index, and a stock sale's
      proceeds buy it, so every stock trade also pays `commission_bps + slippage_bps` of its
      value for that index trade, on top of its own costs (in the trade's `cost`, its cost
      basis and its P&L); the manager sizes buys with that cost too (`cost_rate`). Cash stays
      positive (its growth factor is). The engine's `run_benchmark` is unaffected.
    """

    def __init__(self, market: Market, config: BacktestConfig):
        n = len(market.tickers)
        self.market, self.cash = market, config.initial_cash
        self.shares = np.zeros(n)
        self.basis = np.zeros(n)  # average cost per share, entry costs included
        self.entry = np.zeros(n, dtype=np.int64)  # day index of the first fill
        self.hold_until = np.full(n, np.iinfo(np.int64).max)  # day index
        self.slip = config.slippage_bps / 1e4
        # with idle cash in the index, each fill has an index trade on its other side: its
        # cost rides on the commission, so the cash check, cost, basis and P&L all count it
        index_leg = (
            (config.commission_bps + config.slippage_bps) / 1e4
            if config.idle_cash == "benchmark"
            else 0.0
        )
        self.comm = config.commission_bps / 1e4 + index_leg
        self.cost_rate = (config.slippage_bps + config.commission_bps) / 1e4 + index_leg
        self.use_open = config.fill == "open"
        self.trades: list[Trade] = []
        self.closed: list[float] = []  # realised returns of closing fills, oldest first
        self.dropped = 0

    @classmethod
    def from_holdings(
        cls, market: Market, config: BacktestConfig, cash: float, holdings: pd.DataFrame
    ) -> Broker:
        """An account holding `holdings` (columns ticker, shares, cost_basis per share with
        entry costs, entry_date; long only) and `cash`: a live book (`synthpm decide --book`).
        Entry dates before the market's first date count from its first date; the positions
        have no hold expiry (no signal set one), stops and take profit apply."""
        broker = cls(market, config)
        broker.cash = float(cash)
        cols = market.tickers.get_indexer(holdings["ticker"])
        broker.shares[cols] = holdings["shares"].to_numpy(dtype=np.float64)
        broker.basis[cols] = holdings["cost_basis"].to_numpy(dtype=np.float64)
        entry = pd.to_datetime(holdings["entry_date"])
        broker.entry[cols] = np.maximum(market.dates.searchsorted(entry), 0)
        return broker

    def price(self, t: int, col: int) -> float:
        if self.use_open:
            p = self.market.open[t, col]
            if p == p:  # not NaN
                return float(p)
        return float(self.market.close[t, col])

    def fill(self, t: int, orders: list[Order], at_last_close: bool = False) -> None:
        for order in sorted(orders, key=lambda o: o.shares > 0):  # sells first
            col = order.column
            p = float(self.market.mark[t, col]) if at_last_close else self.price(t, col)
            if not np.isfinite(p) or p <= 0:
                self.dropped += 1
                continue
            q = order.shares
            if q > 0:  # buying: a long entry or add, or a short cover
                exec_price = p * (1 + self.slip)
                q = min(q, self.cash / (exec_price * (1 + self.comm)))
                if q * exec_price < 1e-9:
                    continue
            else:
                exec_price = p * (1 - self.slip)
            self._record(t, col, q, p, exec_price, order)

    def _record(self, t: int, col: int, q: float, p: float, exec_price: float, order: Order):
        held = self.shares[col]
        if held != 0 and np.sign(q) != np.sign(held) and abs(q) > abs(held):
            q = -held  # an exit never turns a position around (rules split such orders)
        value = abs(q) * exec_price
        cost = value * self.comm + abs(q) * abs(exec_price - p)
        self.cash -= q * exec_price + value * self.comm
        closing = held != 0 and np.sign(q) != np.sign(held)
        pnl = days = np.nan
        if closing:
            closed = min(abs(q), abs(held))
            unit_cost = self.comm * exec_price * np.sign(held)
            pnl = (exec_price - self.basis[col] - unit_cost) * closed * np.sign(held)
            days = (self.market.dates[t] - self.market.dates[self.entry[col]]).days
            self.closed.append(pnl / (self.basis[col] * closed))
            side = "SELL" if held > 0 else "COVER"
        else:
            side = "BUY" if q > 0 else "SHORT"
            per_share = exec_price * (1 + self.comm) if q > 0 else exec_price * (1 - self.comm)
            total = abs(held) + abs(q)
            self.basis[col] = (self.basis[col] * abs(held) + per_share * abs(q)) / total
            if held == 0:
                self.entry[col] = t
            if order.hold_days:
                self.hold_until[col] = t + _trading_days(self.market.dates, t, order.hold_days)
        self.shares[col] = held + q
        if abs(self.shares[col]) < 1e-9:
            self.shares[col] = 0.0
            self.basis[col] = 0.0
            self.hold_until[col] = np.iinfo(np.int64).max
        self.trades.append(
            Trade(self.market.dates[t], self.market.tickers[col], side, abs(q), exec_price,
                   value, cost, order.reason, pnl, days)
        )  # fmt: skip

    def sweep(self, t: int) -> None:
        """Idle cash in the index: grow the cash by the index's return into bar t."""
        growth = self.market.benchmark[t] / self.market.benchmark[t - 1]
        if np.isfinite(growth):  # no index level yet: the cash waits
            self.cash *= growth

    def sell_missing(self, t: int) -> None:
        """Sell, at its last close, every held name that has no bar at t."""
        gone = np.flatnonzero((self.shares != 0) & ~np.isfinite(self.market.close[t]))
        if len(gone):
            self.fill(t, [Order(c, -self.shares[c], "no_bar") for c in gone], True)

    def book(self, t: int, peak: float) -> Book:
        """The manager's view at the close of t (`Book`)."""
        return Book(self.cash, self.shares, np.nan_to_num(self.market.mark[t]), peak)

    def state(self, t: int, equity: float, history: list[float], peak: float) -> PortfolioState:
        """The live book as the `PortfolioState` a prompt shows (long positions)."""
        market = self.market
        mark = market.mark[t]
        positions = [
            Position(
                ticker=str(market.tickers[c]),
                sector=market.sector_names[market.sectors[c]],
                weight=min(1.0, float(self.shares[c] * mark[c] / equity)),
                unrealised_return=float(mark[c] / self.basis[c] - 1.0),
                days_held=int((market.dates[t] - market.dates[self.entry[c]]).days),
            )
            for c in np.flatnonzero(self.shares > 0)
        ]
        invested = sum(p.weight for p in positions) * equity
        return PortfolioState.model_construct(
            cash=equity - invested,
            equity=equity,
            positions=positions,
            equity_history=[float(v) for v in history[-HISTORY:]],
            recent_trades=[round(r, 4) for r in self.closed[-10:]],
            peak=max(peak, equity),  # the manager's trailing peak: one drawdown for both
        )


def _trading_days(dates: pd.DatetimeIndex, t: int, calendar_days: int) -> int:
    """Trading days from t until `calendar_days` calendar days have passed."""
    end = dates[t] + pd.Timedelta(days=calendar_days)
    return max(1, int(dates.searchsorted(end)) - t)
