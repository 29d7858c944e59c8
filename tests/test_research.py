"""Research tools on small synthetic data: correlation scan, feature IC, ablation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthpm.columns import ic_col, ic_ir_col, target_col
from synthpm.data.errors import ConfigError
from synthpm.forecast.quality import daily_rank_ic
from synthpm.research import ablation, feature_label_correlation, least_correlated

# --- scan -----------------------------------------------------------------------------------


def make_closes(days: int = 400, seed: int = 0) -> pd.DataFrame:
    """Wide closes: A1..A3 share one factor, B1..B2 another, IND moves alone, and LATE has
    only its last 20 days (too little overlap to correlate)."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2019-01-01", periods=days)
    fa, fb = rng.normal(0, 0.01, days), rng.normal(0, 0.01, days)
    returns = {
        **{f"A{i}": fa + rng.normal(0, 0.003, days) for i in (1, 2, 3)},
        **{f"B{i}": fb + rng.normal(0, 0.003, days) for i in (1, 2)},
        "IND": rng.normal(0, 0.01, days),
        "LATE": rng.normal(0, 0.01, days),
    }
    closes = pd.DataFrame({k: 100 * np.exp(np.cumsum(v)) for k, v in returns.items()}, index=dates)
    closes.iloc[:-20, closes.columns.get_loc("LATE")] = np.nan
    return closes


def test_scan_picks_independent_before_correlated_twin():
    out = least_correlated(make_closes(), "A1", n=10)
    order = list(out["ticker"])
    assert list(out.columns) == ["step", "ticker", "mean_abs_corr", "max_abs_corr"]
    assert order[0] == "A1" and list(out["step"]) == list(range(len(out)))
    assert np.isnan(out.loc[0, "mean_abs_corr"])
    # The first three: the start, one B and IND; every twin of a picked group comes later.
    assert set(order[:3]) - {"A1"} in ({"B1", "IND"}, {"B2", "IND"})
    assert order.index("IND") < min(order.index(t) for t in ("A2", "A3"))
    assert "LATE" not in order  # 19 returns < min_overlap
    assert len(out) == 6  # fewer candidates than asked: what exists
    twins = out[out["ticker"].isin(["A2", "A3"])]
    assert (twins["max_abs_corr"] > 0.8).all()
    assert (out["max_abs_corr"].iloc[1:] >= out["mean_abs_corr"].iloc[1:]).all()


def test_scan_is_point_in_time():
    closes = make_closes()
    as_of = closes.index[300]
    before = least_correlated(closes, "A1", n=5, as_of=as_of, window=200)
    future = closes.copy()
    rng = np.random.default_rng(1)
    future.iloc[301:] *= rng.lognormal(0, 0.2, future.iloc[301:].shape)
    future.loc[future.index[301:], "IND"] = future["A1"].iloc[301:]  # a future twin of A1
    after = least_correlated(future, "A1", n=5, as_of=str(as_of.date()), window=200)
    pd.testing.assert_frame_equal(before, after)
    assert before.attrs["as_of"] == as_of and before.attrs["window_days"] == 200
    assert before.attrs["window_start"] == closes.index[101]


def test_scan_errors():
    closes = make_closes()
    with pytest.raises(ConfigError, match=r"unknown start ticker 'A11'.*did you mean 'A1'"):
        least_correlated(closes, "A11")
    with pytest.raises(ConfigError, match="n must be at least 1"):
        least_correlated(closes, "A1", n=0)
    with pytest.raises(ConfigError, match="start ticker 'LATE' has 0 daily returns"):
        least_correlated(closes, "LATE", as_of=closes.index[200])
    assert list(least_correlated(closes, "A1", n=1)["ticker"]) == ["A1"]


# --- correlate and ablate: a panel where one feature predicts excess_1m ----------------------

FEATURE_NAMES = ["ret_21d", "rsi_14", "vol_21d", "dist_sma_20"]  # families differ
PLANTED = "ret_21d"


