"""The portfolio manager: deterministic code that turns signals into orders under hard limits.

The model says what and how sure; this says how much (docs/design.md §8). For each decision date:

1. SELL signals on held names become exit orders (the manager is long-only: a SELL on a name
   not held is rejected, `not_held`); SKIPs are logged as `skipped`.
2. BUY signals, highest conviction first (ticker breaks ties), want
   `max_position x (1 + r) / 2` of equity, where r in (0, 1] is the conviction's percentile
   rank among the date's BUY signals (rank / count; ties share their average rank), so the
   strongest BUY wants the full position cap, the weakest of many about half of it, and a
   lone BUY the cap (`wanted_weights`). Ranking, not scaling, because a conviction times a
   fixed allocation ended at the cap above conviction 0.5 and never changed a size. The
   wanted weight is then cut to the tightest of:
   - the position cap (`max_position` of equity, counting what is already held),
   - the sector cap (`max_sector`, counting held and already-ordered names of the sector),
   - the cash above the floor (`cash_floor` of equity, after this date's earlier orders and
     the estimated proceeds of this date's exits, less costs);
   and rejected outright in a drawdown beyond `derisk_drawdown` from the peak of the last
   `derisk_window` days (`drawdown`), when the book
   already holds `max_positions` names (`max_positions`), or when the cut leaves less than
   `MIN_ORDER` of equity (the reason is the limit that bound). `limits.room_for_buy` is
   that rule, shared with the hindsight labels.
3. Every signal gets an `Outcome`, one row of the run's decisions: `executed` (with its
   size), `resized` (with the limit that bound) or `rejected`/`skipped` (with the reason).
   `decide` returns them with the orders as a `Plan`.

Sizes are dollars at the decision date's close; the engine fills the shares at the next bar
and may cut a buy again if the fill price leaves too little cash (it never lets cash go
negative). Exits on stop loss, take profit and hold expiry are the engine's (they happen on
any day, not only on decision dates).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from synthpm.context import PortfolioState
from synthpm.limits import MIN_ORDER, Limits, drawdown, room_for_buy
from synthpm.signals import Signal

__all__ = ["MIN_ORDER", "Book", "Order", "Outcome", "Plan", "PortfolioManager", "wanted_weights"]


@dataclass(frozen=True, slots=True)
class Order:
    column: int  # the ticker's column in the engine's price arrays
    shares: float  # > 0 buy, < 0 sell
    reason: str  # signal | sell_signal | stop_loss | take_profit | hold_expiry | rebalance
    hold_days: int = 0  # calendar days a new position is held (signals only)


Status = Literal["executed", "resized", "rejected", "skipped"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the manager did with one signal: a row of the run's `decisions`."""

    status: Status
    size: float  # dollars at the decision close (0 when nothing is traded)
    reason: str  # the binding limit, why it was refused, or "" for a full-size BUY


@dataclass(frozen=True, slots=True)
class Plan:
    """A decision date's result: the orders to fill at the next bar, and each signal's outcome
    in the signals' order."""

    orders: list[Order]
    outcomes: list[Outcome]


@dataclass(frozen=True)
class Book:
    """The manager's view of the portfolio at a decision close: arrays by engine column.

    Not a second portfolio state, a view of one: the backtest builds it from its account
    (`Broker.book`, `synthpm.backtest.broker`), and `from_state` from a `PortfolioState`
    (the shape the prompt, the scenarios and the labels read), so both judge the same book.
    """

    cash: float
    shares: np.ndarray  # per column, signed
    close: np.ndarray  # per column, the decision date's close (last known for a gap)
    peak_equity: float

    @classmethod
    def from_state(cls, state: PortfolioState, tickers: Sequence[str], close: np.ndarray) -> Book:
        """The book of a `PortfolioState`: each position's shares at `close`, by the column of
        its ticker in `tickers`; the state's cash and drawdown peak."""
        shares = np.zeros(len(tickers))
        column = {t: i for i, t in enumerate(tickers)}
        for p in state.positions:
            j = column[p.ticker]
            shares[j] = p.weight * state.equity / close[j]
        return cls(state.cash, shares, np.asarray(close, dtype=np.float64), state.peak_equity)

    @property
    def values(self) -> np.ndarray:
        return np.where(self.shares != 0, self.shares * self.close, 0.0)

    @property
    def equity(self) -> float:
        return self.cash + float(self.values.sum())


