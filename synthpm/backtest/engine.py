"""The backtest engine: event-driven over precomputed contexts, one day loop for every strategy.

Three entry points, one per kind of strategy (`synthpm.strategies.base`): `run_signals` (a
signal source, sized by the portfolio manager), `run_rule` (a portfolio rule's target
weights) and `run_benchmark` (the index, held); `run_backtest` runs a strategy by the kind
it declares. The first two share the day loop (`_simulate`) and the broker (`Broker`, in
`synthpm.backtest.broker`, which states the fill, cost and idle-cash rules); `Market`
(`synthpm.backtest.market`) holds the prices.

Semantics (the assumptions a reader needs to trust the figures):
- **Time.** Each trading day t: (1) orders decided at t-1 fill at bar t; (2) positions are
  marked at the close of t; (3) a held name with no bar at t (delisted, or halted) is sold
  at its last close, the first day its bar is missing (so a delisting is known when it
  happens, not before); (4) the engine queues exits for take profit, hold expiry and the
  stop loss (where the limits set one), judged on the close of t; (5) on a decision date
  the strategy sees that date's contexts (and, for a rule, closes up to t) and its orders
  are queued for bar t+1. Nothing at t reads a price after t.
- **Dividends** are not paid separately: returns are those of the stored closes (adjusted
  closes, as in the embedded data, include dividends; raw closes do not). The run's
  metrics.json states which fills and closes were used, and the benchmark's kind: a total
  return index, or a price index (no dividends: every excess figure leans positive).
- **Universe.** Strategies see only the contexts of each date's index members. A held name
  that leaves the index is sold at the next bar (`left_universe`), like a stop loss, for
  every strategy: the book holds only what the strategy may choose from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from synthpm.backtest.broker import TRADE_COLUMNS, Broker, Trade
from synthpm.backtest.market import BENCHMARK_NOTES, Market
from synthpm.context import Contexts
from synthpm.data.validate import IsoDate
from synthpm.limits import Limits
from synthpm.portfolio.manager import MIN_ORDER, Order, Outcome, PortfolioManager
from synthpm.signals import Signal, SignalSource
from synthpm.strategies.base import PortfolioRule, kind_of

IdleCash = Literal["cash", "benchmark"]
IDLE_CASH_NOTES = {
    "cash": "idle cash earns nothing",
    "benchmark": "idle cash is held in the benchmark index; every stock trade also pays "
    "commission + slippage for the index trade on its other side",
}


class BacktestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: IsoDate | None = Field(None, description="first date (YYYY-MM-DD)")
    end: IsoDate | None = Field(None, description="last date (YYYY-MM-DD)")
    initial_cash: float = Field(1_000_000.0, gt=0)
    commission_bps: float = Field(5.0, ge=0, description="commission, basis points of traded value")
    slippage_bps: float = Field(5.0, ge=0, description="slippage, basis points of price")
    fill: Literal["open", "close"] = "open"
    idle_cash: IdleCash = Field(  # "benchmark": swept into the index (`Broker`)
        "cash",
        description="idle cash: earns nothing, or held in the benchmark index (every strategy)",
    )
    limits: Limits = Field(default_factory=Limits)


class BenchmarkHold:
    """The benchmark as a strategy (`run_benchmark`): the index, bought at the first bar and
    held (the index is not a panel column)."""

    name = "benchmark"
    kind = "benchmark"


@dataclass
class BacktestResult:
    name: str
    equity: pd.DataFrame  # date, equity, cash, benchmark, exposure, positions
    trades: pd.DataFrame  # TRADE_COLUMNS
    decisions: pd.DataFrame  # DECISION_COLUMNS (signal sources only)
    notes: dict
    # the orders queued at the last day's close for the next bar (PENDING_COLUMNS): what a
    # live run (`synthpm decide`) places; a backtest ends before they fill
    pending: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PENDING_COLUMNS))


DECISION_COLUMNS = [
    "date", "ticker", "source", "decision", "conviction", "hold_days", "reasoning", "status",
    "size", "reason",
]  # fmt: skip


PENDING_COLUMNS = ["ticker", "shares", "value", "reason", "hold_days"]

# Called on each decision date of a signal source with the date's contexts (the live book in
# `portfolio`, the run's limits), its signals and the manager's outcomes: the journal's hook.
Recorder = Callable[[Contexts, list[Signal], list[Outcome]], None]


@dataclass(frozen=True)
class _Day:
    """A decision date as a strategy's hook sees it."""

    t: int  # day index into the market's arrays
    rows: pd.DataFrame  # the date's contexts
    columns: np.ndarray  # each row's column in the market's arrays
    equity: float  # marked at the close of t
    peak: float  # of daily equity over the trailing `derisk_window` days
    exits: list[Order]  # the engine's exits already queued for the next bar


