"""Portfolio rules: target weights on a schedule (equal weight, forecast top-k, the 'alfred'
magnitude bet, hierarchical risk parity / minimum variance).

Every rule reads only the date's contexts and `closes` up to the date (it slices them itself,
so a caller passing a longer frame cannot leak the future). The universe of a rebalance is the
tickers of the date's contexts: the engine should hand a rule the full universe's contexts on
its rebalance dates (a date with only filing-triggered rows would otherwise rebalance into
just the filers).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np
import pandas as pd

from synthpm.columns import forecast_col
from synthpm.context import Contexts
from synthpm.data.errors import ConfigError
from synthpm.strategies.base import check_horizon

Every = Literal["week", "month"]
_PERIOD = {"week": "W", "month": "M"}


def new_period(date: pd.Timestamp, previous: pd.Timestamp | None, every: str) -> bool:
    """True on the first decision date of a calendar week (Mon-Sun) or month, i.e. when the
    last rebalance was in an earlier period (or there was none)."""
    if previous is None:
        return True
    freq = _PERIOD[every]
    return pd.Timestamp(date).to_period(freq) != pd.Timestamp(previous).to_period(freq)


@dataclass(frozen=True, kw_only=True)
class Scheduled:
    """What every rule shares: it rebalances on the first decision date of each calendar
    week or month (`every`)."""

    kind: ClassVar[str] = "rule"  # run by the engine's `run_rule` (`strategies.base.kind_of`)
    every: Every = "week"

    def __post_init__(self) -> None:
        if self.every not in _PERIOD:
            raise ConfigError(f"every must be 'week' or 'month', not {self.every!r}")

    def rebalance(self, date: pd.Timestamp, previous: pd.Timestamp | None) -> bool:
        return new_period(date, previous, self.every)


def _empty() -> pd.Series:
    return pd.Series(dtype=float, name="weight")


def _tickers(contexts: Contexts) -> pd.Index:
    return pd.Index(contexts.frame["ticker"].unique(), name="ticker")


def _expected(contexts: Contexts, horizon: str) -> pd.Series:
    """Finite expected excess returns by ticker (none before the first forecast fold)."""
    f = contexts.frame
    column = forecast_col("expected_return", horizon)
    if column not in f or f.empty:
        return _empty()
    values = pd.Series(pd.to_numeric(f[column], errors="coerce").to_numpy(float), index=f.ticker)
    values = values[np.isfinite(values.to_numpy())]
    return values[~values.index.duplicated()]


@dataclass(frozen=True, kw_only=True)
class EqualWeight(Scheduled):
    """1/n in every ticker of the date's contexts, rebalanced each month (or week)."""

    every: Every = "month"
    name: str = field(default="equal_weight", init=False)

    def weights(self, date: pd.Timestamp, contexts: Contexts, closes: pd.DataFrame) -> pd.Series:
        tickers = _tickers(contexts)
        if tickers.empty:
            return _empty()
        return pd.Series(1.0 / len(tickers), index=tickers, name="weight")


@dataclass(frozen=True, kw_only=True)
class TopK(Scheduled):
    """'LightGBM top-k': equal weight in the k highest walk-forward expected returns at
    `horizon` (fewer names when fewer have a forecast; all cash before the first fold)."""

    k: int = 20
    horizon: str = "1m"
    name: str = field(default="lgbm_topk", init=False)

    def __post_init__(self) -> None:
        check_horizon(self.horizon)
        super().__post_init__()
        if self.k < 1:
            raise ConfigError(f"k must be at least 1, not {self.k}")

    def weights(self, date: pd.Timestamp, contexts: Contexts, closes: pd.DataFrame) -> pd.Series:
        expected = _expected(contexts, self.horizon)
        if expected.empty:
            return _empty()
        # stable sort: ties go to the earlier (alphabetical) ticker, the same every run
        top = expected.sort_values(ascending=False, kind="stable").index[: self.k]
        return pd.Series(1.0 / len(top), index=top, name="weight")


