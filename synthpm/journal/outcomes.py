"""Outcomes, filled in once the market reveals them (`synthpm journal update`).

- **Excess returns** at 5, 21 and 63 trading days: the stock's return from the close of the
  bar after the decision (the bar its order fills at) to the close h bars later, minus the
  benchmark's over the same bars (`features.market.benchmark_close`: the stored index, a
  total-return one where the store has it), gross of costs. NaN until the window has data.
- **Fills and realised P&L.** A paper account's fills come from replaying its journal
  through the engine (`journal.live`): the engine's trades, net of both sides' costs. A
  BUY's `pnl` is the realised P&L of the position it opened, summed over every closing
  trade (a SELL signal, a stop, hold expiry) until the position is flat; a SELL's is what
  its sale realised. A human's fills are the trades they imported; their P&L is on average
  cost at the prices they gave, without costs.
"""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pandas as pd

from synthpm.backtest.engine import BacktestConfig, run_signals
from synthpm.backtest.market import Market
from synthpm.context import Contexts
from synthpm.data.store import Store
from synthpm.features.market import benchmark_close
from synthpm.features.panel import PanelInputs
from synthpm.journal.live import Replay, fills_of
from synthpm.journal.records import read_account, read_journal, with_updates, write_entries

HORIZONS = {"excess_5d": 5, "excess_21d": 21, "excess_63d": 63}
# the columns an update reads: every one but the large context and prompt texts
LIGHT = ["id", "source", "account", "ticker", "date", "trigger", "signal", "decision",
         "status", "fills", *HORIZONS, "pnl"]  # fmt: skip


