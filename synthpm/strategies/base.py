"""The kinds of strategy the backtest engine runs, with the same fills and costs.

- A **signal source** (`SignalSource`, `synthpm.signals`) turns each decision date's
  contexts into signals; the portfolio manager sizes them under the hard limits. The LM
  agent, always-buy and the fixed rules are signal sources.
- A **portfolio rule** (`PortfolioRule`) returns target weights on its rebalance dates; the
  engine trades to them (no manager limits: a rule is its own risk model, e.g. equal weight
  or HRP). Weights are fractions of equity, signed (a negative weight is a short), summing
  to at most 1 in absolute value; tickers left out are sold.
- The **benchmark** (`synthpm.backtest.BenchmarkHold`): the index, bought and held.

A strategy says which it is with a `kind` attribute (`kind_of`), and the engine runs it
with the matching function (`run_signals`, `run_rule`, `run_benchmark`). Every strategy sees
only what is known at the close of the date: the date's contexts (`Contexts`, whose `.frame`
is the context frame documented in `synthpm.context`) and, for rules, closes up to and
including the date.
"""

from __future__ import annotations

from typing import Literal, Protocol, get_args

import pandas as pd

from synthpm.context import Contexts
from synthpm.data.errors import ConfigError
from synthpm.forecast.base import HORIZONS

Kind = Literal["signals", "rule", "benchmark"]
KINDS: tuple[str, ...] = get_args(Kind)


def check_horizon(horizon: str) -> None:
    """A strategy's forecast horizon must be one the forecaster predicts."""
    if horizon not in HORIZONS:
        raise ConfigError(f"horizon must be one of {', '.join(HORIZONS)}, not {horizon!r}")


def kind_of(strategy: object) -> Kind:
    """The kind a strategy declares as its `kind` attribute: "rule" for a portfolio rule,
    "benchmark" for the index. A signal source may leave it out ("signals"): `SignalSource`
    is the open protocol, `name` and `signals` alone, that the LM agent and test doubles
    implement."""
    kind = getattr(strategy, "kind", "signals")
    if kind not in KINDS:
        raise ConfigError(f"strategy kind must be one of {', '.join(KINDS)}, not {kind!r}")
    return kind


class PortfolioRule(Protocol):
    """What the engine calls on a strategy whose `kind` is "rule" (`run_rule`)."""

    name: str
    kind: Literal["rule"]

    def rebalance(self, date: pd.Timestamp, previous: pd.Timestamp | None) -> bool:
        """Whether to rebalance on this decision date (previous: the last rebalance)."""
        ...

    def weights(self, date: pd.Timestamp, contexts: Contexts, closes: pd.DataFrame) -> pd.Series:
        """Target weight per ticker (index: ticker); `closes` ends at `date`."""
        ...
