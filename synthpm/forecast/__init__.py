"""Forecasts: walk-forward analyst models (docs/design.md §3).

`base` (horizons, classes, the model API) → `targets` (forward labels, the one place that
reads the future) → `lgbm` / `nets` (models) → `walkforward` (folds, purge, output schema)
→ `quality` (out-of-sample report).
"""

from synthpm.forecast.base import CLASSES, HORIZONS
from synthpm.forecast.walkforward import ForecastConfig, WalkForward, walk_forward

__all__ = ["CLASSES", "HORIZONS", "ForecastConfig", "WalkForward", "walk_forward"]