def run_backtest(
    strategy,
    contexts: Contexts,
    market: Market,
    config: BacktestConfig | None = None,
    record: Recorder | None = None,
) -> BacktestResult:
    """Run a strategy by the kind it declares (`strategies.base.kind_of`); `record` sees a
    signal source's decisions (`run_signals`)."""
    match kind_of(strategy):
        case "benchmark":
            return run_benchmark(contexts, market, config)
        case "rule":
            return run_rule(strategy, contexts, market, config)
        case _:
            return run_signals(strategy, contexts, market, config, record=record)


def run_signals(
    source: SignalSource,
    contexts: Contexts,
    market: Market,
    config: BacktestConfig | None = None,
    *,
    broker: Broker | None = None,
    record: Recorder | None = None,
) -> BacktestResult:
    """A signal source: on each decision date it reads the contexts with the live book (the
    contexts' `portfolio`) and the run's limits; the portfolio manager sizes its signals,
    and every signal is logged with its outcome. The engine's exits cover long positions'
    stop loss, take profit and hold expiry.

    `broker`: start from this account (a live book, `Broker.from_holdings`) instead of
    `initial_cash`; `record`: called on each decision date (the journal's hook)."""
    config = config or BacktestConfig()
    broker = broker or Broker(market, config)
    manager = PortfolioManager(config.limits, broker.cost_rate)
    decisions: dict[str, list] = {c: [] for c in DECISION_COLUMNS}
    history: list[float] = []  # equity on each decision date

    def decide(day: _Day) -> list[Order]:
        history.append(day.equity)
        state = broker.state(day.t, day.equity, history, day.peak)
        shown = Contexts(day.rows, contexts.benchmark, state, config.limits)
        signals = source.signals(shown)
        leaving = {o.column for o in day.exits}
        book = broker.book(day.t, day.peak)
        plan = manager.decide(book, day.columns, market.sectors, signals, leaving)
        _log(decisions, day.rows, source.name, signals, plan.outcomes)
        if record is not None:
            record(shown, signals, plan.outcomes)
        return day.exits + plan.orders

    equity, pending = _simulate(contexts, market, config, broker, decide, stops=True)
    result = _result(source.name, equity, broker, pd.DataFrame(decisions), config)
    result.pending = _pending(broker, pending, _days(contexts, market, config).stop - 1)
    return result


def run_rule(
    rule: PortfolioRule, contexts: Contexts, market: Market, config: BacktestConfig | None = None
) -> BacktestResult:
    """A portfolio rule: on the decision dates its schedule picks, the book is traded to its
    target weights (no manager, no stops: a rule is its own risk model; only names leaving
    the universe are sold between rebalances). No decisions are logged."""
    config = config or BacktestConfig()
    broker = Broker(market, config)
    previous: pd.Timestamp | None = None  # the last rebalance

    def decide(day: _Day) -> list[Order]:
        nonlocal previous
        date = market.dates[day.t]
        # only on scheduled review days: an off-schedule 8-K day has the contexts of the
        # filers alone, not the universe a rule weighs
        if not (day.rows["trigger"] == "scheduled").any() or not rule.rebalance(date, previous):
            return day.exits
        previous = date
        day_contexts = Contexts(day.rows, contexts.benchmark)
        weights = rule.weights(date, day_contexts, market.closes.iloc[: day.t + 1])
        return orders_to_weights(broker, day.t, weights, day.equity)

    equity, _ = _simulate(contexts, market, config, broker, decide, stops=False)
    decisions = pd.DataFrame({c: [] for c in DECISION_COLUMNS})
    return _result(rule.name, equity, broker, decisions, config)


