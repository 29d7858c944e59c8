"""The backtest engine: event-driven over precomputed contexts, one code path for every strategy.

Semantics (the assumptions a reader needs to trust the figures):
- **Time.** Each trading day t: (1) orders decided at t-1 fill at bar t; (2) positions are
  marked at the close of t; (3) a held name with no bar at t (delisted, or halted) is sold
  at its last close, the first day its bar is missing (so a delisting is known when it
  happens, not before); (4) the engine
  queues exits for stop loss, take profit and hold expiry, judged on the close of t; (5) on a
  decision date the strategy sees that date's contexts (and, for a rule, closes up to t) and
  its orders are queued for bar t+1. Nothing at t reads a price after t.
- **Fills** at the next bar's open; where the data have no open (close-only sources such as
  the embedded adjusted closes) or `fill="close"`, at the next bar's close. A queued order
  whose name has no bar that day is dropped and logged (`no_bar`). Sells fill before buys;
  a buy the cash cannot pay for at the fill price is cut to what the cash pays for, so cash
  never goes negative (shorts, for portfolio rules, add their proceeds to cash).
- **Costs.** Slippage moves the fill price against the trade by `slippage_bps`; commission
  is `commission_bps` of the traded value. A position's cost basis includes its entry
  costs, so a trade's realised P&L is net of both sides. Shares are fractional.
- **Dividends** are not paid separately: returns are those of the stored closes (adjusted
  closes, as in the embedded data, include dividends; raw closes do not). The run's
  metrics.json states which fills and closes were used, and the benchmark's kind: a total
  return index, or a price index (no dividends: every excess figure leans positive).
- **Idle cash** (`idle_cash`, the same for every strategy). "cash": it earns nothing.
  "benchmark": it is swept into the benchmark index: each bar, after that bar's fills, the
  cash balance (short proceeds included) grows by the index's close-to-close return
  (cash *= benchmark[t] / benchmark[t-1]), so no fill is sized with cash that counts bar t's
  close; proceeds of an open fill earn the whole bar's index return, cash spent at the
  open none of it (exact with fills at the close). A stock buy is paid for by selling
  the index, and a stock sale's proceeds buy it, so every stock trade also pays
  `commission_bps + slippage_bps` of its value for that index trade, on top of its own
  costs (in the trade's `cost`, its cost basis and its P&L); the manager sizes buys with
  that cost too. Cash stays positive (its growth factor is). `BenchmarkHold` is unaffected.
- **Universe.** Strategies see only the contexts of each date's index members. A held name
  that leaves the index is sold at the next bar (`left_universe`), like a stop loss, for
  every strategy: the book holds only what the strategy may choose from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from synthpm.context import Contexts, PortfolioState, Position
from synthpm.data.universe import membership
from synthpm.features.market import benchmark_close, benchmark_kind
from synthpm.features.panel import PanelInputs
from synthpm.limits import Limits
from synthpm.portfolio.manager import MIN_ORDER, Book, Order, PortfolioManager
from synthpm.strategies.base import PortfolioRule

HISTORY = 13  # decision dates of equity history a context's portfolio state shows
# The S&P 500 price index's CAGR trails SPY's total return by 2.06 points a year over
# 2005-01-03 .. 2022-12-28 (1.81 over 2018-06 .. 2022-12), as measured by
# `benchmarks/benchmark_gap.py` (skfolio's index against ../shared's SPY adjusted closes).
BENCHMARK_NOTES = {
    "total_return": "total return index (dividends reinvested)",
    "price": "price index without dividends, while the stocks' adjusted closes include "
    "them: excess return, alpha and information ratio lean positive by the dividend yield "
    "(the S&P 500 price index trails its total return by about 2 points a year, 2005-2022)",
    "universe": "equal-weight universe of the stored closes (no index stored)",
}
IdleCash = Literal["cash", "benchmark"]
IDLE_CASH_NOTES = {
    "cash": "idle cash earns nothing",
    "benchmark": "idle cash is held in the benchmark index; every stock trade also pays "
    "commission + slippage for the index trade on its other side",
}


class BacktestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: str | None = None
    end: str | None = None
    initial_cash: float = Field(1_000_000.0, gt=0)
    commission_bps: float = Field(5.0, ge=0)
    slippage_bps: float = Field(5.0, ge=0)
    fill: Literal["open", "close"] = "open"
    idle_cash: IdleCash = "cash"  # "benchmark": swept into the index (module docstring)
    limits: Limits = Field(default_factory=Limits)


@dataclass
class Market:
    """Wide price arrays on one calendar, built once and shared by every strategy of a run."""

    dates: pd.DatetimeIndex
    tickers: pd.Index
    open: np.ndarray  # dates x tickers, NaN where there is no bar (or no open)
    close: np.ndarray
    mark: np.ndarray  # close carried forward: a held name's last known value
    benchmark: np.ndarray
    benchmark_name: str
    benchmark_kind: str  # "total_return", "price" or "universe" (`features.market`)
    member: np.ndarray  # dates x tickers: in the universe that day (all True without one)
    sectors: np.ndarray  # per ticker, an int code into sector_names
    sector_names: list[str]
    closes: pd.DataFrame = field(repr=False)  # `close` as a frame, for portfolio rules

    @classmethod
    def from_inputs(cls, inputs: PanelInputs) -> Market:
        closes = inputs.closes()
        opens = inputs.prices.pivot(index="date", columns="ticker", values="open").reindex(
            index=closes.index, columns=closes.columns
        )
        close = closes.to_numpy(dtype=np.float64)
        mark = closes.ffill().to_numpy(dtype=np.float64)
        bench, _ = benchmark_close(inputs.market, closes)
        kind, source = benchmark_kind(inputs.market)
        names = closes.columns.map(inputs.sectors).fillna("Unknown")
        codes, sector_names = pd.factorize(names)
        return cls(
            dates=closes.index,
            tickers=closes.columns,
            open=opens.to_numpy(dtype=np.float64),
            close=close,
            mark=mark,
            benchmark=bench.to_numpy(dtype=np.float64),
            benchmark_name=source,
            benchmark_kind=kind,
            member=membership(inputs.universe, closes.index, closes.columns),
            sectors=codes.astype(np.int64),
            sector_names=list(sector_names),
            closes=closes,
        )

    @property
    def close_only(self) -> bool:
        return not np.isfinite(self.open).any()


class BenchmarkHold:
    """Buy the benchmark at the first bar and hold it (the index is not a panel column)."""

    name = "benchmark"


@dataclass
class BacktestResult:
    name: str
    equity: pd.DataFrame  # date, equity, cash, benchmark, exposure, positions
    trades: pd.DataFrame
    decisions: pd.DataFrame
    notes: dict


TRADE_COLUMNS = [
    "date", "ticker", "side", "shares", "price", "value", "cost", "reason", "pnl", "holding_days"
]  # fmt: skip
DECISION_COLUMNS = [
    "date", "ticker", "source", "decision", "conviction", "hold_days", "reasoning", "status",
    "size", "reason",
]  # fmt: skip


class _Account:
    """Cash, signed shares and cost basis per column; fills orders and records trades."""

    def __init__(self, market: Market, cash: float, config: BacktestConfig):
        n = len(market.tickers)
        self.market, self.cash = market, cash
        self.shares = np.zeros(n)
        self.basis = np.zeros(n)  # average cost per share, entry costs included
        self.entry = np.zeros(n, dtype=np.int64)  # day index of the first fill
        self.hold_until = np.full(n, np.iinfo(np.int64).max)  # day index
        self.slip = config.slippage_bps / 1e4
        # with idle cash in the index, each fill has an index trade on its other side: its
        # cost rides on the commission, so the cash check, cost, basis and P&L all count it
        self.index_leg = (
            (config.commission_bps + config.slippage_bps) / 1e4
            if config.idle_cash == "benchmark"
            else 0.0
        )
        self.comm = config.commission_bps / 1e4 + self.index_leg
        self.use_open = config.fill == "open"
        self.trades: list[tuple] = []
        self.closed: list[float] = []  # realised returns of closing fills, oldest first
        self.dropped = 0

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
            self._book(t, col, q, p, exec_price, order)

    def _book(self, t: int, col: int, q: float, p: float, exec_price: float, order: Order):
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
            (self.market.dates[t], self.market.tickers[col], side, abs(q), exec_price, value,
             cost, order.reason, pnl, days)
        )  # fmt: skip


def _trading_days(dates: pd.DatetimeIndex, t: int, calendar_days: int) -> int:
    """Trading days from t until `calendar_days` calendar days have passed."""
    end = dates[t] + pd.Timedelta(days=calendar_days)
    return max(1, int(dates.searchsorted(end)) - t)


def run_backtest(
    strategy,
    contexts: Contexts,
    market: Market,
    config: BacktestConfig | None = None,
) -> BacktestResult:
    """Run one strategy (a SignalSource, a PortfolioRule or BenchmarkHold) over the contexts."""
    config = config or BacktestConfig()
    frame = contexts.frame
    first = pd.Timestamp(config.start) if config.start else frame["date"].min()
    last = pd.Timestamp(config.end) if config.end else market.dates[-1]
    t0 = int(market.dates.searchsorted(first))
    t1 = int(market.dates.searchsorted(last, "right")) - 1
    if t0 > t1:
        raise ValueError(f"no trading days between {first.date()} and {last.date()}")
    in_range = (frame["date"] >= market.dates[t0]) & (frame["date"] <= market.dates[t1])
    frame = frame[in_range.to_numpy()]
    groups = frame.groupby("date", sort=True).indices
    decision_day = {int(market.dates.get_loc(d)): rows for d, rows in groups.items()}
    columns = market.tickers.get_indexer(frame["ticker"])
    account = _Account(market, config.initial_cash, config)
    cost_rate = (config.slippage_bps + config.commission_bps) / 1e4 + account.index_leg
    manager = PortfolioManager(config.limits, cost_rate)
    sweep = config.idle_cash == "benchmark"
    lim = config.limits
    is_rule = isinstance(strategy, PortfolioRule)
    decisions: dict[str, list] = {c: [] for c in DECISION_COLUMNS}
    rows, history = [], []
    pending: list[Order] = []
    previous_rebalance = None
    marks: list[float] = []  # daily equity, for the trailing peak of drawdown de-risking
    bench0 = market.benchmark[t0]
    if isinstance(strategy, BenchmarkHold):
        return _benchmark_run(market, t0, t1, config)
    for t in range(t0, t1 + 1):
        if pending:
            account.fill(t, pending)
            pending = []
        if sweep and t > t0:  # after the fills: a fill's cash check never sees t's close
            growth = market.benchmark[t] / market.benchmark[t - 1]
            if np.isfinite(growth):  # no index level yet: the cash waits
                account.cash *= growth
        gone = np.flatnonzero((account.shares != 0) & ~np.isfinite(market.close[t]))
        if len(gone):
            account.fill(t, [Order(c, -account.shares[c], "no_bar") for c in gone], True)
        values = account.shares * np.nan_to_num(market.mark[t])
        equity = account.cash + values.sum()
        marks.append(equity)
        peak = max(marks[-lim.derisk_window :])
        pending = _exits(account, market, t, lim, signals=not is_rule)
        if t in decision_day:
            day = frame.iloc[decision_day[t]]
            date = market.dates[t]
            if is_rule:
                # only on scheduled review days: an off-schedule 8-K day has the contexts of
                # the filers alone, not the universe a rule weighs
                scheduled = (day["trigger"] == "scheduled").any()
                if scheduled and strategy.rebalance(date, previous_rebalance):
                    previous_rebalance = date
                    weights = strategy.weights(
                        date, Contexts(day, contexts.benchmark), market.closes.iloc[: t + 1]
                    )
                    pending = _rebalance(account, market, t, weights, equity)
            else:
                history.append(equity)
                state = _state(account, market, t, equity, history, peak)
                signals = strategy.signals(Contexts(day, contexts.benchmark, state, lim))
                book = Book(account.cash, account.shares, np.nan_to_num(market.mark[t]), peak)
                leaving = {o.column for o in pending}
                cols = columns[decision_day[t]]
                orders, outcome = manager.decide(book, cols, market.sectors, signals, leaving)
                pending += orders
                _log(decisions, day, strategy.name, signals, outcome)
        bench = config.initial_cash * market.benchmark[t] / bench0
        exposure = np.abs(values).sum() / equity if equity > 0 else 0.0
        rows.append(
            (
                market.dates[t],
                equity,
                account.cash,
                bench,
                exposure,
                int((account.shares != 0).sum()),
            )
        )
    equity_frame = pd.DataFrame(
        rows, columns=["date", "equity", "cash", "benchmark", "exposure", "positions"]
    )
    notes = _notes(market, config, account.dropped)
    return BacktestResult(
        strategy.name,
        equity_frame,
        pd.DataFrame(account.trades, columns=TRADE_COLUMNS),
        pd.DataFrame(decisions),
        notes,
    )


def _exits(
    account: _Account, market: Market, t: int, lim: Limits, signals: bool = True
) -> list[Order]:
    """Positions that leave the universe at t (any strategy's), and for signal strategies the
    stop loss, take profit and hold expiry of long positions, judged on the close of t."""
    held = np.flatnonzero(account.shares != 0 if not signals else account.shares > 0)
    if not len(held):
        return []
    price = market.mark[t, held]
    change = price / account.basis[held] - 1.0
    orders = []
    for col, move in zip(held, change, strict=True):
        if not market.member[t, col]:
            reason = "left_universe"
        elif not signals:
            continue
        elif move <= -lim.stop_loss:
            reason = "stop_loss"
        elif move >= lim.take_profit:
            reason = "take_profit"
        elif t >= account.hold_until[col]:
            reason = "hold_expiry"
        else:
            continue
        orders.append(Order(int(col), -float(account.shares[col]), reason))
    return orders


def _rebalance(account, market, t, weights: pd.Series, equity: float) -> list[Order]:
    """Orders that move the book to the target weights (by the close of t)."""
    target = np.zeros(len(market.tickers))
    if len(weights):
        cols = market.tickers.get_indexer(weights.index)
        if (cols < 0).any():
            raise ValueError(f"weights name unknown tickers: {list(weights.index[cols < 0])[:5]}")
        target[cols] = weights.to_numpy(dtype=np.float64)
    price = market.mark[t]
    with np.errstate(invalid="ignore", divide="ignore"):
        wanted = np.where(target != 0, target * equity / price, 0.0)
    delta = wanted - account.shares
    orders = []
    for col in np.flatnonzero(np.abs(delta * np.nan_to_num(price)) >= MIN_ORDER * equity):
        held, want = account.shares[col], wanted[col]
        if held != 0 and want != 0 and np.sign(held) != np.sign(want):  # through zero: two fills
            orders += [
                Order(int(col), -float(held), "rebalance"),
                Order(int(col), float(want), "rebalance"),
            ]
        else:
            orders.append(Order(int(col), float(delta[col]), "rebalance"))
    return orders


def _state(account, market, t, equity, history, peak) -> PortfolioState:
    """The live book as a `PortfolioState`, for signal sources that read it (the LM agent)."""
    held = np.flatnonzero(account.shares > 0)
    mark = market.mark[t]
    positions = [
        Position(
            ticker=str(market.tickers[c]),
            sector=market.sector_names[market.sectors[c]],
            weight=min(1.0, float(account.shares[c] * mark[c] / equity)),
            unrealised_return=float(mark[c] / account.basis[c] - 1.0),
            days_held=int((market.dates[t] - market.dates[account.entry[c]]).days),
        )
        for c in held
    ]
    invested = sum(p.weight for p in positions) * equity
    return PortfolioState.model_construct(
        cash=equity - invested,
        equity=equity,
        positions=positions,
        equity_history=[float(v) for v in history[-HISTORY:]],
        recent_trades=[round(r, 4) for r in account.closed[-10:]],
        peak=max(peak, equity),  # the manager's trailing peak: one drawdown for both
    )


def _log(decisions: dict, day: pd.DataFrame, source: str, signals, outcome) -> None:
    decisions["date"] += list(day["date"])
    decisions["ticker"] += list(day["ticker"])
    decisions["source"] += [source] * len(day)
    decisions["decision"] += [s.decision for s in signals]
    decisions["conviction"] += [s.conviction for s in signals]
    decisions["hold_days"] += [s.hold_duration_days for s in signals]
    decisions["reasoning"] += [s.reasoning for s in signals]
    decisions["status"] += [o[0] for o in outcome]
    decisions["size"] += [o[1] for o in outcome]
    decisions["reason"] += [o[2] for o in outcome]


def _benchmark_run(market: Market, t0: int, t1: int, config: BacktestConfig) -> BacktestResult:
    """The index bought at the first close with one entry cost, then held."""
    cost = (config.commission_bps + config.slippage_bps) / 1e4
    level = market.benchmark[t0 : t1 + 1] / market.benchmark[t0]
    equity = config.initial_cash * (1 - cost) * level
    frame = pd.DataFrame(
        {
            "date": market.dates[t0 : t1 + 1],
            "equity": equity,
            "cash": 0.0,
            "benchmark": config.initial_cash * level,
            "exposure": 1.0,
            "positions": 1,
        }
    )
    trade = [
        (market.dates[t0], "INDEX", "BUY", config.initial_cash * (1 - cost) / market.benchmark[t0],
         market.benchmark[t0], config.initial_cash, config.initial_cash * cost, "benchmark",
         np.nan, np.nan)
    ]  # fmt: skip
    return BacktestResult(
        "benchmark",
        frame,
        pd.DataFrame(trade, columns=TRADE_COLUMNS),
        pd.DataFrame(columns=DECISION_COLUMNS),
        _notes(market, config, 0),
    )


def _notes(market: Market, config: BacktestConfig, dropped: int) -> dict:
    fills = (
        "next bar close (the data have no opens)"
        if market.close_only or config.fill == "close"
        else "next bar open (close where a bar has no open)"
    )
    return {
        "fills": fills,
        "dividends": "not paid separately: returns of the stored closes (adjusted closes "
        "include dividends, raw closes do not)",
        "benchmark": market.benchmark_name,
        "benchmark_kind": market.benchmark_kind,
        "benchmark_note": BENCHMARK_NOTES[market.benchmark_kind],
        "costs": {"commission_bps": config.commission_bps, "slippage_bps": config.slippage_bps},
        "idle_cash": config.idle_cash,
        "idle_cash_note": IDLE_CASH_NOTES[config.idle_cash],
        "orders_dropped_no_bar": dropped,
        "limits": config.limits.model_dump(),
        "initial_cash": config.initial_cash,
    }
