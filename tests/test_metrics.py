"""synthpm.metrics against numbers worked out by hand (not against the module itself)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from synthpm.metrics import (
    CONVENTION,
    METRIC_NAMES,
    block_bootstrap_t,
    compute_metrics,
    rank_ic_by_date,
    returns_from_equity,
    sharpe_ci,
)

SQRT252 = math.sqrt(252)


def series(values, start: str = "2021-01-04") -> pd.Series:
    values = np.asarray(values, dtype=float)
    return pd.Series(values, index=pd.bdate_range(start, periods=len(values)))


def from_returns(r, start: str = "2021-01-04") -> pd.Series:
    return series(100 * np.cumprod(np.r_[1.0, 1 + np.asarray(r, dtype=float)]), start)


def test_returns_from_equity_drops_first_day():
    r = returns_from_equity(series([100, 110, 99]))
    assert r.tolist() == pytest.approx([0.1, -0.1])
    assert r.index[0] == pd.Timestamp("2021-01-05")


def test_small_series_by_hand():
    # returns +10%, -10%, +10%: mean 1/30; ddof=1 variance 0.04/3, so Sharpe = sqrt(21)
    # (ddof=0 would give sqrt(252/8) = 5.61); annual vol = sqrt(0.04/3 * 252) = sqrt(3.36).
    m = compute_metrics(series([100, 110, 99, 108.9]))
    assert m["days"] == 4
    assert m["start"] == "2021-01-04" and m["end"] == "2021-01-07"
    assert m["total_return"] == pytest.approx(0.089)
    assert m["sharpe"] == pytest.approx(math.sqrt(21))
    assert m["annual_volatility"] == pytest.approx(math.sqrt(3.36))
    # Sortino: mean*252 = 8.4 over sqrt(mean([0, 0.01, 0]) * 252) = sqrt(0.84): sqrt(84).
    assert m["sortino"] == pytest.approx(math.sqrt(84))
    assert m["max_drawdown"] == pytest.approx(-0.1)
    # CAGR over 3 returns = 3/252 of a year.
    assert m["cagr"] == pytest.approx(1.089**84 - 1)


def test_cagr_compounds_over_252_return_years():
    # 505 marks = 504 returns = exactly 2 years of 252; 100 -> 121 is 10% a year compounded
    # (not 10.5% simple, and not the 505/252 or calendar-day years).
    m = compute_metrics(series(100 * 1.21 ** (np.arange(505) / 504)))
    assert m["total_return"] == pytest.approx(0.21)
    assert m["cagr"] == pytest.approx(0.10)


def test_max_drawdown_crafted_path():
    m = compute_metrics(series([100, 120, 90, 130]))
    assert m["max_drawdown"] == pytest.approx(-0.25)


def test_calmar_one_year():
    # 253 marks = one 252-return year: 100 up to 120, down to 90, up to 110.
    path = np.r_[
        np.linspace(100, 120, 101), np.linspace(120, 90, 51)[1:], np.linspace(90, 110, 103)[1:]
    ]
    assert len(path) == 253
    m = compute_metrics(series(path))
    assert m["cagr"] == pytest.approx(0.10)
    assert m["max_drawdown"] == pytest.approx(-0.25)
    assert m["calmar"] == pytest.approx(0.4)


def test_benchmark_against_itself():
    rng = np.random.default_rng(3)
    e = from_returns(rng.normal(4e-4, 0.01, 300))
    m = compute_metrics(e, benchmark=e * 3.0)  # the level scale is irrelevant
    assert m["beta"] == pytest.approx(1.0)
    assert m["alpha"] == pytest.approx(0.0, abs=1e-12)
    # No active risk: the information ratio is undefined (None), the tracking error is 0.
    assert m["information_ratio"] is None
    assert m["tracking_error"] == 0.0
    assert m["benchmark_total_return"] == pytest.approx(m["total_return"])
    assert m["benchmark_sharpe"] == pytest.approx(m["sharpe"])


def test_alpha_is_compounded_and_beta_is_slope():
    # r = 2 b + 0.0001 exactly: beta 2, alpha (1.0001)^252 - 1 = 2.552% (not 2.52%).
    b = np.random.default_rng(4).normal(3e-4, 0.01, 400)
    m = compute_metrics(from_returns(2 * b + 1e-4), benchmark=from_returns(b))
    assert m["beta"] == pytest.approx(2.0)
    assert m["alpha"] == pytest.approx(1.0001**252 - 1, rel=1e-6)


def test_information_ratio_by_hand():
    # active returns 0.2%, 0, 0.2%, 0: mean 0.1%, std(ddof=1) = 0.002/sqrt(3);
    # IR = sqrt(0.75 * 252) = sqrt(189); TE = 0.002/sqrt(3) * sqrt(252).
    b = np.array([0.01, 0.0, -0.01, 0.02])
    m = compute_metrics(from_returns(b + np.array([0.002, 0, 0.002, 0])), benchmark=from_returns(b))
    assert m["information_ratio"] == pytest.approx(math.sqrt(189))
    assert m["tracking_error"] == pytest.approx(0.002 / math.sqrt(3) * SQRT252)
    assert m["benchmark_total_return"] == pytest.approx(1.01 * 0.99 * 1.02 - 1)


def test_benchmark_aligned_on_intersection():
    e = series(100 + np.arange(10.0) ** 1.5)
    bench = pd.concat([e.iloc[3:] * 2, series([1.0, 5.0, 2.0], "2021-02-01")])  # extra dates
    m = compute_metrics(e, benchmark=bench)
    assert m["benchmark_total_return"] == pytest.approx(e.iloc[-1] / e.iloc[3] - 1)
    assert m["beta"] == pytest.approx(1.0)
    assert m["total_return"] == pytest.approx(e.iloc[-1] / e.iloc[0] - 1)  # full equity


def test_trade_stats_flat_equity():
    nan = math.nan
    trades = pd.DataFrame(
        {
            "date": pd.to_datetime(["2021-01-04"] * 8),
            "ticker": ["AAA", "AAA", "BBB", "BBB", "CCC", "CCC", "DDD", "DDD"],
            "side": ["BUY", "SELL", "SHORT", "COVER", "BUY", "SELL", "BUY", "SELL"],
            "shares": [10, 10, 5, 5, 20, 20, 3, 3],
            "price": [100, 110, 100, 110, 100, 105, 100, 100],
            "value": [1000, 1100, 500, 550, 2000, 2100, 300, 300],
            "cost": [1.0, 1.1, 0.5, 0.55, 2.0, 2.1, 0.3, 0.3],
            "reason": ["signal"] * 8,
            "pnl": [nan, 100.0, nan, -50.0, nan, 200.0, nan, 0.0],
            "holding_days": [nan, 5, nan, 3, nan, 10, nan, 2],
        }
    )
    exposure = series([0.5, 1.0, 1.5])
    # 505 marks = two 252-return years of flat 10,000 equity.
    m = compute_metrics(series(np.full(505, 10_000.0)), trades=trades, exposure=exposure)
    assert m["win_rate"] == pytest.approx(2 / 4)  # the zero-pnl close is not a win
    assert m["profit_loss_ratio"] == pytest.approx(150 / 50)  # mean win 150, mean loss -50
    assert m["avg_holding_days"] == pytest.approx((5 + 3 + 10 + 2) / 4)
    assert m["trade_count"] == 8 and m["round_trips"] == 4
    assert m["turnover"] == pytest.approx(7850 / 10_000 / 2)
    assert m["costs"] == pytest.approx(7.85)
    assert m["exposure"] == pytest.approx(1.0)
    # Flat equity: zero volatility gives None, not inf/NaN noise; no drawdown, no Calmar.
    for k in ("sharpe", "sharpe_ci_low", "sharpe_ci_high", "sortino", "calmar"):
        assert m[k] is None, k
    assert m["max_drawdown"] == 0.0 and m["total_return"] == 0.0 and m["annual_volatility"] == 0.0


def test_absent_inputs_and_short_series():
    m = compute_metrics(series([100, 101, 102]))
    for k in ("alpha", "beta", "information_ratio", "win_rate", "turnover", "exposure", "costs"):
        assert m[k] is None, k
    one = compute_metrics(series([100.0]))
    assert one["start"] == one["end"] == "2021-01-04" and one["days"] == 1
    assert all(v is None for k, v in one.items() if k not in ("start", "end", "days"))
    assert compute_metrics(pd.Series([], dtype=float))["days"] == 0


def test_json_round_trip():
    rng = np.random.default_rng(5)
    e, b = from_returns(rng.normal(5e-4, 0.01, 200)), from_returns(rng.normal(0, 0.01, 200))
    m = compute_metrics(e, benchmark=b, exposure=series(np.full(201, 0.8)))
    assert list(m) == METRIC_NAMES
    assert all(type(v) in (float, int, str, type(None)) for v in m.values())
    assert json.loads(json.dumps(m, allow_nan=False)) == m
    flat = compute_metrics(series(np.full(10, 5.0)))
    json.dumps(flat, allow_nan=False)  # no NaN sneaks out of the degenerate case
    json.dumps(CONVENTION)
    assert CONVENTION["periods_per_year"] == 252 and CONVENTION["std_ddof"] == 1


def _iid(n: int, seed: int = 0) -> pd.Series:
    return pd.Series(np.random.default_rng(seed).normal(5e-4, 0.01, n))


def test_sharpe_ci_reproducible_and_seeded():
    r = _iid(500)
    assert sharpe_ci(r, seed=7) == sharpe_ci(r, seed=7)
    assert sharpe_ci(r, seed=7) != sharpe_ci(r, seed=8)


def test_sharpe_ci_contains_point_and_narrows():
    long = _iid(2520)
    point = long.mean() / long.std(ddof=1) * SQRT252
    lo, hi = sharpe_ci(long)
    assert lo < point < hi
    # Width shrinks like 1/sqrt(n): ten times the data, about a third of the width.
    # For a Sharpe near 0, the 95% width is about 2 * 1.96 * sqrt(252 / n).
    assert hi - lo == pytest.approx(2 * 1.96 * math.sqrt(252 / 2520), rel=0.1)
    slo, shi = sharpe_ci(long.iloc[:252])
    assert hi - lo < 0.5 * (shi - slo)


def test_sharpe_ci_blocks_keep_autocorrelation():
    # AR(1) returns with phi = 0.5: the mean's variance is (1+phi)/(1-phi) = 3 times the
    # i.i.d. one, so 21-day blocks should give a much wider interval than block=1.
    rng = np.random.default_rng(9)
    eps, r = rng.normal(0, 0.01, 2520), np.zeros(2520)
    for i in range(1, 2520):
        r[i] = 0.5 * r[i - 1] + eps[i]
    lo1, hi1 = sharpe_ci(pd.Series(r), block=1)
    lo21, hi21 = sharpe_ci(pd.Series(r), block=21)
    assert (hi21 - lo21) > 1.4 * (hi1 - lo1)


def test_sharpe_ci_degenerate():
    assert all(math.isnan(x) for x in sharpe_ci(pd.Series([0.01])))
    assert all(math.isnan(x) for x in sharpe_ci(pd.Series(np.zeros(50))))


def test_rank_ic_by_date_equals_scipy_per_date():
    nan = math.nan
    frame = pd.DataFrame(
        [
            # 2021-01-04: six names, a tie in score and a NaN outcome (5 finite pairs remain)
            ("2021-01-04", 1.0, 0.3),
            ("2021-01-04", 2.0, 0.1),
            ("2021-01-04", 2.0, -0.2),
            ("2021-01-04", 4.0, 0.5),
            ("2021-01-04", 5.0, 0.4),
            ("2021-01-04", 6.0, nan),
            # 2021-01-05: too few names (4)
            ("2021-01-05", 1.0, 0.1),
            ("2021-01-05", 2.0, 0.2),
            ("2021-01-05", 3.0, 0.3),
            ("2021-01-05", 4.0, 0.4),
            # 2021-01-06: constant score, nothing to rank
            *[("2021-01-06", 1.0, x) for x in (0.1, 0.2, 0.3, 0.4, 0.5)],
            # 2021-01-07: five names, perfectly reversed
            *[("2021-01-07", s, -s) for s in (1.0, 2.0, 3.0, 4.0, 5.0)],
        ],
        columns=["date", "score", "outcome"],
    ).sample(frac=1.0, random_state=1)  # the order of rows must not matter
    ic = rank_ic_by_date(frame["date"], frame["score"], frame["outcome"])
    assert list(ic.index) == [pd.Timestamp("2021-01-04"), pd.Timestamp("2021-01-07")]
    day = frame[(frame["date"] == "2021-01-04") & frame["outcome"].notna()]
    assert ic.iloc[0] == pytest.approx(spearmanr(day["score"], day["outcome"]).statistic)
    assert ic.iloc[1] == pytest.approx(-1.0)
    four = rank_ic_by_date(frame["date"], frame["score"], frame["outcome"], min_names=4)
    assert pd.Timestamp("2021-01-05") in four.index and four.loc["2021-01-05"] == pytest.approx(1)
    assert rank_ic_by_date([], [], []).empty


def _monthly(values_per_day, months: int = 60, per_month: int = 4, seed: int = 0) -> pd.Series:
    """`per_month` dates in each of `months` months, values from `values_per_day(rng, n)`."""
    rng = np.random.default_rng(seed)
    starts = pd.date_range("2010-01-01", periods=months, freq="MS")
    dates = [s + pd.Timedelta(days=7 * k) for s in starts for k in range(per_month)]
    return pd.Series(values_per_day(rng, len(dates)), index=pd.DatetimeIndex(dates))


def test_block_bootstrap_t_tells_signal_from_noise():
    noise = block_bootstrap_t(_monthly(lambda rng, n: rng.normal(0.0, 0.1, n)))
    assert abs(noise["t"]) < 3
    assert noise["dates"] == 240 and noise["blocks"] == 60
    strong = block_bootstrap_t(_monthly(lambda rng, n: rng.normal(0.05, 0.1, n)))
    assert strong["t"] > 4 and strong["mean"] == pytest.approx(0.05, abs=0.02)
    # i.i.d. dates: the monthly blocks' se is about the naive one
    assert strong["se"] == pytest.approx(strong["se_iid"], rel=0.25)


def test_block_bootstrap_t_is_seeded():
    s = _monthly(lambda rng, n: rng.normal(0.02, 0.1, n))
    assert block_bootstrap_t(s, seed=3) == block_bootstrap_t(s, seed=3)
    assert block_bootstrap_t(s, seed=3)["se"] != block_bootstrap_t(s, seed=4)["se"]


def test_block_bootstrap_se_sees_within_month_correlation():
    # One value per month, repeated on each of its 4 dates (as overlapping outcome windows
    # make neighbouring dates repeat each other): 60 independent values, not 240, so the se
    # is about twice (sqrt 4) the naive iid one, which the block bootstrap must see.
    months, per_month = 60, 4
    rng = np.random.default_rng(5)
    level = np.repeat(rng.normal(0.0, 0.1, months), per_month)
    s = _monthly(lambda _, n: level[:n], months, per_month)
    out = block_bootstrap_t(s)
    assert out["se"] > 1.5 * out["se_iid"]
    assert out["se"] == pytest.approx(
        np.std(level[::per_month], ddof=1) / math.sqrt(months), rel=0.2
    )
    # quarterly blocks keep the same correlation (a month is inside one quarter)
    assert block_bootstrap_t(s, block="Q")["se"] > 1.5 * out["se_iid"]


def test_block_bootstrap_t_degenerate():
    one_month = pd.Series(
        [0.1, 0.2, 0.3], index=pd.to_datetime(["2021-01-04", "2021-01-11", "2021-01-18"])
    )
    out = block_bootstrap_t(one_month)
    assert out["se"] is None and out["t"] is None and out["blocks"] == 1
    assert out["mean"] == pytest.approx(0.2)
    flat = block_bootstrap_t(_monthly(lambda _, n: np.full(n, 0.1)))
    assert flat["se"] == 0.0 and flat["t"] is None
    empty = block_bootstrap_t(pd.Series([], dtype=float, index=pd.DatetimeIndex([])))
    assert empty == {"mean": None, "se": None, "t": None, "se_iid": None, "dates": 0, "blocks": 0}
    json.dumps(out, allow_nan=False)


def test_sharpe_ci_of_a_mostly_idle_book():
    # two gains in 1000 days: many 21-day-block resamples miss both and are flat (no
    # Sharpe); they are left out, not allowed to make the whole interval undefined
    r = np.zeros(1000)
    r[[200, 700]] = 0.01
    lo, hi = sharpe_ci(pd.Series(r))
    assert 0 < lo < hi