def run_benchmark(
    contexts: Contexts, market: Market, config: BacktestConfig | None = None
) -> BacktestResult:
    """The index bought at the first close of the run's dates with one entry cost (commission
    and slippage), then held: the same days as every other strategy of the run."""
    config = config or BacktestConfig()
    days = _days(contexts, market, config)
    t0, t1 = days.start, days.stop - 1
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
    trade = Trade(
        market.dates[t0], "INDEX", "BUY", config.initial_cash * (1 - cost) / market.benchmark[t0],
        market.benchmark[t0], config.initial_cash, config.initial_cash * cost, "benchmark",
        np.nan, np.nan,
    )  # fmt: skip
    return BacktestResult(
        BenchmarkHold.name,
        frame,
        pd.DataFrame([trade], columns=TRADE_COLUMNS),
        pd.DataFrame(columns=DECISION_COLUMNS),
        _notes(market, config, 0),
    )


def _days(contexts: Contexts, market: Market, config: BacktestConfig) -> range:
    """The run's trading days, as indices into the market's arrays: from `config.start` (else
    the first decision date) to `config.end` (else the last bar)."""
    frame = contexts.frame
    first = pd.Timestamp(config.start) if config.start else frame["date"].min()
    last = pd.Timestamp(config.end) if config.end else market.dates[-1]
    t0 = int(market.dates.searchsorted(first))
    t1 = int(market.dates.searchsorted(last, "right")) - 1
    if t0 > t1:
        raise ValueError(f"no trading days between {first.date()} and {last.date()}")
    return range(t0, t1 + 1)


def _simulate(
    contexts: Contexts,
    market: Market,
    config: BacktestConfig,
    broker: Broker,
    decide: Callable[[_Day], list[Order]],
    stops: bool,
) -> tuple[pd.DataFrame, list[Order]]:
    """The day loop of signal sources and rules, in the order of events the module docstring
    states; on a decision date `decide` returns the orders for the next bar. Returns the
    equity frame, a row a day, and the orders left queued after the last day."""
    days = _days(contexts, market, config)
    frame = contexts.frame
    first, last = market.dates[days.start], market.dates[days.stop - 1]
    in_range = (frame["date"] >= first) & (frame["date"] <= last)
    frame = frame[in_range.to_numpy()]
    groups = frame.groupby("date", sort=True).indices
    decision_day = {int(market.dates.get_loc(d)): rows for d, rows in groups.items()}
    columns = market.tickers.get_indexer(frame["ticker"])
    lim = config.limits
    rows = []
    pending: list[Order] = []
    marks: list[float] = []  # daily equity, for the trailing peak of drawdown de-risking
    bench0 = market.benchmark[days.start]
    for t in days:
        if pending:
            broker.fill(t, pending)
            pending = []
        if config.idle_cash == "benchmark" and t > days.start:
            broker.sweep(t)  # after the fills: a fill's cash check never sees t's close
        broker.sell_missing(t)
        values = broker.shares * np.nan_to_num(market.mark[t])
        equity = broker.cash + values.sum()
        marks.append(equity)
        peak = max(marks[-lim.derisk_window :])
        pending = _exits(broker, t, lim, stops)
        if t in decision_day:
            at = decision_day[t]
            pending = decide(_Day(t, frame.iloc[at], columns[at], equity, peak, pending))
        bench = config.initial_cash * market.benchmark[t] / bench0
        exposure = np.abs(values).sum() / equity if equity > 0 else 0.0
        held = int((broker.shares != 0).sum())
        rows.append((market.dates[t], equity, broker.cash, bench, exposure, held))
    equity = pd.DataFrame(
        rows, columns=["date", "equity", "cash", "benchmark", "exposure", "positions"]
    )
    return equity, pending


