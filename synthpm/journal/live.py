"""The live loop (paper trading): decide on one date from what the store knows by its close.

`decide` reads the store as of D (prices to D, filings known by D), builds the feature
panel, forecasts D from the saved walk-forward models (`SavedRun.predict`: the fold fitted
before D; on the first day of a new refit period its fold is fitted then, as the
walk-forward fits it, and saved into the run), builds D's contexts, asks the strategy, and
lets the portfolio manager size the signals on the account's book. The orders fill at the
next bar, as in a backtest.

**The book is the journal.** A paper account's book is never stored as balances that could
drift from the decisions: it is what the engine makes of the account's journaled decisions.
`decide` replays them (their journaled signals, no model call) through the backtest engine
from the account's first date to D, with the settings stored with the account, and only D's
signals come from the strategy. So a day-by-day paper account and a backtest over the same
dates are one computation, which `tests/test_journal_live.py` checks decision by decision.
Alternatively `book` gives a real book (cash and holdings) to decide on, with no replay.

**Review days.** A backtest reviews every member on the last trading day of each week
(`dataset.calendar`), read from its data. On D the data end at D, so whether D is the
week's last session comes from the exchange's calendar (`exchange_calendars`' XNYS), which
agrees with the data wherever the store holds every session. Filing days are decided on
whatever the weekday.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from synthpm.backtest.broker import Broker
from synthpm.backtest.engine import BacktestConfig, BacktestResult, Recorder, run_signals
from synthpm.backtest.market import Market
from synthpm.context import Contexts, PortfolioState
from synthpm.data.errors import ConfigError, SynthpmError, UnknownTickerError
from synthpm.data.schema import ACCOUNTS, JOURNAL
from synthpm.data.store import ImportBatch, Store
from synthpm.dataset import build_contexts, decision_points
from synthpm.features import FeatureConfig, PanelInputs, build_features
from synthpm.forecast.walkforward import SavedRun
from synthpm.journal.records import (
    account_row,
    entry,
    read_account,
    read_journal,
    with_updates,
)
from synthpm.portfolio.manager import Outcome
from synthpm.signals import Signal, SignalSource

FILLED = ("executed", "resized")  # statuses whose order reaches the market
# what a replay reads of an account's rows (not the large context and prompt texts)
REPLAYED = ["id", "date", "ticker", "trigger", "signal", "decision", "status"]


@cache
def _sessions():
    import exchange_calendars

    return exchange_calendars.get_calendar("XNYS", start="1990-01-01")


def is_review_day(date: pd.Timestamp) -> bool:
    """Whether `date` is the last XNYS session of its calendar week (Monday..Sunday)."""
    calendar = _sessions()
    if date > calendar.last_session:
        raise ConfigError(f"{date.date()} is past the exchange calendar's last session")
    following = calendar.date_to_session(date, "next")
    if following == date:
        following = calendar.next_session(date)
    return following.to_period("W") != date.to_period("W")


def points_on(panel: pd.DataFrame, events: pd.DataFrame, date: pd.Timestamp) -> pd.DataFrame:
    """D's decision points as the backtest's calendar gives them: every member on a review
    day, filers on any day (their trigger "filing")."""
    points = decision_points(panel.index, events, start=date, end=date)
    if not is_review_day(date):  # the data end at D, which then looks like a week's last day
        points = points[points["trigger"] == "filing"].reset_index(drop=True)
    return points


@dataclass(frozen=True)
class Today:
    """What the store knows at the close of D, ready to decide on."""

    date: pd.Timestamp
    inputs: PanelInputs
    contexts: Contexts  # D's decision points
    market: Market
    panel: pd.DataFrame  # the feature panel to D
    forecasts: pd.DataFrame | None  # D's rows of the walk-forward forecasts

    @cached_property
    def members(self) -> pd.DataFrame:
        """The context frame of every member with a bar on D (trigger "scheduled"), by
        ticker: built once, as one call costs about as much for one name as for all."""
        tickers = self.panel.xs(self.date, level="date").index
        points = pd.DataFrame({"date": self.date, "ticker": tickers, "trigger": "scheduled"})
        frame = build_contexts(self.inputs, self.panel, self.forecasts, points).frame
        return frame.set_index("ticker", drop=False)

    def contexts_for(self, tickers: Sequence[str]) -> Contexts:
        """Contexts of any of D's members (trigger "scheduled"), in the order given; an
        unknown ticker or one without a bar on D is an `UnknownTickerError` naming it."""
        tickers = [str(t).strip().upper() for t in tickers]
        missing = sorted(set(tickers) - set(self.members.index))
        if missing:
            day = self.date.date()
            raise UnknownTickerError(missing, len(self.members), f"on {day} the store has bars of")
        return Contexts(self.members.loc[tickers].reset_index(drop=True), self.contexts.benchmark)


def as_of(store: Store, date: str | pd.Timestamp, forecasts: Path) -> Today:
    """The store read as of D's close, and D's contexts with D's forecasts (a refit period
    that begins by D gets its fold first, saved into the forecast run: `SavedRun.current`)."""
    date = pd.Timestamp(date)
    inputs = PanelInputs.from_store(store, end=date)
    last = inputs.prices["date"].max()
    if last != date:
        raise SynthpmError(
            f"no prices on {date.date()} in {store.path} (the last stored date on or before it "
            f"is {last.date()}): import {date.date()}'s prices first"
        )
    panel = build_features(inputs, FeatureConfig())
    points = points_on(panel, inputs.events, date)
    dates = panel.index.get_level_values("date")
    run = SavedRun.read(forecasts).current(panel, inputs)  # a new year: its fold, fitted now
    predicted = run.predict(panel, np.asarray(dates == date))
    contexts = build_contexts(inputs, panel, predicted, points)
    return Today(date, inputs, contexts, Market.from_inputs(inputs), panel, predicted)


def parse_book(doc: object, market: Market, config: BacktestConfig, where: str) -> Broker:
    """A real book to decide on, from its JSON form: {"cash": 100000, "positions":
    [{"ticker", "shares", "cost_basis", "entry_date"}]} (cost basis per share, entry costs
    included; long positions only). A bad book is a `SynthpmError` naming `where` and
    every problem found."""
    try:
        cash = float(doc["cash"])  # type: ignore[index]
        positions = doc.get("positions", [])  # type: ignore[union-attr]
        holdings = pd.DataFrame(positions, columns=["ticker", "shares", "cost_basis", "entry_date"])
        holdings["ticker"] = holdings["ticker"].astype(str).str.strip().str.upper()
        holdings["entry_date"] = pd.to_datetime(holdings["entry_date"])
        numbers = holdings[["shares", "cost_basis"]].astype(float)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SynthpmError(
            f"{where}: not a book ({type(exc).__name__}: {exc}); a book is "
            '{"cash": 100000, "positions": [{"ticker", "shares", "cost_basis", "entry_date"}]}'
        ) from exc
    unknown = sorted(set(holdings["ticker"]) - set(market.tickers))
    problems = [
        f"unknown tickers {unknown}" if unknown else "",
        "negative or missing cash" if not cash >= 0 else "",
        "shares and cost basis must be positive" if not (numbers > 0).all().all() else "",
        "a ticker is listed twice" if holdings["ticker"].duplicated().any() else "",
    ]
    if any(problems):
        raise SynthpmError(f"{where}: " + "; ".join(p for p in problems if p))
    return Broker.from_holdings(market, config, cash, holdings.assign(**numbers))


class Replay:
    """A signal source that answers past dates from the journal and D from the strategy."""

    def __init__(
        self, strategy: SignalSource | None, journaled: pd.DataFrame, today: pd.Timestamp | None
    ):
        self.name = strategy.name if strategy else "journal"
        self.strategy, self.today = strategy, today
        self.kept = {
            (pd.Timestamp(d), t): Signal.model_validate_json(s)
            for d, t, s in journaled[["date", "ticker", "signal"]].itertuples(index=False)
        }

    def signals(self, contexts: Contexts) -> list[Signal]:
        frame = contexts.frame
        if self.strategy and len(frame) and frame["date"].iloc[0] == self.today:
            return self.strategy.signals(contexts)
        return [self.kept[(d, t)] for d, t in frame[["date", "ticker"]].itertuples(index=False)]


@dataclass
class Decided:
    """One `decide`: D's journal rows, the orders for the next bar, the account's run."""

    rows: list[dict]
    orders: pd.DataFrame
    result: BacktestResult | None  # None when there was nothing to decide or replay
    fills: pd.DataFrame  # earlier rows whose fills the replay found: id, fills


def decide(
    store: Store,
    strategy: SignalSource,
    today: Today,
    *,
    source: str,
    account: str = "paper",
    config: BacktestConfig | None = None,
    book: Broker | None = None,
) -> Decided:
    """Decide on `today` in `account` (replaying its journal), or on a given `book`; nothing
    is written here (`write_decided`)."""
    config = config or BacktestConfig()
    day = today.date
    if book is not None:
        journaled = read_journal(store, account=account, start=day, end=day, columns=["id"])
        past = read_journal(store, ids=[], columns=REPLAYED)
        start = day
    else:
        known = read_account(store, account)
        if known is not None:
            if known["source"] != source:
                raise ConfigError(
                    f"account {account!r} is traded by {known['source']}, not {source}: "
                    "choose another --account"
                )
            config = BacktestConfig.model_validate(known["config"])
            start = pd.Timestamp(known["start"])
        else:
            start = day
        past = read_journal(store, account=account, columns=REPLAYED)
        journaled = past[past["date"] == day]
        if len(past) and past["date"].max() > day:
            raise ConfigError(
                f"account {account!r} has decided up to {past['date'].max().date()}: its "
                f"book on {day.date()} is gone; decide dates in order (or use another account)"
            )
        past = past[past["date"] < day]
    if len(journaled):
        raise ConfigError(
            f"account {account!r} already decided on {day.date()} ({len(journaled)} entries): "
            "journal entries are never overwritten"
        )
    frame = pd.concat(
        [past[["date", "ticker", "trigger"]], today.contexts.frame], ignore_index=True
    )
    if frame.empty:
        return Decided([], pd.DataFrame(), None, pd.DataFrame())
    rows: list[dict] = []
    record = recorder(rows, source, account, only=day)
    run = config.model_copy(update={"start": str(start.date()), "end": str(day.date())})
    contexts = Contexts(frame, today.contexts.benchmark)
    result = run_signals(
        Replay(strategy, past, day), contexts, today.market, run, broker=book, record=record
    )
    return Decided(rows, result.pending, result, fills_of(past, result.trades, today.market))


def account_book(store: Store, account: str) -> tuple[pd.Timestamp, PortfolioState] | None:
    """A paper account's book at the close of its last decision date: its journal replayed
    through the engine with its own settings (the book is the journal, module docstring);
    None for an account with no decisions."""
    known = read_account(store, account)
    past = read_journal(store, account=account, columns=REPLAYED)
    if known is None or past.empty:
        return None
    day = past["date"].max()
    config = BacktestConfig.model_validate(known["config"])
    config = config.model_copy(update={"start": str(known["start"].date()), "end": str(day.date())})
    market = Market.from_inputs(PanelInputs.from_store(store, end=day))
    broker = Broker(market, config)
    frame = past[["date", "ticker", "trigger"]]
    result = run_signals(Replay(None, past, None), Contexts(frame), market, config, broker=broker)
    equity = result.equity["equity"].to_numpy()
    t = int(market.dates.searchsorted(day))
    return day, broker.state(t, float(equity[-1]), list(equity), float(equity.max()))


def recorder(
    rows: list[dict], source: str, account: str, only: pd.Timestamp | None = None
) -> Recorder:
    """The engine's hook (`run_signals`) that appends a journal row per decision to `rows`
    (`only`: on that date alone)."""

    def record(shown: Contexts, signals: list[Signal], outcomes: list[Outcome]) -> None:
        if only is not None and shown.frame["date"].iloc[0] != only:
            return
        for context, signal, outcome in zip(shown, signals, outcomes, strict=True):
            rows.append(
                entry(
                    context, signal, source=source, account=account, limits=shown.limits,
                    status=outcome.status, size=outcome.size, reason=outcome.reason,
                )
            )  # fmt: skip

    return record


FILL_COLUMNS = ["date", "side", "shares", "price", "value", "cost", "reason", "pnl"]


def fills_of(rows: pd.DataFrame, trades: pd.DataFrame, market: Market) -> pd.DataFrame:
    """For journal rows whose order reached the market, the fill it got (`id`, `fills` as
    JSON): the trade of that ticker at the next bar with the manager's reason."""
    wanted = rows[rows["status"].isin(FILLED) & (rows["decision"] != "SKIP")]
    ours = trades[trades["reason"].isin(("signal", "sell_signal"))]
    if wanted.empty or ours.empty:
        return pd.DataFrame(columns=["id", "fills"])
    dates = market.dates
    at = dates.searchsorted(wanted["date"], "right")
    wanted = wanted.loc[at < len(dates), ["id", "ticker"]].assign(date=dates[at[at < len(dates)]])
    merged = wanted.merge(ours, on=["ticker", "date"])
    merged["date"] = merged["date"].dt.strftime("%Y-%m-%d")
    merged = merged[[*FILL_COLUMNS, "id"]].astype(object)
    merged = merged.where(merged.notna(), None)  # an opening fill's P&L: null, not NaN
    fills = {
        row_id: json.dumps(group[FILL_COLUMNS].to_dict("records"))
        for row_id, group in merged.groupby("id", sort=False)
    }
    return pd.DataFrame({"id": list(fills), "fills": list(fills.values())})


