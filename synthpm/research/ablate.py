"""What each feature family (or feature) adds to the LightGBM forecaster: drop-one ablation.

    ablation(panel, return_targets(inputs, panel.index), horizon="1m", by="family")

One purged train/test split, the walk-forward driver's rules on a single fold:
- test: `test_days` trading days from `test_start` (default: the last `test_days` dates
  that have an `excess_<horizon>` label, so the test period is fully scored);
- train: every row dated at least `purge` + 1 trading days before the test start (the
  driver's `train_end`; `purge` defaults to the targets' lookahead for this horizon, so no
  training label reads a test-period close), thinned to every `train_stride`-th trading day
  of the calendar, rows with a missing target dropped;
- return classes by the training quintiles of the excess return (`class_edges`), as a fold
  does.
The baseline model sees every feature; each ablated model the same rows with one group of
columns removed, the same seed and rounds, so differences are the group's contribution (plus
some fitting noise: with `feature_fraction` < 1 the column sampling changes when a column
goes, so treat differences of a few thousandths of IC as noise).

Scores on the labelled test rows: `loss`, the mean squared error of the direct excess-return
estimate `ret_h`; `macro_f1` of the most probable return class against the realised class
by the training edges; `rank_ic`, the mean daily Spearman IC of `ret_h`
(`forecast.quality.daily_rank_ic`). `d_*` are ablated minus baseline: a negative `d_ic`
means removing the group hurt, so the group helps. Rows after the baseline are sorted by
`d_ic` ascending, the most useful group first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from synthpm.columns import prediction_col, proba_cols, target_col
from synthpm.data.errors import ConfigError, did_you_mean
from synthpm.features.panel import FAMILIES, family_of
from synthpm.forecast.base import HORIZONS, N_CLASSES
from synthpm.forecast.lgbm import LightGBMForecaster
from synthpm.forecast.quality import daily_rank_ic
from synthpm.forecast.targets import lookahead
from synthpm.forecast.walkforward import class_edges, to_class

BY = ("family", "feature")
BASELINE = "(none)"
UNLISTED = "(unlisted)"  # panel columns that are not in FEATURES, as one family
CLASS_QUANTILES = (0.2, 0.4, 0.6, 0.8)  # ForecastConfig's default
COLUMNS = ["dropped", "features_dropped", "loss", "macro_f1", "rank_ic", "d_loss", "d_f1", "d_ic"]


def _groups(columns: list[str], by: str) -> dict[str, list[str]]:
    """Group name -> the panel columns it removes (only groups present in the panel)."""
    if by == "feature":
        return {c: [c] for c in columns}
    groups = {fam: [c for c in columns if family_of(c) == fam] for fam in FAMILIES}
    groups[UNLISTED] = [c for c in columns if family_of(c) is None]
    return {name: cols for name, cols in groups.items() if cols}


class _Split(NamedTuple):
    """The trading calendar, the test period's bounds on it, and each row's place on it."""

    calendar: pd.DatetimeIndex  # the panel's dates, sorted
    test_start: int  # calendar position of the first test day
    test_end: int  # calendar position of the last test day (inclusive)
    day_pos: np.ndarray  # calendar position of each row


def _split(
    dates: pd.Index,
    labelled: np.ndarray,
    test_start,
    test_days: int,
    purge: int,
) -> _Split:
    """Calendar, test start and end positions, and the calendar position of each row."""
    calendar = pd.DatetimeIndex(dates.unique()).sort_values()
    day_pos = calendar.get_indexer(dates)
    if test_start is None:
        with_labels = np.unique(day_pos[labelled])
        if len(with_labels) == 0:
            raise ConfigError("no row has a label for this horizon: nothing to test on")
        start = int(with_labels[-test_days:][0])
    else:
        start = int(calendar.searchsorted(pd.Timestamp(test_start)))
        if start >= len(calendar):
            raise ConfigError(
                f"test_start={pd.Timestamp(test_start).date()} is after the panel's last date "
                f"{calendar[-1].date()}"
            )
    end = min(start + test_days, len(calendar)) - 1
    if start - purge - 1 < 0:
        raise ConfigError(
            f"test_start {calendar[start].date()} leaves no training dates before it with a "
            f"purge of {purge} trading days (the panel starts {calendar[0].date()})"
        )
    return _Split(calendar, start, end, day_pos)


def _scores(
    pred: pd.DataFrame, excess: np.ndarray, dates: np.ndarray, edges: np.ndarray, h: str
) -> dict[str, float]:
    ret = pred[prediction_col("ret", h)].to_numpy()
    predicted = pred[proba_cols(h, N_CLASSES)].to_numpy().argmax(axis=1)
    realised = to_class(excess, edges).astype(int)
    return {
        "loss": float(np.mean((ret - excess) ** 2)),
        "macro_f1": float(
            f1_score(realised, predicted, labels=range(N_CLASSES), average="macro", zero_division=0)
        ),
        "rank_ic": daily_rank_ic(dates, ret, excess).mean,
    }


def ablation(
    panel: pd.DataFrame,
    targets: pd.DataFrame,
    horizon: str = "1m",
    by: str = "family",
    test_start: str | pd.Timestamp | None = None,
    test_days: int = 252,
    purge: int | None = None,
    train_stride: int = 5,
    seed: int = 0,
    rounds: int = 60,
    progress: Callable | None = None,
    model_params: dict | None = None,
) -> pd.DataFrame:
    """Drop-one ablation of feature groups on one purged split (see the module docstring).

    `panel` is the feature panel (index (date, ticker), sorted by date then ticker);
    `targets` has `excess_<horizon>`, `vol_<horizon>` and `mdd_<horizon>` on the same
    index. `by`: "family" (the families of `FEATURES`; columns not listed there form one
    "(unlisted)" group) or "feature". `model_params` go to `LightGBMForecaster` (e.g.
    `min_data_in_leaf` for a small panel). `progress(iterable, total=n)` wraps the fits.

    Returns rows `(none)` (the baseline) then one per group, columns `dropped`,
    `features_dropped` (comma-separated names), `loss`, `macro_f1`, `rank_ic`, and `d_loss`,
    `d_f1`, `d_ic` (minus the baseline's). `attrs` hold the split: `test_start`,
    `test_end`, `train_end`, `train_rows`, `test_rows`, `class_edges`.
    """
    if by not in BY:
        raise ConfigError(f"by must be one of {', '.join(BY)}, got {by!r}{did_you_mean(by, BY)}")
    if horizon not in HORIZONS:
        raise ConfigError(
            f"unknown horizon {horizon!r}{did_you_mean(horizon, HORIZONS)}; "
            f"horizons: {', '.join(HORIZONS)}"
        )
    needed = [target_col(kind, horizon) for kind in ("excess", "vol", "mdd")]
    missing = [c for c in needed if c not in targets.columns]
    if missing:
        raise ConfigError(f"targets lack {', '.join(missing)} (return_targets gives them)")
    if test_days < 1 or train_stride < 1 or rounds < 1:
        raise ConfigError("test_days, train_stride and rounds must be at least 1")
    need_purge = lookahead({horizon: HORIZONS[horizon]})
    purge = need_purge if purge is None else purge
    if purge < need_purge:
        raise ConfigError(
            f"purge={purge} is shorter than the targets' lookahead ({need_purge} trading days): "
            "training labels would overlap the test period"
        )
    if panel.empty or panel.shape[1] == 0:
        raise ConfigError("the feature panel has no rows or no columns")
    if not targets.index.equals(panel.index):
        targets = targets.reindex(panel.index)
    excess = targets[target_col("excess", horizon)].to_numpy(dtype=np.float64)
    dates = panel.index.get_level_values("date")
    calendar, start, end, day_pos = _split(dates, ~np.isnan(excess), test_start, test_days, purge)
    complete = targets[needed].notna().all(axis=1).to_numpy()
    train = np.flatnonzero(
        (day_pos <= start - purge - 1) & (day_pos % train_stride == 0) & complete
    )
    test = np.flatnonzero((day_pos >= start) & (day_pos <= end) & ~np.isnan(excess))
    if len(train) == 0 or len(test) == 0:
        raise ConfigError(
            f"the split has {len(train)} training and {len(test)} labelled test rows: "
            "nothing to fit or score"
        )

    # One sub-panel of just the split's rows: each ablated fit copies only these.
    rows = np.concatenate([train, test])
    sub = panel.iloc[rows]
    train_pos, test_pos = np.arange(len(train)), np.arange(len(train), len(rows))
    fit_targets = targets.iloc[train][needed].copy()
    fit_excess = fit_targets[target_col("excess", horizon)].to_numpy()
    edges = class_edges(fit_excess, CLASS_QUANTILES)
    fit_targets[target_col("class", horizon)] = to_class(fit_excess, edges)
    fit_targets.attrs["class_edges"] = {horizon: edges.tolist()}
    test_excess = excess[test]
    test_dates = dates[test].to_numpy()

    columns = list(panel.columns)
    groups = {BASELINE: [], **_groups(columns, by)}
    groups = {k: v for k, v in groups.items() if len(v) < len(columns)}  # keep >= 1 column
    items = list(groups.items())
    iterator = progress(items, total=len(items)) if progress else items
    records = []
    for name, dropped in iterator:
        gone = set(dropped)
        x = sub[[c for c in columns if c not in gone]]
        model = LightGBMForecaster(
            horizons=(horizon,), rounds=rounds, seed=seed, **(model_params or {})
        )
        pred = model.fit(x, train_pos, fit_targets).predict(x, test_pos)
        scores = _scores(pred, test_excess, test_dates, edges, horizon)
        records.append({"dropped": name, "features_dropped": ", ".join(dropped), **scores})

    out = pd.DataFrame.from_records(records)
    base = out.iloc[0]
    for d, col in (("d_loss", "loss"), ("d_f1", "macro_f1"), ("d_ic", "rank_ic")):
        out[d] = out[col] - base[col]
    rest = out.iloc[1:].sort_values(["d_ic", "dropped"], na_position="last", kind="stable")
    out = pd.concat([out.iloc[:1], rest], ignore_index=True)[COLUMNS]
    out.attrs.update(
        horizon=horizon,
        by=by,
        test_start=calendar[start],
        test_end=calendar[end],
        train_end=calendar[start - purge - 1],
        train_rows=len(train),
        test_rows=len(test),
        class_edges=edges.tolist(),
    )
    return out
