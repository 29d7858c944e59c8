"""Walk-forward forecasts: folds and purge, output schema, point in time, errors, quality."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from synthpm.columns import (
    event_col,
    event_prob_col,
    event_prob_group,
    forecast_col,
    ic_col,
    insider_col,
    prediction_col,
    proba_cols,
    target_col,
    target_horizons,
)
from synthpm.data.errors import ConfigError
from synthpm.features import build_features
from synthpm.forecast import CLASSES, HORIZONS, ForecastConfig, walk_forward
from synthpm.forecast.lgbm import LightGBMForecaster, class_probabilities
from synthpm.forecast.quality import daily_rank_ic
from synthpm.forecast.targets import lookahead, return_targets
from synthpm.forecast.walkforward import make_folds, with_classes
from tests.conftest import synthetic_inputs

SMALL = {"rounds": 15, "min_data_in_leaf": 20, "num_leaves": 7}
CONFIG = ForecastConfig(refit_months=6, min_train_days=150, train_stride=2, model_params=SMALL)


def run(inputs, config=CONFIG):
    return walk_forward(build_features(inputs), inputs, config, log=lambda _: None)


def test_folds_are_purged_and_cover_the_rest_of_the_calendar():
    calendar = pd.bdate_range("2010-01-01", periods=900)
    folds = make_folds(calendar, CONFIG)
    purge = lookahead(HORIZONS)
    assert purge == 63
    for fold in folds:
        assert fold.test_start.month in (1, 7) and fold.test_start.day <= 4
        gap = calendar.get_loc(fold.test_start) - calendar.get_loc(fold.train_end)
        assert gap == purge + 1  # the last training label ends the day before the test
    assert calendar.get_loc(folds[0].train_end) >= CONFIG.min_train_days - 1
    covered = sum(((calendar >= f.test_start) & (calendar <= f.test_end)).sum() for f in folds)
    assert covered == (calendar >= folds[0].test_start).sum()


def test_targets_read_exactly_the_stated_future():
    inputs = synthetic_inputs(tickers=2, days=120)
    panel_index = pd.MultiIndex.from_frame(inputs.prices[["date", "ticker"]]).sort_values()
    targets = return_targets(inputs, panel_index, {"1w": 5})
    c = inputs.closes()["T0"]
    b = inputs.market.set_index("date")["index_close"]
    t = c.index[50]
    row = targets.loc[(t, "T0")]
    expected = c.iloc[55] / c.iloc[50] - b.iloc[55] / b.iloc[50]
    assert row["excess_1w"] == pytest.approx(expected, abs=1e-12)
    path = c.iloc[50:56]
    assert row["mdd_1w"] == pytest.approx((path / path.cummax() - 1).min())
    log_ret = np.log(c / c.shift()).iloc[51:56]
    assert row["vol_1w"] == pytest.approx(log_ret.std() * np.sqrt(252))
    assert np.isnan(targets.loc[(c.index[-3], "T0"), "excess_1w"])  # the future is missing


def test_column_names_are_the_ones_saved_frames_and_models_use():
    """Renaming a column breaks saved forecasts, contexts and models: the names are pinned."""
    assert forecast_col("return_class", "1m") == "return_class_1m"
    assert target_col("excess", "1w") == "excess_1w"
    assert target_horizons("excess", ["vol_1d", "excess_1d", "excess_3m"]) == ["1d", "3m"]
    assert proba_cols("1d", 2) == ["proba_1d_0", "proba_1d_1"]
    assert event_prob_col("results") == "event_prob_results"
    assert event_prob_group("event_prob_debt") == "debt" and event_prob_group("fold") is None
    assert (event_col(1, "type"), insider_col(2, "value")) == ("ev1_type", "ins2_value")
    assert ic_col("1m") == "ic_1m"


def test_forecast_schema_and_best_horizon():
    result = run(synthetic_inputs(tickers=5, days=500))
    f = result.forecasts
    for h in HORIZONS:
        assert set(f[forecast_col("return_class", h)].cat.categories) == set(CLASSES)
        assert f[forecast_col("confidence", h)].between(0.2, 1).all()
        assert (f[forecast_col("volatility", h)] >= 0).all()
        assert (f[forecast_col("max_drawdown", h)] <= 0).all()
    sharpe = f[[forecast_col("sharpe", h) for h in HORIZONS]].to_numpy()
    best = np.array(list(HORIZONS))[sharpe.argmax(axis=1)]
    assert (f["best_horizon"].astype(str).to_numpy() == best).all()
    first_test = pd.Timestamp(result.folds[0]["test_start"])
    assert f.index.get_level_values("date").min() == first_test
    assert set(result.quality["horizons"]) == set(HORIZONS)


def test_event_probabilities_where_filings_exist():
    result = run(synthetic_inputs(tickers=4, days=600, events=True))
    f = result.forecasts
    assert "event_prob_results" in f
    covered = f.xs("T0", level="ticker")["event_prob_results"]
    assert covered.notna().all() and covered.between(0, 1).all()
    assert f.xs("T3", level="ticker")["event_prob_results"].isna().all()  # no filings


def test_forecasts_up_to_t_ignore_the_future_across_a_refit():
    """Change prices, the index and filings after T; forecasts for dates <= T are unchanged.

    T lies just after a refit boundary, so two fitted models are checked: the one before the
    boundary and the one refitted at it."""
    inputs = synthetic_inputs(tickers=5, days=560, events=True)
    base = run(inputs)
    refit = pd.Timestamp(base.folds[1]["test_start"])
    cut = inputs.closes().index[inputs.closes().index.get_loc(refit) + 10]
    changed = synthetic_inputs(tickers=5, days=560, events=True)
    later = changed.prices["date"] > cut
    rng = np.random.default_rng(7)
    changed.prices.loc[later, ["open", "high", "low", "close"]] *= rng.uniform(
        0.5, 1.5, (later.sum(), 1)
    )
    changed.market.loc[changed.market["date"] > cut, "index_close"] *= 0.6
    changed.events = pd.concat(
        [
            changed.events[changed.events["date_known"] <= cut],
            pd.DataFrame(
                {
                    "ticker": ["T2"],
                    "date_known": [cut + pd.Timedelta(days=3)],
                    "event_type": ["bankruptcy"],
                }
            ),
        ]
    )
    after = run(changed)
    past = base.forecasts.index.get_level_values("date") <= cut
    assert past.sum() > 0 and base.forecasts.loc[:cut]["fold"].nunique() == 2
    pd.testing.assert_frame_equal(base.forecasts[past], after.forecasts[past], check_exact=True)
    assert not base.forecasts[~past].equals(after.forecasts[~past])


def test_seeded_runs_are_reproducible(tmp_path):
    inputs = synthetic_inputs(tickers=4, days=450)
    a, b = run(inputs), run(inputs)
    pd.testing.assert_frame_equal(a.forecasts, b.forecasts, check_exact=True)
    out = a.save(tmp_path / "run")
    assert json.loads((out / "quality.json").read_text())["horizons"]["1m"]["rows"] > 0
    saved = pd.read_parquet(out / "forecasts.parquet")
    pd.testing.assert_frame_equal(saved, a.forecasts, check_categorical=False)
    fold_dir = out / "models" / a.folds[-1]["test_start"]
    model = LightGBMForecaster.load(fold_dir / "returns")
    panel = build_features(inputs)
    rows = np.arange(len(panel) - 8, len(panel))
    pd.testing.assert_frame_equal(
        model.predict(panel, rows), a.models[-1].returns.predict(panel, rows), check_exact=True
    )


def test_the_expected_return_ranks_by_each_dates_order_not_by_the_size_of_returns():
    """The `ret` booster learns each date's percentiles: stretching and shifting one date's
    excess returns (their order kept) leaves its scores as they were; a line with a positive
    slope turns them into returns, so the expected return ranks as the scores do."""
    inputs = synthetic_inputs(tickers=6, days=300)
    panel = build_features(inputs)
    targets = return_targets(inputs, panel.index)
    rows = np.flatnonzero(targets.notna().all(axis=1).to_numpy())
    stretched = targets.copy()
    column = target_col("excess", "1m")
    odd = np.asarray(stretched.index.get_level_values("date").day % 2 == 1)
    stretched.loc[odd, column] = stretched.loc[odd, column] * 7 + 0.03

    def fitted(frame):
        fold = with_classes(frame.iloc[rows], ForecastConfig()).targets
        return LightGBMForecaster(("1m",), **SMALL).fit(panel, rows, fold)

    a, b = fitted(targets), fitted(stretched)
    x = panel.iloc[rows].to_numpy(np.float32)
    score = a.boosters["ret_1m"].predict(x)
    np.testing.assert_array_equal(score, b.boosters["ret_1m"].predict(x))
    intercept, slope = a.ret_lines["1m"]
    assert slope > 0 and a.ret_lines["1m"] != b.ret_lines["1m"]
    expected = a.predict(panel, rows)[prediction_col("ret", "1m")].to_numpy()
    np.testing.assert_allclose(expected, intercept + slope * score)
    # in return units: the line is the least-squares fit of the excess return on the score
    assert abs(expected.mean() - targets[column].iloc[rows].mean()) < 1e-9


def test_class_probabilities_are_a_distribution_over_the_edges():
    edges = [-0.02, -0.005, 0.005, 0.02]
    p = class_probabilities(np.array([0.0, 0.05, -0.05]), np.array([0.01, 0.01, 0.01]), edges)
    assert np.allclose(p.sum(axis=1), 1)
    assert p[0].argmax() == 2 and p[1].argmax() == 4 and p[2].argmax() == 0


def test_daily_rank_ic_matches_scipy_per_date():
    rng = np.random.default_rng(0)
    dates = np.repeat(pd.bdate_range("2020-01-01", periods=30), 12)
    pred = rng.normal(size=len(dates))
    real = pred * 0.3 + rng.normal(size=len(dates))
    per_date = [spearmanr(pred[dates == d], real[dates == d]).statistic for d in np.unique(dates)]
    ic, ir = daily_rank_ic(dates, pred, real)
    assert ic == pytest.approx(np.mean(per_date))
    assert ir == pytest.approx(np.mean(per_date) / np.std(per_date, ddof=1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"purge": 10}, "purge=10 is shorter than the targets' lookahead"),
        ({"horizons": {"1y": 0}}, "whole trading days"),
        ({"refit_months": 5}, "refit_months must divide 12"),
        ({"horizons": {}}, "horizons: none given"),
    ],
)
def test_bad_forecast_config_is_named(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ForecastConfig(**kwargs)


def test_horizon_longer_than_the_data_is_an_error():
    inputs = synthetic_inputs(tickers=2, days=200)
    config = ForecastConfig(horizons={"1y": 252})
    with pytest.raises(ConfigError, match=r"too short for horizon 1y \(252 days\)"):
        run(inputs, config)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mlp", "lstm"])
def test_torch_models_run_through_the_walk_forward(model):
    pytest.importorskip("torch")
    config = CONFIG.model_copy(
        update={"model": model, "model_params": {"epochs": 2, "hidden": 8, "num_threads": 1}}
    )
    result = run(synthetic_inputs(tickers=4, days=450), config)
    f = result.forecasts
    assert f["confidence_1m"].between(0.2, 1).all()
    assert f["expected_return_1m"].notna().all()  # the net's own `ret_h`, not class means
    assert result.quality["horizons"]["1m"]["rows"] > 0