def excess_returns(inputs: PanelInputs, rows: pd.DataFrame) -> pd.DataFrame:
    """Per journal row (`date`, `ticker`): the excess return columns of `HORIZONS`."""
    closes = inputs.closes()
    bench = benchmark_close(inputs.market, closes).close.to_numpy(dtype=np.float64)
    c = closes.to_numpy(dtype=np.float64)
    n = len(c)
    t = closes.index.searchsorted(pd.DatetimeIndex(rows["date"]), "right") - 1
    j = closes.columns.get_indexer(rows["ticker"])
    out = {}
    for name, h in HORIZONS.items():
        entry, exit_ = t + 1, t + 1 + h
        ok = (j >= 0) & (t >= 0) & (exit_ < n)
        e, x, col = np.where(ok, entry, 0), np.where(ok, exit_, 0), np.maximum(j, 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            value = (c[x, col] / c[e, col] - 1.0) - (bench[x] / bench[e] - 1.0)
        out[name] = np.where(ok, value, np.nan)
    return pd.DataFrame(out, index=rows.index)


def position_pnl(trades: pd.DataFrame, opened_by: dict[tuple, str]) -> dict[str, float]:
    """Realised P&L per decision id from a trades frame (date, ticker, side, shares, pnl, in
    fill order): a spell from an opening fill (`opened_by[(date, ticker)]`, the decision
    whose order it filled) to flat is credited to that decision; a partial spell still open
    gets nothing yet."""
    credited: dict[str, float] = {}
    for ticker, group in trades.groupby("ticker", sort=False):
        held, owner, total = 0.0, None, 0.0
        for date, side, shares, pnl in group[["date", "side", "shares", "pnl"]].itertuples(
            index=False
        ):
            if side == "BUY":
                if held <= 1e-9:
                    owner, total = opened_by.get((pd.Timestamp(date), ticker)), 0.0
                held += shares
            elif side == "SELL":
                held -= shares
                total += 0.0 if pnl != pnl else float(pnl)
                if held <= 1e-9 and owner is not None:
                    credited[owner] = total
                    owner = None
    return credited


def human_trades(rows: pd.DataFrame) -> pd.DataFrame:
    """A human account's fills as trades, each sale's P&L on average cost."""
    records = []
    for row_id, fills in rows[["id", "fills"]].itertuples(index=False):
        for fill in json.loads(fills or "[]"):
            records.append({**fill, "id": row_id})
    if not records:
        return pd.DataFrame(columns=["id", "date", "ticker", "side", "shares", "price", "pnl"])
    trades = pd.DataFrame(records)
    trades["date"] = pd.to_datetime(trades["date"])
    trades = trades.sort_values("date", kind="stable")
    pnl = np.full(len(trades), np.nan)
    held: dict[str, tuple[float, float]] = {}  # ticker -> (shares, average cost)
    for i, (ticker, side, shares, price) in enumerate(
        trades[["ticker", "side", "shares", "price"]].itertuples(index=False)
    ):
        have, cost = held.get(ticker, (0.0, 0.0))
        if side == "BUY":
            held[ticker] = (have + shares, (have * cost + shares * price) / (have + shares))
        else:
            sold = min(shares, have)
            pnl[i] = (price - cost) * sold
            held[ticker] = (have - sold, cost)
    trades["pnl"] = pnl
    return trades


def update_journal(store: Store) -> dict[str, int]:
    """Fill in every outcome the store now allows, in one transaction; only changed rows are
    rewritten. Returns counts."""
    rows = read_journal(store, columns=LIGHT)  # the prompts and contexts are not read
    if rows.empty:
        return {"rows": 0, "updated": 0}
    inputs = PanelInputs.from_store(store)
    new = rows.copy()
    new[list(HORIZONS)] = excess_returns(inputs, rows).to_numpy()
    market = Market.from_inputs(inputs)
    for account, mine in rows.groupby("account", sort=False):
        known = read_account(store, str(account))
        if known is not None:
            config = BacktestConfig.model_validate(known["config"])
            config = config.model_copy(update={"start": str(known["start"].date()), "end": None})
            frame = mine[["date", "ticker", "trigger"]]
            result = run_signals(Replay(None, mine, None), Contexts(frame), market, config)
            trades = result.trades
            found = dict(fills_of(mine, trades, market).itertuples(index=False))
            ids, own = mine["id"], mine["fills"]
            new.loc[mine.index, "fills"] = [found.get(i, f) for i, f in zip(ids, own, strict=True)]
        elif str(mine["source"].iloc[0]).startswith("human:"):
            trades = human_trades(mine)
        else:
            continue
        new.loc[mine.index, "pnl"] = _credit(new.loc[mine.index], trades)
    changed = _changed(rows, new)
    if changed.any():
        updates = new.loc[changed, ["id", "fills", *HORIZONS, "pnl"]]
        updates = updates.assign(updated_at=datetime.now())
        write_entries(store, with_updates(store, updates), "journal update")
    return {"rows": len(rows), "updated": int(changed.sum())}


def _credit(rows: pd.DataFrame, trades: pd.DataFrame) -> np.ndarray:
    """Each row's realised P&L (module docstring): BUYs by their position's spell, SELLs by
    their own sale."""
    opened_by, sold = {}, {}
    for row_id, ticker, decision, fills in rows[["id", "ticker", "decision", "fills"]].itertuples(
        index=False
    ):
        for fill in json.loads(fills or "[]"):
            if decision == "BUY" and fill["side"] == "BUY":
                opened_by[(pd.Timestamp(fill["date"]), ticker)] = row_id
            elif decision == "SELL" and fill["side"] == "SELL":
                sold[row_id] = sold.get(row_id, 0.0) + float(fill.get("pnl") or 0.0)
    credited = position_pnl(trades.sort_values("date", kind="stable"), opened_by)
    if "id" in trades:  # a human's sales carry their row
        for row_id, pnl in trades.dropna(subset=["pnl"]).groupby("id")["pnl"].sum().items():
            sold[row_id] = float(pnl)
    credited |= sold
    return rows["id"].map(credited).to_numpy(dtype=np.float64)


def _changed(old: pd.DataFrame, new: pd.DataFrame) -> pd.Series:
    columns = [*HORIZONS, "pnl"]
    a, b = old[columns].to_numpy(dtype=np.float64), new[columns].to_numpy(dtype=np.float64)
    numbers = ~((a == b) | (np.isnan(a) & np.isnan(b)))
    return pd.Series(numbers.any(axis=1), index=old.index) | (
        old["fills"].fillna("") != new["fills"].fillna("")
    )
