"""Which forecaster reads the S&P 500 best a month ahead? Variants on validation years only
(not a test: it prints figures and writes `benchmarks/results/forecaster_variants.json`).

    python benchmarks/forecaster_variants.py            # validation years 2010-2018

Reads the point-in-time 2005-2022 store that `benchmarks/decision_quality.py` builds (its
work folder; says so and stops when it is missing). For each validation year Y, a model is
fitted on every 5th trading day up to 65 trading days before Y (the purge) and scores Y's
members; the figure is the per-date rank IC of the 1-month excess return (Qlib's IC), per
year and its mean. The test years (2019-2022) are not read.

Single features first (the sign a user would trade is theirs to choose; a factor that
flips sign between years carries no usable signal), then the models:
- Huber on the raw excess return with the raw features (the walk-forward's model until
  these figures chose the next);
- cross-sectionally ranked targets (least squares on the ranked target is now
  `forecast.lgbm`'s expected-return booster), ranked inputs, both;
- the features the issue names that the panel lacks, computed here: 12-1 month momentum,
  beta and residual volatility against the index, the largest daily return of the month,
  and sector-relative versions; then liquidity (the 63-day dollar volume and Amihud's
  illiquidity, from traded values the importer keeps free of later dividends) and the
  same-calendar-month return of the past five years (Heston and Sadka);
- ridge regression on ranked inputs (a linear model is harder to overfit);
- smaller and larger LightGBM settings.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.linear_model import Ridge

from synthpm.columns import target_col
from synthpm.data.store import Store
from synthpm.features import FeatureConfig, PanelInputs, features_cached
from synthpm.features.market import benchmark_close
from synthpm.forecast.lgbm import BASE_PARAMS
from synthpm.forecast.quality import daily_rank_ic
from synthpm.forecast.targets import return_targets

LIQUIDITY = ("log_dollar_volume_63", "amihud_21")
PURGE = 65  # trading days: the longest target (3m) plus the next-bar entry


def extra_features(inputs: PanelInputs, index: pd.MultiIndex) -> pd.DataFrame:
    """Momentum 12-1, beta and residual volatility to the index, max daily return (trailing)."""
    closes = inputs.closes()
    bench, _ = benchmark_close(inputs.market, closes)
    r, m = closes.pct_change(fill_method=None), bench.pct_change()
    mean_r, mean_m = r.rolling(252, min_periods=126).mean(), m.rolling(252, min_periods=126).mean()
    cov = r.mul(m, axis=0).rolling(252, min_periods=126).mean() - mean_r.mul(mean_m, axis=0)
    beta = cov.div((m * m).rolling(252, min_periods=126).mean() - mean_m**2, axis=0)
    residual = (
        r.rolling(63, min_periods=40).var()
        - beta**2 * m.rolling(63, min_periods=40).var().to_numpy()[:, None]
    )
    # Traded value: the importer keeps close x volume free of later dividends.
    value = closes * inputs.prices.pivot(index="date", columns="ticker", values="volume")
    value = value.where(value > 0)
    # Same-calendar-month returns of past years (Heston and Sadka): the coming 21 sessions'
    # window one to five years back, all of it known by t.
    ahead = closes.shift(-21) / closes - 1
    illiquidity = (r.abs() / value).rolling(21, min_periods=15).mean() * 1e9  # Amihud
    seasonal = pd.concat([ahead.shift(252 * k) for k in range(1, 6)]).groupby(level=0).mean()
    wide = {
        "mom_12_1": closes.shift(21) / closes.shift(252) - 1,
        "beta_252": beta,
        "resid_vol_63": np.sqrt(residual.clip(lower=0) * 252),
        "max_ret_21": r.rolling(21, min_periods=15).max(),
        "log_dollar_volume_63": np.log(value.rolling(63, min_periods=40).mean()),
        "amihud_21": np.log(illiquidity.where(illiquidity > 0)),
        "seasonal_1_5y": seasonal.reindex(closes.index),
    }
    rows = closes.index.get_indexer(index.get_level_values("date"))
    cols = closes.columns.get_indexer(index.get_level_values("ticker"))
    return pd.DataFrame({k: v.to_numpy()[rows, cols] for k, v in wide.items()}, index=index)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/decision_quality/pit_2005_2022"))
    parser.add_argument("--years", default="2010-2018")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    if not (args.work / "store.duckdb").exists():
        print(f"skipped: {args.work / 'store.duckdb'} not found: run")
        print("benchmarks/decision_quality.py first (it needs ../shared/data)")
        return 0
    first, last = (int(y) for y in args.years.split("-"))
    years = list(range(first, last + 1))
    if last >= 2019:
        raise SystemExit("2019-2022 are decision_quality's test years: choose on earlier ones")
    started = time.perf_counter()
    inputs = PanelInputs.from_store(Store(args.work / "store.duckdb"))
    panel = features_cached(inputs, FeatureConfig(), args.work / ".cache")
    dates = panel.index.get_level_values("date")
    y = return_targets(inputs, panel.index, {"1m": 21})[target_col("excess", "1m")].to_numpy()
    ranked_y = pd.Series(y).groupby(dates).rank(pct=True).to_numpy() - 0.5
    extra = extra_features(inputs, panel.index)
    # liquidity and seasonality, scored apart so the earlier study's rows keep their meaning
    added = extra[[*LIQUIDITY, "seasonal_1_5y"]]
    extra = extra.drop(columns=added.columns)
    sector = inputs.sectors.reindex(panel.index.get_level_values("ticker")).fillna("Unknown")
    for name in ("vol_21d", "ret_5d", "mom_12_1", "resid_vol_63", "beta_252"):
        col = extra[name] if name in extra else panel[name]
        extra[f"sector_rel_{name}"] = col - col.groupby([dates, sector.to_numpy()]).transform(
            "median"
        )
    market = [c for c in panel.columns if c.startswith(("idx_", "vix"))]
    stock = [c for c in panel.columns if c not in market]
    ranked = panel[stock].groupby(level="date").rank(pct=True) - 0.5
    ranked_all = pd.concat([ranked, extra.groupby(level="date").rank(pct=True) - 0.5], axis=1)
    with_extra = pd.concat([panel, extra], axis=1)
    print(f"panel {panel.shape}, ready in {time.perf_counter() - started:.0f}s", flush=True)

    calendar = pd.DatetimeIndex(dates.unique()).sort_values()
    thinned = calendar.get_indexer(dates) % 5 == 0
    labelled = ~np.isnan(y)
    folds = []
    for year in years:
        start = calendar[calendar >= pd.Timestamp(f"{year}-01-01")][0]
        train_end = calendar[calendar.get_loc(start) - PURGE]
        train = np.flatnonzero((dates <= train_end) & thinned & labelled)
        test = np.flatnonzero((dates.year == year) & labelled)
        folds.append((year, train, test))

    def ic_by_year(predict) -> dict[int, float]:
        return {
            year: daily_rank_ic(dates[test].to_numpy(), predict(train, test), y[test]).mean
            for year, train, test in folds
        }

    def boosted(x: pd.DataFrame, target: np.ndarray, objective: str, rounds: int, **params):
        def predict(train, test):
            p = {**BASE_PARAMS, **params, "objective": objective, "seed": 0}
            if objective == "huber":
                p["alpha"] = 1.5 * float(np.std(target[train]))
            data = lgb.Dataset(x.iloc[train].to_numpy(np.float32), label=target[train])
            return lgb.train(p, data, rounds).predict(x.iloc[test].to_numpy(np.float32))

        return predict

    def ridge(x: pd.DataFrame, target: np.ndarray, alpha: float = 1000.0):
        def predict(train, test):
            fit = Ridge(alpha=alpha).fit(x.iloc[train].fillna(0).to_numpy(), target[train])
            return fit.predict(x.iloc[test].fillna(0).to_numpy())

        return predict

    results: dict[str, dict] = {}
    singles = ("ret_21d", "ret_5d", "vol_21d", "dist_52w_high", "sector_rel_21d", "rsi_14")
    for name in (*singles, "mom_12_1", "beta_252", "resid_vol_63", "max_ret_21", *added):
        values = next(frame for frame in (panel, extra, added) if name in frame)[name].to_numpy()
        results[f"single: {name}"] = ic_by_year(lambda train, test, v=values: v[test])
    models = {
        "lgbm huber, raw features, 100 rounds (the earlier default)": boosted(
            panel, y, "huber", 100
        ),
        "lgbm huber, 50 rounds": boosted(panel, y, "huber", 50),
        "lgbm huber, 7 leaves, min leaf 5000, 60 rounds": boosted(
            panel, y, "huber", 60, num_leaves=7, min_data_in_leaf=5000
        ),
        "lgbm l2 on ranked target (the default)": boosted(panel, ranked_y, "regression", 100),
        "lgbm l2, ranked inputs and target": boosted(
            pd.concat([ranked, panel[market]], axis=1), ranked_y, "regression", 100
        ),
        "lgbm huber, raw + the extra features": boosted(with_extra, y, "huber", 100),
        "lgbm l2, ranked inputs + extra, ranked target": boosted(
            pd.concat([ranked_all, panel[market]], axis=1), ranked_y, "regression", 100
        ),
        "lgbm huber, raw + liquidity (dollar volume, Amihud)": boosted(
            pd.concat([panel, added[list(LIQUIDITY)]], axis=1), y, "huber", 100
        ),
        "lgbm huber, raw + seasonal": boosted(
            pd.concat([panel, added[["seasonal_1_5y"]]], axis=1), y, "huber", 100
        ),
        "ridge, ranked inputs, ranked target": ridge(ranked, ranked_y),
        "ridge, ranked inputs + extra, ranked target": ridge(ranked_all, ranked_y),
    }
    for name, predict in models.items():
        tick = time.perf_counter()
        results[name] = ic_by_year(predict)
        print(f"   {name}: {time.perf_counter() - tick:.0f}s", flush=True)
    table = pd.DataFrame(results).T
    table.insert(0, "mean", table.mean(axis=1))
    with pd.option_context("display.width", 250, "display.float_format", "{:+.4f}".format):
        print(f"\n1-month per-date rank IC on validation years {args.years}:")
        print(table)
    document = {
        "years": years,
        "metric": "mean over dates of the Spearman IC of score vs 1m excess return",
        "ic": {name: {"mean": row["mean"], **row.drop("mean").to_dict()} for name, row in
               table.iterrows()},
        "seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / "forecaster_variants.json"
    target.write_text(json.dumps(document, indent=1, default=float) + "\n")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
