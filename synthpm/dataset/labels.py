"""Hindsight labels: what a disciplined manager should have done, knowing the outcome.

This and `forecast.targets` are the only code that reads the future, on purpose.

**Outcome.** A decision at the close of day t fills at the next bar, so a label measures
from the close of t+1 (a price the engine can get; the overnight gap into t+1 is not
claimed) to the close of t+1+h, for h in `horizons` trading days. The return is in excess
of the benchmark over the same days (`features.market.benchmark_close`: the index, or the
equal-weight universe when none is stored) and **net of a round trip's costs**
(2 x `cost_bps`). The hold horizon is the h where that net excess return peaked; the
outcome is the net excess return there and `hold_duration_days` the calendar days from t
to that exit. Rows whose longest horizon runs past the data get no label.

**Conviction** from the outcome, a table (`conviction_table`, configurable): a loss gives
0; gains interpolate linearly between the anchors, by default 0 → 0.5, +10% → 0.7,
+20% → 0.9, +40% → 1.0 (the DESIGN's ">20% ≥ 0.9, >10% 0.7, >0% 0.5, loss 0").
It is one quantity for every decision (the belief the stock beats the benchmark), so its
rank correlation with the realised excess return is meaningful for BUY, SELL and SKIP.

**Decision** per (context, scenario), from the scenario's state and `Limits`, in order:
1. holding the ticker and the outcome is a loss → SELL;
2. conviction below the bar (`buy_conviction`; `bear_conviction` in the bear-market
   scenario) → SKIP (`hold` when holding, `bear_bar` when only the bear bar failed, else
   `weak`);
3. the portfolio manager would refuse the trade → disciplined SKIP with the limit as its
   reason: `drawdown` (equity below the de-risk drawdown), `max_positions`, `cash_floor`,
   `sector_limit`, `position_limit` (already holding at the cap). This is
   `limits.room_for_buy`, the function the manager sizes orders with, on the scenario's
   book with the engine's costs (`cost_bps` per side); a BUY it would only cut stays a BUY;
4. otherwise BUY.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

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

    horizons: tuple[int, ...] = (5, 21, 63)  # trading days held after the next-bar entry
    cost_bps: float = Field(10.0, ge=0, description="per side: commission plus slippage")
    conviction_table: tuple[tuple[float, float], ...] = (
        (0.0, 0.5),
        (0.10, 0.7),
        (0.20, 0.9),
        (0.40, 1.0),
    )
    buy_conviction: float = Field(0.7, ge=0, le=1)
    bear_conviction: float = Field(0.9, ge=0, le=1)

    @field_validator("conviction_table")
    @classmethod
    def _increasing(cls, table):
        xs, ys = zip(*table, strict=True)
        if list(xs) != sorted(xs) or list(ys) != sorted(ys) or not 0 <= ys[0] <= ys[-1] <= 1:
            raise ValueError("conviction_table must be increasing (outcome, conviction) pairs")
        return table

    def lookahead(self) -> int:
        """Trading days after t that a label reads (entry at t+1, longest hold)."""
        return 1 + max(self.horizons)


def conviction_of(outcome: np.ndarray, config: LabelConfig) -> np.ndarray:
    xs, ys = (np.array(v) for v in zip(*config.conviction_table, strict=True))
    out = np.interp(outcome, xs, ys)
    out = np.where(outcome > xs[0], out, 0.0)
    return np.round(np.where(np.isnan(outcome), np.nan, out), 2)


def outcomes(
    inputs: PanelInputs,
    points: pd.DataFrame,
    config: LabelConfig | None = None,
    closes: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per decision point: `excess_<h>d` (net), `outcome`, `hold_days`, `conviction`.

    `closes` is `inputs.closes()`, passed in by callers that label many chunks."""
    config = config or LabelConfig()
    closes = inputs.closes() if closes is None else closes
    bench = benchmark_close(inputs.market, closes)[0].to_numpy(dtype=np.float64)
    c = closes.to_numpy(dtype=np.float64)
    t = closes.index.get_indexer(points["date"])
    j = closes.columns.get_indexer(points["ticker"])
    n = len(closes)
    cost = 2 * config.cost_bps / 1e4
    entry = t + 1
    nets, exits = [], []
    for h in config.horizons:
        exit_ = entry + h
        ok = exit_ < n
        e, x = np.minimum(entry, n - 1), np.minimum(exit_, n - 1)
        stock = c[x, j] / c[e, j] - 1.0
        index = bench[x] / bench[e] - 1.0
        nets.append(np.where(ok, stock - index - cost, np.nan))
        exits.append(x)
    net = np.vstack(nets)  # horizons x points
    complete = ~np.isnan(net).any(axis=0)
    peak = np.nanargmax(np.where(np.isnan(net), -np.inf, net), axis=0)
    cols = np.arange(net.shape[1])
    outcome = np.where(complete, net[peak, cols], np.nan)
    exit_day = np.vstack(exits)[peak, cols]
    hold = (closes.index[exit_day] - closes.index[t]).days.to_numpy()
    out = {f"excess_{h}d": net[i] for i, h in enumerate(config.horizons)}
    out["outcome"] = outcome
    out["hold_days"] = np.where(complete, np.clip(hold, 1, 365), 0).astype(np.int16)
    out["conviction"] = conviction_of(outcome, config)
    return pd.DataFrame(out, index=points.index)


def decide(
    conviction: float,
    outcome: float,
    scenario: Scenario,
    ticker: str,
    sector: str,
    limits: Limits,
    config: LabelConfig,
) -> tuple[str, str]:
    """(decision, reason) for one context under one scenario; see the module docstring."""
    state = scenario.state
    held = state.position(ticker)
    if held is not None and outcome <= 0:
        return "SELL", "sell"
    bar = config.bear_conviction if scenario.name == "bear_market" else config.buy_conviction
    if conviction < bar:
        if held is not None:
            return "SKIP", "hold"
        return "SKIP", "bear_bar" if conviction >= config.buy_conviction else "weak"
    share, reason = room_for_buy(
        limits,
        wanted=conviction * limits.base_allocation,
        drawdown=state.drawdown,
        holds=len(state.positions),
        holding=held is not None,
        cash=state.cash_weight,
        sector=state.sector_weight(sector),
        position=held.weight if held is not None else 0.0,
        cost_rate=config.cost_bps / 1e4,
    )
    if share == 0.0:  # the manager would refuse this trade: a disciplined SKIP
        return "SKIP", reason if reason in LIMIT_REASONS else "weak"
    return "BUY", "buy"