def write_decided(
    store: Store, decided: Decided, account: str, source: str, config: BacktestConfig, book: bool
) -> int:
    """D's rows, the fills the replay found for earlier rows, and (first time) the account,
    in one transaction. Returns the rows written."""
    if not decided.rows:
        return 0
    new = pd.DataFrame(decided.rows).astype({"date": "datetime64[ns]"})
    frames = {JOURNAL.name: pd.concat([with_updates(store, decided.fills), new])}
    if not book and read_account(store, account) is None:
        first = decided.rows[0]["date"]
        frames[ACCOUNTS.name] = account_row(account, source, first, config.model_dump_json())
    day = decided.rows[0]["date"]

    def still_undecided(con) -> None:  # another decide may have written D since it was read
        [(found,)] = con.execute(  # fetchall: an unfinished result would block the write
            "SELECT count(*) FROM journal WHERE account = ? AND date >= ?", [account, day.date()]
        ).fetchall()
        if found:
            raise ConfigError(
                f"account {account!r} already has {found} entries on or after {day.date()} "
                "(another decide wrote them meanwhile): nothing journaled"
            )

    store.write(ImportBatch("journal", f"decide:{account}", frames), check=still_undecided)
    return len(decided.rows)


def journal_run(
    store: Store, rows: list[dict], result: BacktestResult, market: Market, *, account: str,
    source: str, config: BacktestConfig,
) -> int:  # fmt: skip
    """A backtest's decisions (`recorder`'s rows) as a new account, with their fills, in one
    transaction; `journal update` replays the account like a paper one."""
    if read_account(store, account) is not None:
        raise ConfigError(f"account {account!r} exists: journal the run under another name")
    if not rows:
        raise ConfigError("the run made no decisions to journal (a portfolio rule logs none)")
    frame = pd.DataFrame(rows).astype({"date": "datetime64[ns]"})
    fills = fills_of(frame, result.trades, market).set_index("id")["fills"]
    frame["fills"] = [fills.get(i, own) for i, own in zip(frame["id"], frame["fills"], strict=True)]
    start = config.start or frame["date"].min()
    frames = {
        JOURNAL.name: frame,
        ACCOUNTS.name: account_row(account, source, start, config.model_dump_json()),
    }

    def still_new(con) -> None:  # another writer may have made the account since
        sql = "SELECT count(*) FROM accounts WHERE name = ?"
        [(found,)] = con.execute(sql, [account]).fetchall()
        if found:
            raise ConfigError(f"account {account!r} exists: journal the run under another name")

    store.write(ImportBatch("journal", f"backtest:{account}", frames), check=still_new)
    return len(frame)
