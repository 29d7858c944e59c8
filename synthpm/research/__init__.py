"""Research tools: questions about the data and the features, answered point in time.

- `least_correlated` (`scan`): from a start ticker, greedily pick the tickers least
  correlated with those already picked, by daily returns over a trailing window ending at
  `as_of` (a diversification scan that reads no later prices).
- `feature_label_correlation` (`correlate`): each feature's mean daily cross-sectional rank
  IC (and IC IR) against the coming excess return per horizon, a model-free first look at
  which features carry signal; vectorised for a full panel.
- `ablation` (`ablate`): refit the LightGBM forecaster on one purged train/test split with
  each feature family (or feature) removed and report the change in loss, macro F1 and
  rank IC, i.e. what each group adds to the model, interactions included.
"""

from synthpm.research.ablate import ablation
from synthpm.research.correlate import feature_label_correlation
from synthpm.research.scan import least_correlated

__all__ = ["ablation", "feature_label_correlation", "least_correlated"]
