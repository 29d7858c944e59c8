"""Labels: what a disciplined manager should have done, knowing the outcome (hindsight), or
what a teacher decided from the context alone, made disciplined.

The hindsight label (`outcomes`, `decide`) and `forecast.targets` are the only code that
reads the future, on purpose.

**Outcome.** A decision at the close of day t fills at the next bar, so a label measures
from the close of t+1 (a price the engine can get; the overnight gap into t+1 is not
claimed) to the close of t+1+`horizon` trading days: the hold the engine applies to the
position (`hold_days`, the calendar days from t to that exit, is what the answer writes and
the engine's hold expiry reads). One horizon, fixed before the outcome is known: taking the
best of several horizons in hindsight rewarded volatile names, whose best horizon is far
from their average. The outcome is the stock's return in excess of the benchmark over those
days (`features.market.benchmark_close`: the index, or the equal-weight universe when none
is stored) **net of a round trip's costs** (2 x `cost_bps`); a win is outcome > 0. Rows
whose window runs past the data get no label.

**Conviction** is the outcome's percentile among the universe's members on date t (the
members priced at entry and exit; 0 the worst, 1 the best), rounded to 0.01. A rank, not a
return: a calm month and a crash month teach the same ordering, and the manager needs to
know which names to prefer on the date. The agent's conviction is the model's expectation
of it, calibrated on validation into the probability of a win (`lm.calibrate`).

**Decision** per (context, scenario), from the scenario's state and `Limits`, in order:
1. holding the ticker and conviction at or below `sell_conviction` → SELL;
2. conviction below the bar (`buy_conviction`; `bear_conviction` in the bear-market
   scenario) → SKIP (`hold` when holding, `bear_bar` when only the bear bar failed, else
   `weak`);
3. the portfolio manager would refuse the trade → disciplined SKIP with the limit as its
   reason: `drawdown` (equity below the de-risk drawdown), `max_positions`, `cash_floor`,
   `sector_limit`, `position_limit` (already holding at the cap). This is
   `limits.room_for_buy`, the function the manager sizes orders with, on the scenario's
   book with the engine's costs (`cost_bps` per side), for an order of the position cap;
   a BUY it would only cut stays a BUY;
4. otherwise BUY.

**Teachers** (`DatasetConfig.teacher`; the tables come from `dataset.teachers`). Hindsight is
the default and the one teacher that reads the future. The others decide from the context
at t alone, as a backtest's signal source does, and their decision for the scenario's
holding state (does the book hold the ticker?) becomes the label by `follow`:
- `rules` (the fixed-rule baseline) and `qlearn` (the tabular Q-learning agent, fitted
  walk-forward on the years before each date): the teacher's decision, made disciplined
  by steps 3 above (a BUY the manager would refuse is a SKIP with the limit as its reason;
  the same `refusal` as the hindsight label) and by the manager's own rule that a SELL
  only exits a holding (a SELL of a ticker the book does not hold is a SKIP, `weak`); a
  SKIP is `hold` when holding, else `weak`. The conviction is the teacher's (rounded to
  0.01); the bear bar and the sell bar are hindsight percentiles and do not apply.
- `consensus`: the hindsight label's decision and reason, its conviction kept where both
  the rules and the Q-learning label (each by `follow`, in the same scenario, so a trade
  the limits refuse is a SKIP for every teacher alike) have the same decision, and pulled
  halfway toward 0.5 for each that does not: `0.5 + (c - 0.5) / 2**k` for k disagreeing
  teachers (`consensus_conviction`). 0.5 is the uninformative percentile, the middle of
  the date's ranking, so a disputed label teaches a less certain ranking in either
  direction: 0.9 becomes 0.7 (one disagrees) or 0.6 (both), and a SELL's 0.1 becomes 0.3
  or 0.4. The decision is never changed: it stays what the outcome says.
The hold (`hold_days`) is the engine's, the same for every teacher.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from synthpm.data.universe import membership
from synthpm.dataset.scenarios import Scenario
from synthpm.features.market import benchmark_close
from synthpm.features.panel import PanelInputs
from synthpm.limits import LIMIT_REASONS, Limits, room_for_buy

REASONS = (
    "buy",
    "sell",
    "weak",
    "hold",
    "bear_bar",
    "drawdown",
    "max_positions",
    "cash_floor",
    "sector_limit",
    "position_limit",
)


class LabelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    horizon: int = Field(21, ge=1, description="trading days held after the next-bar entry")
    cost_bps: float = Field(10.0, ge=0, description="per side: commission plus slippage")
    buy_conviction: float = Field(0.7, ge=0, le=1, description="percentile to buy at")
    bear_conviction: float = Field(0.9, ge=0, le=1, description="... in a bear market")
    sell_conviction: float = Field(0.3, ge=0, le=1, description="percentile to sell a holding at")

    def lookahead(self) -> int:
        """Trading days after t that a label reads (entry at t+1, then the hold)."""
        return 1 + self.horizon


def outcomes(
    inputs: PanelInputs,
    points: pd.DataFrame,
    config: LabelConfig | None = None,
    closes: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per decision point: `outcome` (net excess return), `hold_days`, `conviction`.

    `closes` is `inputs.closes()`, passed in by callers that label many chunks."""
    config = config or LabelConfig()
    closes = inputs.closes() if closes is None else closes
    bench = benchmark_close(inputs.market, closes).close.to_numpy(dtype=np.float64)
    c = closes.to_numpy(dtype=np.float64)
    n, h = len(c), config.horizon
    # Every member's net excess return over the hold from each date (NaN past the data).
    net = np.full_like(c, np.nan)
    if n > h + 1:
        stock = c[1 + h :] / c[1 : n - h] - 1.0
        index = bench[1 + h :] / bench[1 : n - h] - 1.0
        net[: n - 1 - h] = stock - index[:, None] - 2 * config.cost_bps / 1e4
    members = membership(inputs.universe, closes.index, closes.columns)
    net = np.where(members, net, np.nan)
    percentile = pd.DataFrame(net).rank(axis=1, pct=True, method="average").to_numpy()
    count = (~np.isnan(net)).sum(axis=1, keepdims=True)
    # the worst of n gets 0 and the best 1 (pandas' pct rank runs from 1/n to 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        percentile = np.where(count > 1, (percentile * count - 1) / (count - 1), 0.5)
    t = closes.index.get_indexer(points["date"])
    j = closes.columns.get_indexer(points["ticker"])
    outcome = net[t, j]
    exit_day = np.minimum(t + 1 + h, n - 1)
    hold = (closes.index[exit_day] - closes.index[t]).days.to_numpy()
    done = ~np.isnan(outcome)
    return pd.DataFrame(
        {
            "outcome": outcome,
            "hold_days": np.where(done, np.clip(hold, 1, 365), 0).astype(np.int16),
            "conviction": np.where(done, np.round(percentile[t, j], 2), np.nan),
        },
        index=points.index,
    )


