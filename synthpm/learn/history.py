"""`History`: what a learning strategy may train on, and the observations it acts on.

A learner (`synthpm.learn`) is handed the run's whole market, feature panel and walk-forward
forecasts once, before the backtest (`fit`). It trains walk-forward: before each test year,
only on what `History.until` keeps, so a price, feature or forecast dated at or after the
year's first day never reaches the model of that year. The panel's rows are point in time by
construction (each uses data known by its date) and hold no price levels (returns, ratios and
ranks only), so observations read them as they are; the forecasts are out of sample.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from synthpm.backtest.engine import BacktestConfig
from synthpm.backtest.market import Market
from synthpm.columns import forecast_col
from synthpm.data.errors import ConfigError
from synthpm.dataset.calendar import scheduled_dates

# What each asset's observation holds: the forecaster's views and a few panel features that
# carry the common cross-sectional effects (momentum, reversal, volatility, volume, sector).
FORECAST_INPUTS = (
    forecast_col("expected_return", "1w"),
    forecast_col("expected_return", "1m"),
    forecast_col("expected_return", "3m"),
    forecast_col("confidence", "1m"),
    forecast_col("volatility", "1m"),
)
PANEL_INPUTS = (
    "ret_5d", "ret_21d", "ret_126d", "vol_21d", "rsi_14", "dist_52w_high", "volume_z_20",
    "sector_rel_21d",
)  # fmt: skip
OBS_INPUTS = (*FORECAST_INPUTS, *PANEL_INPUTS)
RANKED_BY = forecast_col("expected_return", "1m")  # slots are ordered by it
_PERIOD = {"week": "W", "month": "M"}


def cross_sectional_z(values: np.ndarray, clip: float = 3.0) -> np.ndarray:
    """Each column z-scored across the rows (one date's assets), clipped; NaN → 0 (the mean).
    Normalising per date keeps a regime's level (a crash's returns) out of the scale."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column: NaN, then 0
        mean = np.nanmean(values, axis=0) if len(values) else 0.0
        std = np.nanstd(values, axis=0) if len(values) else 1.0
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    z = (values - np.nan_to_num(mean)) / std
    return np.clip(np.nan_to_num(z, nan=0.0), -clip, clip).astype(np.float32)


@dataclass(frozen=True)
class Snapshot:
    """One decision date as a learner sees it: its eligible tickers and their inputs."""

    date: pd.Timestamp
    t: int  # the date's row in the market's arrays
    tickers: pd.Index  # members with a forecast, best 1m expected return first
    columns: np.ndarray  # each ticker's column in the market's arrays
    inputs: np.ndarray  # len(tickers) x len(OBS_INPUTS), cross-sectionally normalised
    raw: pd.DataFrame  # the same rows unnormalised (index: ticker), for rule-based states


@dataclass(frozen=True)
class History:
    """The run's prices, feature panel and forecasts, and the run's costs (the environment's
    broker uses them: the reward pays what the backtest pays)."""

    market: Market
    panel: pd.DataFrame  # (date, ticker) → features
    forecasts: pd.DataFrame  # (date, ticker) → walk-forward forecasts
    config: BacktestConfig

    def __post_init__(self) -> None:
        missing = [c for c in PANEL_INPUTS if c not in self.panel.columns]
        missing += [c for c in FORECAST_INPUTS if c not in self.forecasts.columns]
        if missing:
            raise ConfigError(f"a learner needs the inputs {', '.join(missing)}, absent here")

    def until(self, cutoff: pd.Timestamp) -> History:
        """Only what is dated before `cutoff`: the market's days, the panel's and forecasts'
        rows. A model fitted on it cannot have read anything from `cutoff` on."""
        m, t = self.market, int(self.market.dates.searchsorted(pd.Timestamp(cutoff)))
        market = replace(
            m, dates=m.dates[:t], open=m.open[:t], close=m.close[:t], mark=m.mark[:t],
            benchmark=m.benchmark[:t], member=m.member[:t], closes=m.closes.iloc[:t],
        )  # fmt: skip
        panel, forecasts = _before(self.panel, cutoff), _before(self.forecasts, cutoff)
        return History(market, panel, forecasts, self.config)

    def schedule(self, every: str) -> pd.DatetimeIndex:
        """The decision dates a rule on `every` rebalances on in the backtest: the last
        trading day of each week (`dataset.calendar`'s weekly schedule), and for "month" the
        first of those in each month (`strategies.rules.new_period`); only dates with
        forecasts."""
        if every not in _PERIOD:
            raise ConfigError(f"every must be 'week' or 'month', not {every!r}")
        dates = self.forecasts.index.get_level_values("date").unique().sort_values()
        weekly = scheduled_dates(dates, "weekly")
        if every == "week":
            return weekly
        return pd.DatetimeIndex(pd.Series(weekly).groupby(weekly.to_period("M")).min().to_numpy())

    def snapshot(self, date: pd.Timestamp, tickers: pd.Index | None = None) -> Snapshot:
        """The date's members with a forecast (or `tickers`, those of the backtest's contexts),
        ordered by the forecaster's 1m expected return, best first (ties by name)."""
        date = pd.Timestamp(date)
        t = int(self.market.dates.get_loc(date))
        try:
            rows = self.forecasts.xs(date, level="date")[list(FORECAST_INPUTS)]
        except KeyError:
            rows = pd.DataFrame(columns=list(FORECAST_INPUTS), dtype=float)
        if tickers is not None:
            rows = rows[rows.index.isin(tickers)]
        cols = self.market.tickers.get_indexer(rows.index)
        keep = (cols >= 0) & np.isfinite(rows[RANKED_BY].to_numpy(float))
        at = np.maximum(cols, 0)
        keep &= self.market.member[t, at] & np.isfinite(self.market.close[t, at])
        rows = rows[keep]
        try:
            feats = self.panel.xs(date, level="date")[list(PANEL_INPUTS)]
        except KeyError:
            feats = pd.DataFrame(columns=list(PANEL_INPUTS), dtype=float)
        raw = rows.join(feats.reindex(rows.index)).astype(float)
        order = np.lexsort((raw.index.to_numpy(str), -raw[RANKED_BY].to_numpy()))
        raw = raw.iloc[order]
        raw.index.name = "ticker"
        return Snapshot(
            date=date,
            t=t,
            tickers=raw.index,
            columns=self.market.tickers.get_indexer(raw.index),
            inputs=cross_sectional_z(raw[list(OBS_INPUTS)].to_numpy(float)),
            raw=raw,
        )


def _before(frame: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    dates = frame.index.get_level_values("date")
    return frame[dates < pd.Timestamp(cutoff)]
