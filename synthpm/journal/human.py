"""A person's decisions in the journal: one added by hand, or a file of trades imported.

A human entry is journaled like a model's: the context the store gives for (ticker, date),
the prompt rendered from it (an empty book under the default limits: a person's book is
not known), a `Signal` (the decision, conviction and the rationale as its reasoning), and
the same outcomes later. Its source is `human:<name>`, its account too, its status `human`.

`trades.csv` columns (case-insensitive; Parquet too):
- `ticker`, `date` (the trade's date; the decision is taken as of that date's close),
  `side` (BUY or SELL), `price` (> 0), and `shares` or `weight` (> 0, one of them);
- optional: `rationale` (text), `conviction` (0..1, default 0.5: no stated view),
  `hold_days` (calendar days, default 30).
Every row is checked before anything is written: a bad file gets a `DataError` naming the
file, row and column, and the journal is left as it was.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from synthpm.data.errors import DataError, SynthpmError, UnknownTickerError
from synthpm.data.importers.tabular import read_table
from synthpm.data.store import Store
from synthpm.data.validate import (
    check_tickers,
    fail_where,
    normalise_columns,
    parse_dates,
    parse_numbers,
)
from synthpm.dataset import build_contexts
from synthpm.features import FeatureConfig, PanelInputs, build_features
from synthpm.forecast.walkforward import SavedRun
from synthpm.journal.records import entry, write_entries
from synthpm.limits import Limits
from synthpm.signals import Signal

SIDES = ("BUY", "SELL")
DEFAULT_HOLD_DAYS = 30


def read_trades(path: Path, known: set[str]) -> pd.DataFrame:
    """A trades file, validated (module docstring); `known`: the store's tickers."""
    source = str(path)
    frame = normalise_columns(read_table(path), ("ticker", "date", "side", "price"), source)
    if "shares" not in frame and "weight" not in frame:
        raise DataError("missing column 'shares' or 'weight' (one is needed)", source=source)
    frame["ticker"] = check_tickers(frame)
    frame["date"] = parse_dates(frame)
    side = frame["side"].astype("string").str.strip().str.upper()
    fail_where(frame, ~side.isin(SIDES).fillna(False), "side must be BUY or SELL", "side")
    frame["side"] = side.astype(object)
    frame = parse_numbers(frame, ["price", "shares", "weight", "conviction", "hold_days"])
    fail_where(frame, ~(frame["price"] > 0), "price must be a positive number", "price")
    amount = "shares" if frame["shares"].notna().any() else "weight"
    fail_where(frame, ~(frame[amount] > 0), f"{amount} must be a positive number", amount)
    conviction = frame["conviction"].fillna(0.5)
    fail_where(frame, ~conviction.between(0, 1), "conviction must be in [0, 1]", "conviction")
    frame["conviction"] = conviction
    hold = frame["hold_days"].fillna(DEFAULT_HOLD_DAYS)
    fail_where(frame, ~hold.between(1, 365), "hold_days must be 1..365", "hold_days")
    frame["hold_days"] = hold.astype(int)
    unknown = ~frame["ticker"].isin(known)
    if unknown.any():
        fail_where(frame, unknown, f"unknown ticker {frame['ticker'][unknown].iloc[0]!r}", "ticker")
    if "rationale" not in frame:
        frame["rationale"] = ""
    frame["rationale"] = frame["rationale"].astype("string").fillna("").astype(str)
    return frame


def human_rows(
    store: Store,
    trades: pd.DataFrame,
    name: str,
    forecasts: Path | None = None,
    limits: Limits | None = None,
) -> list[dict]:
    """Journal rows for validated trades: each with the context the store gives its
    (ticker, date), forecasts from the saved run where given."""
    limits = limits or Limits()
    inputs = PanelInputs.from_store(store, end=trades["date"].max())
    panel = build_features(inputs, FeatureConfig())
    points = trades[["date", "ticker"]].drop_duplicates()
    where = pd.MultiIndex.from_frame(points)
    missing = ~where.isin(panel.index)
    if missing.any():
        ticker, date = points.iloc[int(np.argmax(missing))][["ticker", "date"]]
        raise SynthpmError(
            f"{ticker} has no bar on {date.date()} in the store (or is not a member of the "
            "universe then): a journal entry needs the day's context"
        )
    forecast = None
    if forecasts is not None:
        rows = np.asarray(panel.index.isin(where))
        forecast = SavedRun.read(forecasts).predict(panel, rows)
    contexts = build_contexts(
        inputs, panel, forecast, points.assign(trigger="scheduled").reset_index(drop=True)
    )
    by_key = {(c.ticker, pd.Timestamp(c.date)): c for c in contexts}
    source = f"human:{name}"
    out = []
    for trade in trades.to_dict("records"):
        context = by_key[(trade["ticker"], trade["date"])]
        signal = Signal(
            decision=trade["side"],
            conviction=float(trade["conviction"]),
            hold_duration_days=int(trade["hold_days"]),
            reasoning=trade["rationale"],
        )
        fill = {"date": str(trade["date"].date()), "ticker": trade["ticker"], "side": trade["side"],
                "shares": _num(trade.get("shares")), "weight": _num(trade.get("weight")),
                "price": float(trade["price"])}  # fmt: skip
        out.append(
            entry(
                context, signal, source=source, account=source, limits=limits, status="human",
                trigger="human", fills=[fill],
            )
        )  # fmt: skip
    return out


def import_trades(store: Store, path: Path, name: str, forecasts: Path | None = None) -> int:
    """Validate `path` and journal its trades in one transaction; returns the rows."""
    trades = read_trades(path, set(store.tickers()))
    rows = human_rows(store, trades, name, forecasts)
    write_entries(store, rows, f"journal import {path}")
    return len(rows)


def add_entry(
    store: Store,
    *,
    ticker: str,
    date: str,
    decision: str,
    conviction: float,
    rationale: str,
    name: str,
    hold_days: int = DEFAULT_HOLD_DAYS,
    forecasts: Path | None = None,
) -> dict:
    """One hand-written entry (no fill: a view, not a trade); returns the row."""
    ticker = ticker.strip().upper()
    if ticker not in set(store.tickers()):
        raise UnknownTickerError([ticker], len(store.tickers()))
    if decision.upper() not in ("BUY", "SELL", "SKIP"):
        raise SynthpmError(f"decision must be BUY, SELL or SKIP, not {decision!r}")
    signal = Signal(
        decision=decision.upper(),
        conviction=conviction,
        hold_duration_days=hold_days,
        reasoning=rationale,
    )
    point = pd.DataFrame({"date": [pd.Timestamp(date)], "ticker": [ticker]})
    trades = point.assign(side=signal.decision, conviction=conviction, hold_days=hold_days,
                          rationale=rationale, price=np.nan)  # fmt: skip
    [row] = human_rows(store, trades, name, forecasts)
    row["signal"], row["decision"], row["fills"] = signal.model_dump_json(), signal.decision, "[]"
    write_entries(store, [row], f"journal add {name}")
    return row


def _num(value) -> float | None:
    return None if value is None or value != value else float(value)
