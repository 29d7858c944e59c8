"""How well each feature alone ranks the coming excess returns: per-feature rank IC.

    feature_label_correlation(panel, return_targets(inputs, panel.index))

For each feature and horizon h, the rank IC is the mean over dates of the cross-sectional
Spearman correlation between the feature and `excess_h`, exactly as
`forecast.quality.daily_rank_ic` defines it for forecasts (rows where either value is
missing dropped per date, average ranks for ties, dates with fewer than `MIN_NAMES` names or
no dispersion skipped), and `ic_ir` its mean over its standard deviation across dates. A
feature constant across tickers on every date (the market family) has no cross-sectional
dispersion, so its IC is NaN: it can only help a model through interactions.

Speed. Calling `daily_rank_ic` per feature and horizon (two grouped ranks and grouped sums
each) is slow on a large panel. Here the panel is laid out as a dense date x ticker grid per
feature and ranked along the ticker axis with one vectorised sort; each feature is ranked
once on its own missing-value pattern and each label once on its own, and only the dates
where the other side is missing for some ticker are ranked again on the joint set (label
re-ranks are shared between features with the same missing pattern). The result equals
`daily_rank_ic` to rounding; a test checks it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from synthpm.columns import ic_col, ic_ir_col, target_col, target_horizons
from synthpm.data.errors import ConfigError, did_you_mean
from synthpm.forecast.base import HORIZONS
from synthpm.forecast.quality import MIN_NAMES, NO_IC, RankIC


def _rank_rows(grid: np.ndarray) -> np.ndarray:
    """Average ranks (1..n) along each row, NaN kept NaN."""
    if grid.size == 0:
        return grid.astype(np.float64)
    return rankdata(grid, axis=1, nan_policy="omit")


def _resolve_horizons(
    targets: pd.DataFrame, horizons: Sequence[str] | Mapping[str, int] | None
) -> list[str]:
    """Horizon names, shortest first where their lengths are known (the last is the longest)."""
    available = target_horizons("excess", targets.columns)
    if horizons is None:
        names = available
        if not names:
            raise ConfigError("targets have no excess_<horizon> column")
    else:
        names = list(horizons)
        if not names:
            raise ConfigError("horizons: none given")
        for h in names:
            if h not in available:
                raise ConfigError(
                    f"no {target_col('excess', h)} column in targets{did_you_mean(h, available)}; "
                    f"horizons there: {', '.join(available) or 'none'}"
                )
    days = dict(horizons) if isinstance(horizons, Mapping) else dict(HORIZONS)
    if all(h in days for h in names):
        names = sorted(names, key=lambda h: days[h])
    return names


def _grid(values: np.ndarray, date_pos: np.ndarray, ticker_pos: np.ndarray, shape) -> np.ndarray:
    out = np.full(shape, np.nan)
    out[date_pos, ticker_pos] = values
    return out


def _mask_key(valid: np.ndarray) -> bytes:
    return hashlib.blake2b(np.packbits(valid).tobytes(), digest_size=16).digest()


def _ic(
    f_rank: np.ndarray,
    f_grid: np.ndarray,
    l_rank: np.ndarray,
    l_grid: np.ndarray,
    label_cache: dict[bytes, np.ndarray],
) -> RankIC:
    """Mean and IR of the per-date Spearman IC from precomputed one-sided ranks."""
    f_valid, l_valid = ~np.isnan(f_grid), ~np.isnan(l_grid)
    joint = f_valid & l_valid
    n = joint.sum(axis=1)
    use = n >= MIN_NAMES
    if not use.any():
        return NO_IC
    rp, rr, jm, n = f_rank[use], l_rank[use], joint[use], n[use]
    # Feature ranks are right where the label misses no feature-valid ticker; else re-rank.
    redo = (f_valid[use] & ~l_valid[use]).any(axis=1)
    if redo.any():
        rp[redo] = _rank_rows(np.where(jm[redo], f_grid[use][redo], np.nan))
    redo = (l_valid[use] & ~f_valid[use]).any(axis=1)
    if redo.any():
        key = _mask_key(f_valid)
        if key not in label_cache:  # same feature mask, same label mask: same joint ranks
            rows = np.flatnonzero(use)[redo]
            label_cache[key] = _rank_rows(np.where(joint[rows], l_grid[rows], np.nan))
        rr[redo] = label_cache[key]
    centre = (n[:, None] + 1) / 2.0
    cp = np.where(jm, rp - centre, 0.0)
    cr = np.where(jm, rr - centre, 0.0)
    cov = np.einsum("ij,ij->i", cp, cr)
    var = np.einsum("ij,ij->i", cp, cp) * np.einsum("ij,ij->i", cr, cr)
    ok = var > 0
    if not ok.any():
        return NO_IC
    ic = pd.Series(cov[ok] / np.sqrt(var[ok]))
    std = ic.std()
    return RankIC(float(ic.mean()), float(ic.mean() / std) if std > 0 else float("nan"))


def feature_label_correlation(
    panel: pd.DataFrame,
    targets: pd.DataFrame,
    horizons: Sequence[str] | Mapping[str, int] | None = None,
    sample_every: int = 1,
) -> pd.DataFrame:
    """Mean daily rank IC and its IR of every feature against `excess_h`, per horizon.

    `panel` is the feature panel (index (date, ticker)); `targets` holds `excess_<h>`
    columns on the same index (it is aligned to the panel's rows when it is not already).
    `horizons`: names (or a name -> trading days mapping) to report; None means every
    `excess_*` column. `sample_every` keeps every k-th trading date, for a quicker look.

    Returns one row per feature, columns `ic_<h>` for each horizon then `ic_ir_<h>`,
    sorted by |IC| at the longest horizon, descending (NaN last).
    """
    if sample_every < 1:
        raise ConfigError(f"sample_every must be at least 1, got {sample_every}")
    if list(panel.index.names) != ["date", "ticker"]:
        raise ConfigError(f"panel index must be (date, ticker), got {panel.index.names}")
    names = _resolve_horizons(targets, horizons)
    if not targets.index.equals(panel.index):
        targets = targets.reindex(panel.index)
    date_codes, calendar = pd.factorize(panel.index.get_level_values("date"), sort=True)
    ticker_codes, tickers = pd.factorize(panel.index.get_level_values("ticker"), sort=True)
    shape = (len(calendar), len(tickers))
    cells = np.bincount(date_codes * shape[1] + ticker_codes, minlength=shape[0] * shape[1])
    if len(cells) and cells.max() > 1:
        raise ConfigError("panel index has duplicate (date, ticker) rows")
    keep_dates = np.arange(0, shape[0], sample_every)

    def grid(values: np.ndarray) -> np.ndarray:
        return _grid(values, date_codes, ticker_codes, shape)[keep_dates]

    labels = {h: grid(targets[target_col("excess", h)].to_numpy(dtype=np.float64)) for h in names}
    label_ranks = {h: _rank_rows(g) for h, g in labels.items()}
    caches: dict[str, dict[bytes, np.ndarray]] = {h: {} for h in names}
    result: dict[str, dict[str, float]] = {}
    for feature in panel.columns:
        f_grid = grid(panel[feature].to_numpy(dtype=np.float64))
        f_rank = _rank_rows(f_grid)
        row = {}
        for h in names:
            ic = _ic(f_rank, f_grid, label_ranks[h], labels[h], caches[h])
            row[ic_col(h)], row[ic_ir_col(h)] = ic.mean, ic.ir
        result[feature] = row
    columns = [ic_col(h) for h in names] + [ic_ir_col(h) for h in names]
    out = pd.DataFrame.from_dict(result, orient="index", columns=columns)
    out.index.name = "feature"
    key = out[ic_col(names[-1])].abs()
    return out.loc[key.sort_values(ascending=False, na_position="last", kind="stable").index]
