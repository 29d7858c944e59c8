"""A small synthetic `History` for the learners' tests: the prices of `synthetic_inputs`,
and random forecasts and panel features (the learners' plumbing, not their skill, is tested)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from synthpm.backtest.engine import BacktestConfig
from synthpm.backtest.market import Market
from synthpm.learn.history import FORECAST_INPUTS, PANEL_INPUTS, History
from synthpm.limits import Limits
from tests.conftest import synthetic_inputs


def synthetic_history(tickers: int = 8, days: int = 520, seed: int = 0) -> History:
    inputs = synthetic_inputs(tickers=tickers, days=days, seed=seed)
    market = Market.from_inputs(inputs)
    index = pd.MultiIndex.from_product([market.dates, market.tickers], names=["date", "ticker"])
    rng = np.random.default_rng(seed)
    panel = pd.DataFrame(rng.normal(0, 0.05, (len(index), len(PANEL_INPUTS))), index, PANEL_INPUTS)
    forecasts = pd.DataFrame(
        rng.normal(0, 0.02, (len(index), len(FORECAST_INPUTS))), index, FORECAST_INPUTS
    )
    forecasts = forecasts[index.get_level_values("date") >= market.dates[60]]
    config = BacktestConfig(limits=Limits(max_positions=4))
    return History(market, panel, forecasts, config)


def perturbed(history: History, after: pd.Timestamp, seed: int = 99) -> History:
    """The same history with every price, feature and forecast after `after` changed."""
    from dataclasses import replace

    rng = np.random.default_rng(seed)
    m = history.market
    later = m.dates > after
    scale = np.where(later[:, None], np.exp(rng.normal(0, 0.2, m.close.shape)), 1.0)
    closes = m.closes * scale
    market = replace(
        m, close=m.close * scale, open=m.open * scale, mark=m.mark * scale, closes=closes,
        benchmark=m.benchmark * np.where(later, 1.3, 1.0),
    )  # fmt: skip

    def shake(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        rows = frame.index.get_level_values("date") > after
        frame.loc[rows] = rng.normal(0, 0.1, (int(rows.sum()), frame.shape[1]))
        return frame

    return History(market, shake(history.panel), shake(history.forecasts), history.config)
