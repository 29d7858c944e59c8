"""Features: the point-in-time panel the analysts read (docs/design.md §2).

`technical` (per-ticker price kernel), `filings` (events and insider trades as known by each
date), `market` (index, VIX, same-date cross-section) → `panel` (assembly, config, cache).
"""

from synthpm.features.panel import (
    FAMILIES,
    FEATURES,
    FeatureConfig,
    PanelInputs,
    build_features,
    features_cached,
)

__all__ = [
    "FAMILIES",
    "FEATURES",
    "FeatureConfig",
    "PanelInputs",
    "build_features",
    "features_cached",
]
