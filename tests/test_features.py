"""The feature panel: shape, definitions, point in time, cache, configuration errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthpm.data.errors import ConfigError
from synthpm.features import FEATURES, FeatureConfig, PanelInputs, build_features, features_cached
from synthpm.features.filings import RECENCY_CAP
from tests.conftest import synthetic_inputs


def test_panel_is_indexed_by_date_then_ticker_with_every_feature():
    inputs = synthetic_inputs(tickers=4, days=300)
    panel = build_features(inputs)
    assert panel.index.names == ["date", "ticker"]
    assert panel.index.is_monotonic_increasing
    assert len(panel) == len(inputs.prices)
    # the text family only where there are text factors (tests/test_text.py)
    assert list(panel.columns) == [f for f, family in FEATURES.items() if family != "text"]
    assert (panel.dtypes == np.float32).all()
    assert not np.isinf(panel.to_numpy()).any()


def test_price_features_match_their_definitions():
    inputs = synthetic_inputs(tickers=2, days=300)
    panel = build_features(inputs)
    closes = inputs.closes()
    t = closes.index[200]
    row = panel.loc[(t, "T0")]
    c = closes["T0"]
    assert row["ret_21d"] == pytest.approx(c.iloc[200] / c.iloc[179] - 1, rel=1e-5)
    assert row["dist_sma_50"] == pytest.approx(c.iloc[200] / c.iloc[151:201].mean() - 1, rel=1e-4)
    assert np.isnan(row["dist_52w_high"])  # needs 252 days of history
    late = panel.loc[(closes.index[280], "T0")]
    assert late["dist_52w_high"] == pytest.approx(c.iloc[280] / c.iloc[29:281].max() - 1, abs=1e-6)
    log_ret = np.log(c / c.shift()).iloc[180:201]
    assert row["vol_21d"] == pytest.approx(log_ret.std(ddof=0) * np.sqrt(252), rel=1e-4)


def test_filing_features_count_only_what_is_known_by_each_date():
    inputs = synthetic_inputs(tickers=2, days=200)
    dates = inputs.closes().index
    known = dates[100]
    inputs.events = pd.DataFrame(
        {
            "ticker": ["T0", "T0"],
            "date_known": [known, known + pd.Timedelta(days=120)],
            "event_type": ["results", "restatement"],
        }
    )
    inputs.insider = pd.DataFrame(
        {"ticker": ["T1"], "date_known": [known], "code": ["P"], "value": [250_000.0]}
    )
    panel = build_features(inputs)
    t0 = panel.xs("T0", level="ticker")
    assert t0.loc[dates[99], "ev_results_90d"] == 0
    assert t0.loc[dates[99], "ev_results_days"] == RECENCY_CAP
    assert t0.loc[dates[99], "ev_covered"] == 0
    assert t0.loc[known, "ev_results_90d"] == 1
    assert t0.loc[known, "ev_results_days"] == 0
    assert t0.loc[dates[110], "ev_results_days"] == (dates[110] - known).days
    assert t0.loc[dates[-1], "ev_results_90d"] == 0  # aged out of the 90-day window
    assert (t0["ev_adverse_90d"].loc[: known + pd.Timedelta(days=119)] == 0).all()
    t1 = panel.xs("T1", level="ticker")
    assert t1.loc[known, "ins_net_value_90d"] == 250_000
    assert t1.loc[dates[99], "ins_buys_90d"] == 0


def test_cross_section_and_market_features():
    inputs = synthetic_inputs(tickers=5, days=300)
    panel = build_features(inputs)
    day = panel.xs(inputs.closes().index[250], level="date")
    assert sorted(day["cs_rank_ret_21d"]) == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    # T1 and T3 are the two Tech names: against their sector median they sum to zero
    assert day.loc[["T1", "T3"], "sector_rel_21d"].sum() == pytest.approx(0, abs=1e-6)
    assert day["vix"].nunique() == 1
    assert (day["vix_is_proxy"] == 1).all()  # the synthetic VIX is labelled a proxy


def test_close_only_prices_leave_ohlcv_indicators_empty():
    inputs = synthetic_inputs(tickers=3, days=300)
    inputs.prices[["open", "high", "low", "volume"]] = np.nan
    panel = build_features(inputs)
    assert panel["adx_14"].isna().all()
    assert panel["rsi_14"].notna().sum() > 0


def test_one_close_only_bar_does_not_blank_later_indicators():
    inputs = synthetic_inputs(tickers=1, days=300)
    inputs.prices.loc[100, ["open", "high", "low", "volume"]] = np.nan
    panel = build_features(inputs)
    assert panel["adx_14"].iloc[150:].notna().all()


def test_features_up_to_t_ignore_the_future():
    inputs = synthetic_inputs(tickers=4, days=400, events=True)
    base = build_features(inputs)
    cut = inputs.closes().index[250]
    changed = synthetic_inputs(tickers=4, days=400, events=True)
    later = changed.prices["date"] > cut
    changed.prices.loc[later, ["open", "high", "low", "close"]] *= 1.7
    changed.prices.loc[later, "volume"] *= 3
    changed.events = changed.events[changed.events["date_known"] <= cut]
    changed.market.loc[changed.market["date"] > cut, ["index_close", "vix"]] *= 2
    after = build_features(changed)
    pd.testing.assert_frame_equal(base.loc[:cut], after.loc[:cut], check_exact=True)
    assert not base.loc[cut + pd.Timedelta(days=1) :].equals(
        after.loc[cut + pd.Timedelta(days=1) :]
    )


def test_cache_reuses_and_invalidates(tmp_path):
    inputs = synthetic_inputs(tickers=2, days=120)
    first = features_cached(inputs, cache_dir=tmp_path)
    files = list(tmp_path.glob("features-*.parquet"))
    assert len(files) == 1
    pd.testing.assert_frame_equal(first, features_cached(inputs, cache_dir=tmp_path))
    inputs.prices.loc[5, "close"] *= 1.01
    features_cached(inputs, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("features-*.parquet"))) == 2
    features_cached(inputs, FeatureConfig(features=("returns",)), cache_dir=tmp_path)
    assert len(list(tmp_path.glob("features-*.parquet"))) == 3


def test_config_selects_features_and_families():
    inputs = synthetic_inputs(tickers=2, days=120)
    panel = build_features(inputs, FeatureConfig(features=("market", "rsi_14")))
    assert "rsi_14" in panel and "vix" in panel and "ret_5d" not in panel


@pytest.mark.parametrize(
    ("features", "message"),
    [(("rsi_41",), "unknown feature 'rsi_41' .*did you mean 'rsi_14'"), ((), "empty")],
)
def test_bad_feature_config_is_named(features, message):
    with pytest.raises(ConfigError, match=message):
        FeatureConfig(features=features)


def test_empty_universe_is_an_error(priced_store):
    with pytest.raises(ConfigError, match="empty universe"):
        PanelInputs.from_store(priced_store, start="2031-01-01")


def test_tickers_with_a_few_bars_get_nan_not_an_error():
    inputs = synthetic_inputs(tickers=3, days=200)
    short = inputs.prices["ticker"].eq("T2") & (inputs.prices.groupby("ticker").cumcount() > 1)
    inputs.prices = inputs.prices[~short].reset_index(drop=True)  # T2 has two bars
    panel = build_features(inputs)
    t2 = panel.xs("T2", level="ticker")
    assert len(t2) == 2 and t2["rsi_14"].isna().all() and t2["ret_1d"].notna().iloc[1]


@pytest.mark.parametrize("days", [1, 30])
def test_a_calendar_shorter_than_the_windows_gives_nan_not_an_error(days):
    panel = build_features(synthetic_inputs(tickers=2, days=days))
    assert len(panel) == 2 * days
    assert panel["idx_ret_63d"].isna().all() and panel["dist_sma_200"].isna().all()