class Label(NamedTuple):
    """A label: the decision (BUY / SELL / SKIP) and its reason (one of REASONS)."""

    decision: str
    reason: str


def decide(
    conviction: float,
    outcome: float,
    scenario: Scenario,
    ticker: str,
    sector: str,
    limits: Limits,
    config: LabelConfig,
) -> Label:
    """(decision, reason) for one context under one scenario; see the module docstring."""
    state = scenario.state
    held = state.position(ticker)
    if held is not None and conviction <= config.sell_conviction:
        return Label("SELL", "sell")
    bar = config.bear_conviction if scenario.name == "bear_market" else config.buy_conviction
    if conviction < bar:
        if held is not None:
            return Label("SKIP", "hold")
        return Label("SKIP", "bear_bar" if conviction >= config.buy_conviction else "weak")
    refused = refusal(scenario, ticker, sector, limits, config)
    if refused is not None:  # the manager would refuse this trade: a disciplined SKIP
        return Label("SKIP", refused)
    return Label("BUY", "buy")


def refusal(
    scenario: Scenario, ticker: str, sector: str, limits: Limits, config: LabelConfig
) -> str | None:
    """Step 3 of the module docstring: the reason the manager would refuse a BUY of the
    position cap in this scenario (a limit of LIMIT_REASONS, or `weak`), None if it would
    buy (perhaps less)."""
    state = scenario.state
    held = state.position(ticker)
    share, reason = room_for_buy(
        limits,
        wanted=limits.max_position,
        drawdown=state.drawdown,
        holds=len(state.positions),
        holding=held is not None,
        cash=state.cash_weight,
        sector=state.sector_weight(sector),
        position=held.weight if held is not None else 0.0,
        cost_rate=config.cost_bps / 1e4,
    )
    if share == 0.0:
        return reason if reason in LIMIT_REASONS else "weak"
    return None


def follow(
    decision: str,
    scenario: Scenario,
    ticker: str,
    sector: str,
    limits: Limits,
    config: LabelConfig,
) -> Label:
    """A teacher's decision as a label in this scenario: disciplined as the module docstring
    says (a refused BUY is a SKIP with the limit; a SELL without the holding is a SKIP)."""
    held = scenario.state.position(ticker) is not None
    if decision == "SELL":
        # the manager exits holdings only: a SELL of a name not held trades nothing
        return Label("SELL", "sell") if held else Label("SKIP", "weak")
    if decision == "BUY":
        refused = refusal(scenario, ticker, sector, limits, config)
        return Label("SKIP", refused) if refused is not None else Label("BUY", "buy")
    return Label("SKIP", "hold" if held else "weak")


def consensus_conviction(conviction: float, agree: Sequence[bool]) -> float:
    """The hindsight conviction pulled halfway toward 0.5 per teacher that disagrees
    (`agree` holds one flag per teacher): `0.5 + (c - 0.5) / 2**k`, rounded to 0.01."""
    disagreeing = sum(not a for a in agree)
    if disagreeing == 0:
        return conviction  # unchanged, bit for bit
    return round(0.5 + (conviction - 0.5) / 2**disagreeing, 2)
