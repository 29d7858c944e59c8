"""What every learner shares: a model per test year, trained only on what came before it.

`fit(history)` keeps the run's whole history; the first decision date of a year asks for
that year's model, trained on `history.until(<the year's first day>)`. So a model never
reads a price, feature or forecast dated in or after the year it trades, and a backtest
over several years is a walk-forward of yearly refits (the forecaster's own schedule).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from synthpm.data.errors import ConfigError
from synthpm.learn.history import History


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread while a learner trains or acts: its networks are small, where a
    second thread only adds synchronisation, and `compare` may run strategies in parallel
    processes (threads beyond the cores spin against each other). Restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(eq=False, kw_only=True)
class WalkForward:
    """A learner's yearly models; subclasses implement `train(history, year)`."""

    seed: int = 0
    _history: History | None = field(default=None, init=False, repr=False)
    _models: dict[int, Any] = field(default_factory=dict, init=False, repr=False)

    def fit(self, history: History) -> None:
        """Keep the run's history; models are trained lazily, one per test year."""
        self._history, self._models = history, {}

    @property
    def history(self) -> History:
        if self._history is None:
            raise ConfigError(f"{self.name}: call fit(history) before the backtest")
        return self._history

    def model_for(self, date: pd.Timestamp) -> Any:
        """The model trading `date`: trained on everything dated before its year began
        (None when that is too little to learn from)."""
        year = pd.Timestamp(date).year
        if year not in self._models:
            past = self.history.until(pd.Timestamp(year=year, month=1, day=1))
            self._models[year] = self.train(past, year)
        return self._models[year]

    def train(self, history: History, year: int) -> Any:
        raise NotImplementedError