def make_panel(tickers: int = 40, days: int = 300, seed: int = 0):
    """`ret_21d` drives excess_1m (signal 0.05 against noise 0.05); the rest is noise. Some
    holes in the features and the last 21 days of labels missing, as in real targets."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=days)
    index = pd.MultiIndex.from_product(
        [dates, [f"T{i:02d}" for i in range(tickers)]], names=["date", "ticker"]
    )
    n = len(index)
    x = rng.normal(size=(n, len(FEATURE_NAMES)))
    x[rng.random(n) < 0.05, 1] = np.nan
    x[index.get_level_values("date") < dates[10], 3] = np.nan  # a warm-up
    panel = pd.DataFrame(x, index=index, columns=FEATURE_NAMES).astype(np.float32)
    excess = 0.05 * x[:, 0] + rng.normal(0, 0.05, n)
    future = index.get_level_values("date") > dates[-22]
    excess[future] = np.nan
    targets = pd.DataFrame(
        {
            "excess_1m": excess,
            "vol_1m": np.where(future, np.nan, np.abs(rng.normal(0.2, 0.05, n))),
            "mdd_1m": np.where(future, np.nan, -np.abs(rng.normal(0.05, 0.02, n))),
            "excess_1w": rng.normal(0, 0.03, n),
        },
        index=index,
    )
    return panel, targets


def test_correlate_ranks_planted_feature_first():
    panel, targets = make_panel()
    out = feature_label_correlation(panel, targets)
    assert list(out.columns) == ["ic_1w", "ic_1m", "ic_ir_1w", "ic_ir_1m"]  # shortest first
    assert out.index[0] == PLANTED and out.index.name == "feature"
    assert out.loc[PLANTED, "ic_1m"] > 0.5 and out.loc[PLANTED, "ic_ir_1m"] > 3
    assert (out["ic_1m"].iloc[1:].abs() < 0.05).all()
    only = feature_label_correlation(panel, targets, horizons=["1m"], sample_every=3)
    assert list(only.columns) == ["ic_1m", "ic_ir_1m"] and only.index[0] == PLANTED
    with pytest.raises(ConfigError, match="no excess_3n column.*did you mean '3m'|excess_3n"):
        feature_label_correlation(panel, targets, horizons=["3n"])


def test_correlate_equals_daily_rank_ic():
    """The vectorised IC is `daily_rank_ic` per feature, with holes, ties and ragged dates."""
    panel, targets = make_panel(tickers=15, days=60, seed=3)
    panel["rsi_14"] = panel["rsi_14"].round(0)  # ties
    keep = np.random.default_rng(4).random(len(panel)) > 0.15  # ragged cross-sections
    panel, targets = panel[keep], targets[keep]
    targets.loc[targets.index[::7], "excess_1w"] = np.nan
    out = feature_label_correlation(panel, targets, sample_every=2)
    dates = panel.index.get_level_values("date").to_numpy()
    sampled = np.isin(dates, np.unique(dates)[::2])
    for feature in panel.columns:
        for h in ("1w", "1m"):
            want = daily_rank_ic(
                dates[sampled],
                panel[feature].to_numpy()[sampled],
                targets[target_col("excess", h)].to_numpy()[sampled],
            )
            got = (out.loc[feature, ic_col(h)], out.loc[feature, ic_ir_col(h)])
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_ablation_finds_planted_feature():
    panel, targets = make_panel()
    seen = []

    def progress(items, total):
        seen.append(total)
        return items

    common = {"test_days": 60, "train_stride": 2, "rounds": 30, "progress": progress}
    common["model_params"] = {"num_threads": 1}  # tiny fits: a second thread only contends
    out = ablation(panel, targets, by="feature", **common)
    assert list(out.columns) == [
        "dropped",
        "features_dropped",
        "loss",
        "macro_f1",
        "rank_ic",
        "d_loss",
        "d_f1",
        "d_ic",
    ]
    assert out.loc[0, "dropped"] == "(none)" and out.loc[0, "d_ic"] == 0
    assert out.loc[0, "rank_ic"] > 0.4
    assert out.loc[1, "dropped"] == PLANTED and out.loc[1, "d_ic"] < -0.3
    assert out.loc[1, "d_loss"] > 0 and out.loc[1, "d_f1"] < 0
    assert list(out["d_ic"].iloc[1:]) == sorted(out["d_ic"].iloc[1:])
    assert seen == [5]
    # The split: last 60 labelled days tested, training ends purge + 1 days before.
    calendar = panel.index.get_level_values("date").unique()
    assert out.attrs["test_start"] == calendar[-21 - 60]
    assert out.attrs["train_end"] == calendar[-21 - 60 - 21 - 1]

    fams = ablation(panel, targets, by="family", **common)
    assert fams.loc[1, "dropped"] == "returns" and fams.loc[1, "features_dropped"] == PLANTED
    assert set(fams["dropped"]) == {"(none)", "returns", "momentum", "volatility", "trend"}


def test_ablation_errors():
    panel, targets = make_panel(tickers=5, days=80)
    with pytest.raises(ConfigError, match="by must be one of family, feature"):
        ablation(panel, targets, by="famliy")
    with pytest.raises(ConfigError, match="unknown horizon '2m'"):
        ablation(panel, targets, horizon="2m")
    with pytest.raises(ConfigError, match="targets lack vol_1w, mdd_1w"):
        ablation(panel, targets, horizon="1w")
    with pytest.raises(ConfigError, match="purge=5 is shorter"):
        ablation(panel, targets, purge=5)
    with pytest.raises(ConfigError, match="after the panel's last date"):
        ablation(panel, targets, test_start="2030-01-01")
