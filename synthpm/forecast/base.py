"""What every forecaster shares: horizons, return classes, and the model API (skfolio style).

Every model is an estimator with `fit(panel, rows, targets)` and `predict(panel, rows)`:
`panel` is the whole feature panel (index (date, ticker), sorted by date then ticker) and
`rows` the integer positions to learn from or predict. Passing the whole panel lets a
sequence model read each row's trailing window of the same ticker (rows before it, so still
point in time) while a row model reads just the row.

`targets` (aligned with `rows`) has, per horizon h in `horizons`:
`class_h` (int 0..4, from the fold's class edges), `excess_h` (forward return minus the
benchmark's), `vol_h` (annualised realised volatility ahead), `mdd_h` (max drawdown ahead,
<= 0); `targets.attrs["class_edges"][h]` holds the fold's four class edges.
`predict` returns, per horizon: `proba_h_0..4` (class probabilities, rows sum to 1),
`vol_h`, `mdd_h`, and optionally `ret_h` (a direct estimate of the excess return; when
absent the driver takes the probability-weighted mean of the fold's class means).
`synthpm.columns` spells these names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Self

import numpy as np
import pandas as pd

HORIZONS: dict[str, int] = {"1d": 1, "1w": 5, "1m": 21, "3m": 63}  # trading days
CLASSES = ("down_a_lot", "down_a_little", "flat", "up_a_little", "up_a_lot")
N_CLASSES = len(CLASSES)


class ReturnModel(Protocol):
    """A multi-horizon forecaster of return class, volatility and drawdown."""

    name: str

    def fit(self, panel: pd.DataFrame, rows: np.ndarray, targets: pd.DataFrame) -> Self: ...

    def predict(self, panel: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame: ...

    def save(self, path: Path) -> None: ...

    @classmethod
    def load(cls, path: Path) -> Self: ...
