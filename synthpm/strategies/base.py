"""The two kinds of strategy the backtest engine runs, with the same fills and costs.

- A `SignalSource` (`synthpm.signals`) turns each decision date's contexts into signals;
  the portfolio manager sizes them under the hard limits. The LM agent, always-buy and the
  fixed rules are signal sources.
- A `PortfolioRule` returns target weights on its rebalance dates; the engine trades to
  them (no manager limits: a rule is its own risk model, e.g. equal weight or HRP). Weights
  are fractions of equity, signed (a negative weight is a short), summing to at most 1 in
  absolute value; tickers left out are sold.

Both see only what is known at the close of the date: the date's contexts (`Contexts`,
whose `.frame` is the context frame documented in `synthpm.context`) and, for
rules, closes up to and including the date.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import pandas as pd

from synthpm.context import Contexts
from synthpm.data.errors import ConfigError
from synthpm.forecast.base import HORIZONS


def check_horizon(horizon: str) -> None:
    """A strategy's forecast horizon must be one the forecaster predicts."""
    if horizon not in HORIZONS:
        raise ConfigError(f"horizon must be one of {', '.join(HORIZONS)}, not {horizon!r}")


@runtime_checkable
class PortfolioRule(Protocol):
    name: str

    def rebalance(self, date: pd.Timestamp, previous: pd.Timestamp | None) -> bool:
        """Whether to rebalance on this decision date (previous: the last rebalance)."""
        ...

    def weights(self, date: pd.Timestamp, contexts: Contexts, closes: pd.DataFrame) -> pd.Series:
        """Target weight per ticker (index: ticker); `closes` ends at `date`."""
        ...