def wanted_weights(convictions: np.ndarray, max_position: float) -> np.ndarray:
    """Each BUY's wanted weight of equity from its conviction's rank among the date's BUYs:
    `max_position x (1 + r) / 2`, r = average rank / count, in (0, 1]."""
    r = pd.Series(convictions, dtype=np.float64).rank(method="average", pct=True).to_numpy()
    return max_position * (1.0 + r) / 2.0


class PortfolioManager:
    def __init__(self, limits: Limits | None = None, cost_rate: float = 0.0):
        self.limits = limits or Limits()
        self.cost_rate = cost_rate  # commission + slippage, as a fraction of traded value

    def decide(
        self,
        book: Book,
        columns: np.ndarray,  # each signal's column
        sectors: np.ndarray,  # sector code (int) of every column
        signals: list[Signal],
        leaving: set[int],  # columns the engine already exits at the next bar
    ) -> Plan:
        """The date's orders, and per signal its `Outcome` (the module docstring's rules)."""
        lim = self.limits
        equity = book.equity
        values = book.values
        out: dict[int, Outcome] = {}  # by signal
        orders: list[Order] = []
        leaving = set(leaving)
        for i, signal in enumerate(signals):
            col = int(columns[i])
            if signal.decision == "SKIP":
                out[i] = Outcome("skipped", 0.0, "signal is SKIP")
            elif signal.decision == "SELL":
                if book.shares[col] <= 0:
                    out[i] = Outcome("rejected", 0.0, "not_held")
                elif col in leaving:
                    out[i] = Outcome("executed", 0.0, "already exiting")
                else:
                    leaving.add(col)
                    orders.append(Order(col, -float(book.shares[col]), "sell_signal"))
                    out[i] = Outcome("executed", float(values[col]), "sell_signal")
        held = {int(c) for c in np.flatnonzero(book.shares > 0)} - leaving
        proceeds = sum(float(values[c]) for c in leaving) * (1 - self.cost_rate)
        cash = book.cash + proceeds
        ordered = np.zeros_like(values)
        staying = np.where(book.shares > 0, values, 0.0)
        staying[list(leaving)] = 0.0
        sector_value = np.bincount(sectors, weights=staying, minlength=int(sectors.max()) + 1)
        fall = drawdown(equity, book.peak_equity)

        def share(value: float) -> float:  # of equity; a book worth nothing has room for none
            return value / equity if equity > 0 else 0.0

        buys = [i for i, s in enumerate(signals) if s.decision == "BUY"]
        wants = wanted_weights(np.array([signals[i].conviction for i in buys]), lim.max_position)
        want = dict(zip(buys, wants, strict=True))
        buys.sort(key=lambda i: (-signals[i].conviction, str(columns[i])))
        for i in buys:
            signal, col = signals[i], int(columns[i])
            if col in leaving:
                out[i] = Outcome("rejected", 0.0, "exiting")
                continue
            room, reason = room_for_buy(
                lim,
                wanted=float(want[i]),
                drawdown=fall,
                holds=len(held),
                holding=col in held,
                cash=share(cash),
                sector=share(sector_value[sectors[col]]),
                position=share(staying[col] + ordered[col]),
                cost_rate=self.cost_rate,
            )
            if room == 0.0:
                out[i] = Outcome("rejected", 0.0, reason)
                continue
            size = room * equity
            orders.append(Order(col, size / book.close[col], "signal", signal.hold_duration_days))
            ordered[col] += size
            sector_value[sectors[col]] += size
            cash -= size * (1 + self.cost_rate)
            held.add(col)
            out[i] = Outcome("resized", size, reason) if reason else Outcome("executed", size, "")
        return Plan(orders, [out[i] for i in range(len(signals))])