def _pending(broker: Broker, orders: list[Order], t: int) -> pd.DataFrame:
    """Orders queued at the close of day t, valued at that close."""
    market = broker.market
    return pd.DataFrame(
        [
            (str(market.tickers[o.column]), o.shares, o.shares * float(market.mark[t, o.column]),
             o.reason, o.hold_days)
            for o in orders
        ],
        columns=PENDING_COLUMNS,
    )  # fmt: skip


def _result(
    name: str, equity: pd.DataFrame, broker: Broker, decisions: pd.DataFrame, config: BacktestConfig
) -> BacktestResult:
    trades = pd.DataFrame(broker.trades, columns=TRADE_COLUMNS)
    return BacktestResult(
        name, equity, trades, decisions, _notes(broker.market, config, broker.dropped)
    )


def _exits(broker: Broker, t: int, lim: Limits, stops: bool) -> list[Order]:
    """Positions that leave the universe at t (any strategy's), and with `stops` the stop
    loss, take profit and hold expiry of long positions, judged on the close of t."""
    market = broker.market
    held = np.flatnonzero(broker.shares > 0 if stops else broker.shares != 0)
    if not len(held):
        return []
    price = market.mark[t, held]
    change = price / broker.basis[held] - 1.0
    orders = []
    for col, move in zip(held, change, strict=True):
        if not market.member[t, col]:
            reason = "left_universe"
        elif not stops:
            continue
        elif lim.stop_loss is not None and move <= -lim.stop_loss:
            reason = "stop_loss"
        elif move >= lim.take_profit:
            reason = "take_profit"
        elif t >= broker.hold_until[col]:
            reason = "hold_expiry"
        else:
            continue
        orders.append(Order(int(col), -float(broker.shares[col]), reason))
    return orders


def orders_to_weights(broker: Broker, t: int, weights: pd.Series, equity: float) -> list[Order]:
    """Orders that move the book to the target weights (by the close of t)."""
    market = broker.market
    target = np.zeros(len(market.tickers))
    if len(weights):
        cols = market.tickers.get_indexer(weights.index)
        if (cols < 0).any():
            raise ValueError(f"weights name unknown tickers: {list(weights.index[cols < 0])[:5]}")
        target[cols] = weights.to_numpy(dtype=np.float64)
    price = market.mark[t]
    with np.errstate(invalid="ignore", divide="ignore"):
        wanted = np.where(target != 0, target * equity / price, 0.0)
    delta = wanted - broker.shares
    orders = []
    for col in np.flatnonzero(np.abs(delta * np.nan_to_num(price)) >= MIN_ORDER * equity):
        held, want = broker.shares[col], wanted[col]
        if held != 0 and want != 0 and np.sign(held) != np.sign(want):  # through zero: two fills
            orders += [
                Order(int(col), -float(held), "rebalance"),
                Order(int(col), float(want), "rebalance"),
            ]
        else:
            orders.append(Order(int(col), float(delta[col]), "rebalance"))
    return orders


def _log(
    decisions: dict, day: pd.DataFrame, source: str, signals: list[Signal], outcomes: list[Outcome]
) -> None:
    decisions["date"] += list(day["date"])
    decisions["ticker"] += list(day["ticker"])
    decisions["source"] += [source] * len(day)
    decisions["decision"] += [s.decision for s in signals]
    decisions["conviction"] += [s.conviction for s in signals]
    decisions["hold_days"] += [s.hold_duration_days for s in signals]
    decisions["reasoning"] += [s.reasoning for s in signals]
    decisions["status"] += [o.status for o in outcomes]
    decisions["size"] += [o.size for o in outcomes]
    decisions["reason"] += [o.reason for o in outcomes]


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
