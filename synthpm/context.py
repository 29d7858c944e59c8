"""The core types of a decision: `Context` (everything a signal source may know at
(date, ticker)), its sections, `PortfolioState` and `Position`, and `Contexts`, the context
frame with a sequence view.

Two forms of the same thing:
- the **context frame**, one row per decision point and flat columns, built in bulk by
  `synthpm.dataset.context.build_contexts` (vectorised; cached as Parquet);
- the **`Context` model** (pydantic), one decision point with typed sections, materialised
  from a frame row on demand (`Contexts[i]`) for the API, the prompt and the agent.

The engine, the portfolio manager, the scenarios and the prompt all read `PortfolioState`.

Frame columns (all values known by `date`; their names are spelled in `synthpm.columns`):
- `date`, `ticker`, `trigger` (`scheduled` | `filing`), `sector`; no price level: a vendor's
  back-adjusted close encodes the splits and dividends that came later, so nothing a model
  reads depends on one (everything is returns and ratios);
- forecasts, named as the forecast schema: `return_class_h`, `confidence_h`,
  `expected_return_h`, `volatility_h`, `sharpe_h`, `max_drawdown_h` for h in 1d/1w/1m/3m,
  `best_horizon`, `event_prob_<group>` (NaN/missing before the first walk-forward fold);
- events: `ev_covered` (the ticker has any filing on record by `date`), then the `RECENT`
  most recent 8-K items of the last `WINDOW_DAYS` days: `ev{k}_date`, `ev{k}_type`,
  `ev{k}_item` (k = 1 is the latest; exhibit-only items are skipped as uninformative);
- insider: `ins_covered`, `ins_buys_90d`, `ins_sells_90d`, `ins_net_value_90d` and the latest
  `NOTABLE` open-market trades (codes P and S): `ins{k}_date`, `_owner`, `_role`, `_code`,
  `_value`;
- trends and market: the panel's own columns in `TREND_COLUMNS` and `MARKET_COLUMNS`
  (1m = 21 and 3m = 63 trading days, about 30 and 90 calendar days);
- social, only where the store has text factors (`synthpm.text`): the panel's `text_*`
  columns (`text_covered`, counts, attention, each concept's weighted mean and dispersion)
  and the window's most representative post, `text_quote` with its `text_quote_date`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date as Date
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from synthpm.columns import (
    BEST_HORIZON,
    EVENTS_COVERED,
    FORECAST_FIELDS,
    INSIDER_COUNTS,
    INSIDER_COVERED,
    MARKET_COLUMNS,
    NOTABLE,
    RECENT,
    TREND_COLUMNS,
    VIX_IS_PROXY,
    event_col,
    event_prob_col,
    forecast_col,
    insider_col,
)
from synthpm.data.taxonomy import ITEMS_8K, LEGACY_ITEMS_8K
from synthpm.features.filings import EVENT_GROUPS
from synthpm.features.text import TEXT_COVERED
from synthpm.forecast.base import CLASSES, HORIZONS
from synthpm.limits import Limits, drawdown
from synthpm.text.factors import COUNTS

WINDOW_DAYS = 90  # calendar days of events and insider trades a context shows
UNINFORMATIVE = ("exhibits", "insider_filing")  # event types never listed as recent events
MEANING = {etype: meaning for etype, meaning in (*LEGACY_ITEMS_8K.values(), *ITEMS_8K.values())}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HorizonForecast(_Model):
    horizon: Literal["1d", "1w", "1m", "3m"]
    return_class: Literal[CLASSES]  # type: ignore[valid-type]
    confidence: float = Field(ge=0, le=1)
    expected_return: float  # excess over the benchmark
    volatility: float  # annualised
    sharpe: float | None
    max_drawdown: float  # <= 0


class Event(_Model):
    date: Date
    event_type: str
    item: str | None = None
    meaning: str = ""


class InsiderTrade(_Model):
    date: Date
    owner: str | None = None
    role: str | None = None
    code: Literal["P", "S"]
    value: float | None = None


class Insider(_Model):
    covered: bool = False  # any Form 4 transaction on record for the ticker by the date
    buys_90d: int = 0
    sells_90d: int = 0
    net_value_90d: float = 0.0
    notable: list[InsiderTrade] = Field(default_factory=list)


class Social(_Model):
    """Posts about the stock known by the date, weighted to the recent (`synthpm.text`)."""

    covered: bool = False  # any post on record for the ticker by the date
    posts: float = 0.0  # weighted count over the window
    posts_today: int = 0
    attention: float | None = None  # log surprise of the last 5 sessions' volume
    concepts: dict[str, float] = Field(default_factory=dict)  # concept -> weighted mean score
    quote: str | None = None  # the window's most representative post, verbatim, cut
    quote_date: Date | None = None


class Trends(_Model):
    return_1w: float | None = None
    return_1m: float | None = None
    return_3m: float | None = None
    return_6m: float | None = None
    dist_52w_high: float | None = None
    dist_52w_low: float | None = None
    dist_sma_50: float | None = None
    dist_sma_200: float | None = None
    rsi_14: float | None = None
    volatility_1m: float | None = None
    sector_relative_1m: float | None = None


class MarketContext(_Model):
    index_return_1m: float | None = None
    index_return_3m: float | None = None
    index_dist_sma_200: float | None = None
    index_volatility_1m: float | None = None
    vix: float | None = None
    vix_z: float | None = None
    vix_is_proxy: bool = False
    benchmark: str = "index"  # "index" or "equal-weight universe"


class Position(_Model):
    ticker: str
    sector: str
    weight: float = Field(gt=0, le=1)  # of equity
    unrealised_return: float = 0.0
    days_held: int = Field(0, ge=0)


class PortfolioState(_Model):
    """Cash, positions and recent history; consistent by construction (validated).

    `equity_history` is weekly equity ending at `equity`; `recent_trades` are closed trades'
    returns, oldest first. `peak` is the equity peak the drawdown is measured from: the
    engine passes the portfolio manager's own (the trailing `Limits.derisk_window` days of
    daily equity), so the drawdown a prompt states is the one the manager acts on; left out
    (simulated books), it is the history's peak.
    """

    cash: float = Field(ge=0)
    equity: float = Field(gt=0)
    positions: list[Position] = Field(default_factory=list)
    equity_history: list[float] = Field(default_factory=list)
    recent_trades: list[float] = Field(default_factory=list)
    peak: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> PortfolioState:
        invested = sum(p.weight for p in self.positions) * self.equity
        if abs(invested + self.cash - self.equity) > 1e-6 * self.equity + 0.01:
            raise ValueError(
                f"positions ({invested:,.2f}) plus cash ({self.cash:,.2f}) must equal equity "
                f"({self.equity:,.2f})"
            )
        if self.equity_history and abs(self.equity_history[-1] - self.equity) > 0.01:
            raise ValueError("equity_history must end at the current equity")
        if len({p.ticker for p in self.positions}) != len(self.positions):
            raise ValueError("a ticker appears twice among the positions")
        if self.peak is not None and self.peak < self.equity - 0.01:
            raise ValueError(f"peak ({self.peak:,.2f}) is below equity ({self.equity:,.2f})")
        return self

    @property
    def peak_equity(self) -> float:
        if self.peak is not None:
            return self.peak
        return max([*self.equity_history, self.equity])

    @property
    def drawdown(self) -> float:
        return drawdown(self.equity, self.peak_equity)

    @property
    def cash_weight(self) -> float:
        return self.cash / self.equity

    def sector_weight(self, sector: str) -> float:
        return sum(p.weight for p in self.positions if p.sector == sector)

    def position(self, ticker: str) -> Position | None:
        return next((p for p in self.positions if p.ticker == ticker), None)

    @classmethod
    def empty(cls, cash: float = 1_000_000.0) -> PortfolioState:
        return cls(cash=cash, equity=cash, equity_history=[cash])


class Context(_Model):
    ticker: str
    date: Date
    trigger: Literal["scheduled", "filing"] = "scheduled"
    sector: str = "Unknown"
    forecasts: list[HorizonForecast] = Field(default_factory=list)  # empty before fold one
    best_horizon: str | None = None
    event_probabilities: dict[str, float] = Field(default_factory=dict)
    events_covered: bool = False  # any filing on record for the ticker by the date
    events: list[Event] = Field(default_factory=list)  # most recent first
    insider: Insider = Field(default_factory=Insider)
    trends: Trends = Field(default_factory=Trends)
    market: MarketContext = Field(default_factory=MarketContext)
    social: Social | None = None  # None: no text source in the store
    portfolio: PortfolioState = Field(default_factory=PortfolioState.empty)


def _num(value) -> float | None:
    return None if value is None or value != value else float(value)


def context_from_row(row: dict, benchmark: str, portfolio: PortfolioState | None = None):
    """One frame row (as a dict) → a validated `Context`."""
    forecasts = [
        HorizonForecast(
            horizon=h,
            return_class=row[forecast_col("return_class", h)],
            **{f: _num(row[forecast_col(f, h)]) for f in FORECAST_FIELDS[1:]},
        )
        for h in HORIZONS
        if isinstance(row.get(forecast_col("return_class", h)), str)
    ]
    events = [
        Event(
            date=row[event_col(k, "date")],
            event_type=row[event_col(k, "type")],
            item=row[event_col(k, "item")],
            meaning=MEANING.get(row[event_col(k, "type")], ""),
        )
        for k in range(1, RECENT + 1)
        if isinstance(row.get(event_col(k, "type")), str)
    ]
    notable = [
        InsiderTrade(
            date=row[insider_col(k, "date")],
            owner=row[insider_col(k, "owner")],
            role=row[insider_col(k, "role")],
            code=row[insider_col(k, "code")],
            value=_num(row[insider_col(k, "value")]),
        )
        for k in range(1, NOTABLE + 1)
        if isinstance(row.get(insider_col(k, "code")), str)
    ]
    probs = {
        g: float(row[event_prob_col(g)])
        for g in EVENT_GROUPS
        if _num(row.get(event_prob_col(g))) is not None
    }
    counts = {name: row[col] for name, col in INSIDER_COUNTS.items()}
    return Context(
        ticker=row["ticker"],
        date=pd.Timestamp(row["date"]).date(),
        trigger=row["trigger"],
        sector=row["sector"],
        forecasts=forecasts,
        best_horizon=row[BEST_HORIZON] if forecasts else None,
        event_probabilities=probs,
        events_covered=bool(row[EVENTS_COVERED]),
        events=events,
        insider=Insider(
            covered=bool(row[INSIDER_COVERED]),
            buys_90d=int(counts["buys_90d"]),
            sells_90d=int(counts["sells_90d"]),
            net_value_90d=float(counts["net_value_90d"]),
            notable=notable,
        ),
        trends=Trends(**{name: _num(row[col]) for name, col in TREND_COLUMNS.items()}),
        market=MarketContext(
            **{name: _num(row[col]) for name, col in MARKET_COLUMNS.items()},
            vix_is_proxy=bool(row[VIX_IS_PROXY] == 1),
            benchmark=benchmark,
        ),
        social=_social(row) if TEXT_COVERED in row else None,
        portfolio=portfolio or PortfolioState.empty(),
    )


def _social(row: dict) -> Social:
    concepts = {
        col.removeprefix("text_"): float(value)
        for col, value in row.items()
        if col.startswith("text_")
        and col not in (*COUNTS, TEXT_COVERED, "text_quote", "text_quote_date")
        and not col.endswith("_disp")
        and _num(value) is not None
    }
    quote = row.get("text_quote")
    has_quote = isinstance(quote, str)
    return Social(
        covered=bool(row[TEXT_COVERED] == 1),
        posts=_num(row.get("text_posts")) or 0.0,
        posts_today=int(_num(row.get("text_posts_1d")) or 0),
        attention=_num(row.get("text_attention")),
        concepts=concepts,
        quote=quote if has_quote else None,
        quote_date=pd.Timestamp(row["text_quote_date"]).date() if has_quote else None,
    )


class Contexts(Sequence[Context]):
    """The context frame with a sequence view: `contexts[i]` is a validated `Context`.

    Signal sources that work on columns (baselines) read `.frame`; the language model reads
    the prompt rendered from each `Context`. In a backtest, `portfolio` is the live book on
    the date, so every context's `portfolio` is the state the decision is made in, and
    `limits` are the run's, which the prompt states and the manager enforces.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        benchmark: str = "index",
        portfolio: PortfolioState | None = None,
        limits: Limits | None = None,
    ):
        self.frame = frame.reset_index(drop=True)
        self.benchmark = benchmark
        self.portfolio = portfolio
        self.limits = limits

    def __len__(self) -> int:
        return len(self.frame)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return Contexts(self.frame.iloc[i], self.benchmark, self.portfolio, self.limits)
        return context_from_row(self.frame.iloc[i].to_dict(), self.benchmark, self.portfolio)

    def __iter__(self) -> Iterator[Context]:
        for row in self.frame.to_dict("records"):
            yield context_from_row(row, self.benchmark, self.portfolio)
