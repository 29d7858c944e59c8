"""Forecast quality, out of sample only: per horizon overall and per fold.

Conventions, stated once:
- `rank_ic`: the mean over dates of the cross-sectional Spearman correlation between
  `expected_return_h` and the realised excess return (Qlib's "IC"), dates with fewer than
  `MIN_NAMES` labelled tickers skipped; `ic_ir` is its mean over its std across dates.
- `accuracy`, `macro_f1`: of `return_class_h` against the realised class, both by the
  fold's own class edges (so chance is ~0.2 with quintile edges).
- `sign_accuracy`: sign of the expected vs realised excess return; `mae` and `r2` of the
  expected excess return (a negative R² is common and honest at daily horizons).
- volatility and drawdown: MAE and rank IC of the forecast against the realised value.
- events: Brier score and the base rate per event group, where filings exist.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, r2_score

from synthpm.columns import FOLD, event_prob_group, event_target_col, forecast_col, target_col
from synthpm.forecast.base import CLASSES

MIN_NAMES = 5


class RankIC(NamedTuple):
    mean: float  # over dates, of the cross-sectional Spearman correlation
    ir: float  # the mean over its standard deviation across dates (NaN without dispersion)


NO_IC = RankIC(float("nan"), float("nan"))


def daily_rank_ic(dates: np.ndarray, pred: np.ndarray, real: np.ndarray) -> RankIC:
    """Mean and IR of the per-date Spearman correlation, vectorised over dates."""
    frame = pd.DataFrame({"date": dates, "p": pred, "r": real}).dropna()
    if frame.empty:
        return NO_IC
    by = frame.groupby("date")
    frame["p"] = by["p"].rank()
    frame["r"] = by["r"].rank()
    frame["pr"], frame["pp"], frame["rr"] = frame.p * frame.r, frame.p**2, frame.r**2
    s = frame.groupby("date")[["p", "r", "pr", "pp", "rr"]].agg(["sum"]).droplevel(1, axis=1)
    n = frame.groupby("date").size()
    cov = s.pr - s.p * s.r / n
    var = (s.pp - s.p**2 / n) * (s.rr - s.r**2 / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        ic = (cov / np.sqrt(var))[(n >= MIN_NAMES) & (var > 0)]
    if ic.empty:
        return NO_IC
    std = ic.std()
    return RankIC(float(ic.mean()), float(ic.mean() / std) if std > 0 else float("nan"))


def _return_metrics(f: pd.DataFrame, real: pd.DataFrame, h: str, edges: pd.Series) -> dict:
    excess = real[target_col("excess", h)].to_numpy()
    keep = ~np.isnan(excess)
    if not keep.any():
        return {"rows": 0}
    f, excess = f[keep], excess[keep]
    fold_edges = np.vstack(edges.loc[f[FOLD].to_numpy()].to_numpy())
    realised_class = (excess[:, None] >= fold_edges).sum(axis=1)
    predicted_class = f[forecast_col("return_class", h)].cat.codes.to_numpy()
    expected = f[forecast_col("expected_return", h)].to_numpy()
    dates = f.index.get_level_values("date").to_numpy()
    ic = daily_rank_ic(dates, expected, excess)
    out = {
        "rows": int(keep.sum()),
        "accuracy": accuracy_score(realised_class, predicted_class),
        "macro_f1": f1_score(
            realised_class,
            predicted_class,
            labels=range(len(CLASSES)),
            average="macro",
            zero_division=0,
        ),
        "rank_ic": ic.mean,
        "ic_ir": ic.ir,
        "sign_accuracy": float((np.sign(expected) == np.sign(excess)).mean()),
        "mae": mean_absolute_error(excess, expected),
        "r2": r2_score(excess, expected),
    }
    for target, field in (("vol", "volatility"), ("mdd", "max_drawdown")):
        realised = real[target_col(target, h)].to_numpy()[keep]
        ok = ~np.isnan(realised)
        forecast = f[forecast_col(field, h)].to_numpy()[ok]
        out[f"{field}_mae"] = mean_absolute_error(realised[ok], forecast)
        out[f"{field}_rank_ic"] = daily_rank_ic(dates[ok], forecast, realised[ok]).mean
    return {k: round(float(v), 5) if isinstance(v, float) else v for k, v in out.items()}


def quality_report(
    forecasts: pd.DataFrame,
    targets: pd.DataFrame,
    events: pd.DataFrame,
    folds: list[dict],
    horizons: dict[str, int],
) -> dict:
    """{"horizons": {h: overall}, "folds": {start: {h: ...}}, "events": {group: ...}}."""
    real = targets.loc[forecasts.index]
    report: dict = {"horizons": {}, "folds": {}, "events": {}}
    for h in horizons:
        edges = pd.Series({f["test_start"]: f["class_edges"][h] for f in folds})
        report["horizons"][h] = _return_metrics(forecasts, real, h, edges)
        for fold in folds:
            in_fold = (forecasts[FOLD] == fold["test_start"]).to_numpy()
            report["folds"].setdefault(fold["test_start"], {})[h] = _return_metrics(
                forecasts[in_fold], real[in_fold], h, edges
            )
    happened = events.loc[forecasts.index]
    for col in forecasts.columns:
        group = event_prob_group(col)
        if group is None:
            continue
        y, p = happened[event_target_col(group)].to_numpy(), forecasts[col].to_numpy()
        ok = ~(np.isnan(y) | np.isnan(p))
        if ok.any():
            report["events"][group] = {
                "rows": int(ok.sum()),
                "base_rate": round(float(y[ok].mean()), 5),
                "brier": round(float(((p[ok] - y[ok]) ** 2).mean()), 5),
                "brier_base_rate": round(float(((y[ok].mean() - y[ok]) ** 2).mean()), 5),
            }
    return report


SHORT_NAMES = {
    "accuracy": "acc",
    "macro_f1": "F1",
    "rank_ic": "IC",
    "ic_ir": "IC IR",
    "sign_accuracy": "sign acc",
    "volatility_mae": "vol MAE",
    "volatility_rank_ic": "vol IC",
    "max_drawdown_mae": "mdd MAE",
    "max_drawdown_rank_ic": "mdd IC",
}


def quality_table(report: dict) -> pd.DataFrame:
    """The overall metrics as a frame, one row per horizon, short column names (the CLI's)."""
    table = pd.DataFrame(report["horizons"]).T.rename(columns=SHORT_NAMES)
    table["rows"] = table["rows"].astype(int)
    return table.rename_axis("horizon")