@dataclass(frozen=True, kw_only=True)
class MagnitudeChoice(Scheduled):
    """The 'alfred' rule: one position in the ticker whose expected return at `horizon` is
    largest in absolute value; long `weight` if positive, short (-`weight`) if negative."""

    horizon: str = "1w"
    weight: float = 1.0
    name: str = field(default="magnitude", init=False)

    def __post_init__(self) -> None:
        check_horizon(self.horizon)
        super().__post_init__()
        if not 0.0 < self.weight <= 1.0:
            raise ConfigError(f"weight must be in (0, 1], not {self.weight}")

    def weights(self, date: pd.Timestamp, contexts: Contexts, closes: pd.DataFrame) -> pd.Series:
        expected = _expected(contexts, self.horizon)
        if expected.empty:
            return _empty()
        best = expected.index[int(np.argmax(np.abs(expected.to_numpy())))]
        sign = np.sign(expected[best])
        if sign == 0:  # no view either way: stay in cash
            return _empty()
        return pd.Series([sign * self.weight], index=pd.Index([best], name="ticker"), name="weight")


@dataclass(frozen=True, kw_only=True)
class RiskParity(Scheduled):
    """skfolio `HierarchicalRiskParity` ("hrp") or `MeanRisk` minimum variance
    ("min_variance"), long only and fully invested, fitted on the trailing `lookback` daily
    returns of the date's tickers that have a complete window (no missing close).

    A fit on several hundred assets is too slow for every rebalance of a long backtest
    (benchmarks/results/design_choices.md), so `max_assets` (default 100) keeps the tickers
    with the longest price history up to the date (ties by ticker name): a choice that uses
    no forecast, changes slowly (low turnover) and favours seasoned names with clean
    covariance estimates. `max_assets=None` fits every eligible ticker.
    """

    every: Every = "month"
    lookback: int = 252
    method: Literal["hrp", "min_variance"] = "hrp"
    max_assets: int | None = 100
    name: str = field(default="hrp", init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method not in ("hrp", "min_variance"):
            raise ConfigError(f"method must be 'hrp' or 'min_variance', not {self.method!r}")
        if self.lookback < 20:
            raise ConfigError(f"lookback must be at least 20 days, not {self.lookback}")
        if self.max_assets is not None and self.max_assets < 2:
            raise ConfigError(f"max_assets must be at least 2 (or None), not {self.max_assets}")

    def returns(self, date: pd.Timestamp, contexts: Contexts, closes: pd.DataFrame) -> pd.DataFrame:
        """The trailing daily returns the fit uses (columns: the eligible tickers)."""
        past = closes.loc[: pd.Timestamp(date)]  # never a close after the date
        tickers = [t for t in _tickers(contexts) if t in past.columns]
        window = past[tickers].iloc[-(self.lookback + 1) :]
        if len(window) < self.lookback + 1:
            return pd.DataFrame(index=window.index[1:])
        complete = window.columns[window.notna().all().to_numpy()]
        returns = window[complete].pct_change().iloc[1:]
        returns = returns.loc[:, returns.std().to_numpy() > 0]  # a flat price has no risk
        if self.max_assets is not None and returns.shape[1] > self.max_assets:
            history = past[returns.columns].notna().sum()
            keep = history.sort_values(ascending=False, kind="stable").index[: self.max_assets]
            returns = returns[sorted(keep)]
        return returns

    def weights(self, date: pd.Timestamp, contexts: Contexts, closes: pd.DataFrame) -> pd.Series:
        returns = self.returns(date, contexts, closes)
        if returns.shape[1] == 0:
            return _empty()
        if returns.shape[1] == 1:
            return pd.Series(1.0, index=pd.Index(returns.columns, name="ticker"), name="weight")
        from skfolio import RiskMeasure
        from skfolio.optimization import HierarchicalRiskParity, MeanRisk, ObjectiveFunction

        model = (
            HierarchicalRiskParity(risk_measure=RiskMeasure.VARIANCE)
            if self.method == "hrp"
            else MeanRisk(
                objective_function=ObjectiveFunction.MINIMIZE_RISK,
                risk_measure=RiskMeasure.VARIANCE,
            )
        )
        with warnings.catch_warnings():
            # more assets than days: skfolio repairs the covariance and says so every fit
            warnings.filterwarnings("ignore", message=".*not positive definite.*")
            model.fit(returns)
        weights = np.clip(np.asarray(model.weights_, dtype=float), 0.0, None)
        weights = weights / weights.sum()  # solver noise: exactly long-only and fully invested
        return pd.Series(weights, index=pd.Index(returns.columns, name="ticker"), name="weight")
