"""Backtest metrics under one stated convention, that of empyrical (docs/design.md §10).

Convention (checked against empyrical-reloaded 0.7.1's source, ``empyrical/stats.py``):

* Returns are daily simple returns of the marked equity, ``r_t = E_t / E_{t-1} - 1``; the
  first day has none, so N marks give N-1 returns. Missing marks are dropped first.
* 252 periods a year; risk-free rate 0. Standard deviations are sample ones (ddof=1).
* total return = E_last / E_first - 1. CAGR is compounded, ``(1 + total) ** (252 / n) - 1``
  with n = the number of *returns* (not marks, not calendar days).
* Sharpe = mean(r) / std(r, ddof=1) * sqrt(252) (arithmetic mean, not CAGR).
* Sortino = mean(r) * 252 / (sqrt(mean(min(r, 0) ** 2)) * sqrt(252)): the downside
  deviation divides by *all* n returns (no ddof) and the numerator is arithmetic.
* Max drawdown is on compounded equity, peak to trough, the first mark counting as a peak;
  a negative number. Calmar = CAGR / |max drawdown|, None without a drawdown.
* Beta = cov(r, b) / var(b) (population moments; the ddof cancels). Alpha is annualised by
  compounding: ``(1 + mean(r - beta * b)) ** 252 - 1``, not by multiplying by 252.
* Information ratio = mean(r - b) / std(r - b, ddof=1) * sqrt(252). Empyrical's
  ``excess_sharpe`` is the same ratio *unannualised*, so it is scaled here. Tracking error
  = std(r - b, ddof=1) * sqrt(252). With no active risk (a benchmark against itself) the
  ratio is undefined: None, while the tracking error is 0 (active returns all under 1e-12
  a day count as none: a rescaled benchmark differs from the equity only by round-off).
* Benchmark-relative metrics use the dates the equity and benchmark share (the intersection);
  the stand-alone metrics use the full equity, so they do not depend on a benchmark.
* Any non-finite value (a zero-volatility Sharpe, a loss-free Sortino, ...) is None.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import NamedTuple, TypedDict, cast

import empyrical as ep
import numpy as np
import pandas as pd

PERIODS = 252
CONVENTION: dict[str, str | int | float] = {
    "source": "empyrical-reloaded 0.7.1",
    "returns": "daily simple, E_t/E_{t-1}-1, first day dropped",
    "periods_per_year": PERIODS,
    "std_ddof": 1,
    "risk_free": 0.0,
    "cagr": "compounded, years = number of returns / 252",
    "sharpe": "mean/std(ddof=1)*sqrt(252)",
    "sortino": "mean*252 / (rms of min(r,0) over all returns * sqrt(252))",
    "drawdown": "compounded equity, peak to trough, negative",
    "alpha": "(1 + mean daily residual)**252 - 1",
    "information_ratio": "mean(active)/std(active, ddof=1)*sqrt(252); None if no active risk",
    "benchmark_alignment": "intersection of dates",
    "sharpe_ci": "stationary bootstrap (arch StationaryBootstrap: geometric blocks, mean 21 "
    "days), 1000 resamples, 95% percentile",
    "turnover": "sum |traded value| / mean equity / years",
}
Value = float | int | str | None


class Metrics(TypedDict):
    """`compute_metrics`' result, in this order: the keys of metrics.json and of the rows of
    comparison.csv. None where a metric is undefined."""

    start: str | None
    end: str | None
    days: int
    total_return: float | None
    cagr: float | None
    annual_volatility: float | None
    sharpe: float | None
    sharpe_ci_low: float | None
    sharpe_ci_high: float | None
    sortino: float | None
    max_drawdown: float | None
    calmar: float | None
    alpha: float | None
    beta: float | None
    information_ratio: float | None
    tracking_error: float | None
    benchmark_total_return: float | None
    benchmark_cagr: float | None
    benchmark_sharpe: float | None
    win_rate: float | None
    profit_loss_ratio: float | None
    avg_holding_days: float | None
    trade_count: int | None
    round_trips: int | None
    turnover: float | None
    exposure: float | None
    costs: float | None


METRIC_NAMES: list[str] = list(Metrics.__annotations__)


class Interval(NamedTuple):
    """A confidence interval's bounds."""

    low: float
    high: float


def _clean(x: object) -> Value:
    """A plain JSON value: numpy scalars unwrapped, NaN and infinities as None."""
    if x is None or isinstance(x, str):
        return x
    if isinstance(x, (bool, np.bool_)):
        return int(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    x = float(x)  # type: ignore[arg-type]
    return x if math.isfinite(x) else None


def _day(x: object) -> str:
    if isinstance(x, datetime):
        return x.date().isoformat()
    return x.isoformat() if isinstance(x, date) else str(x)


def returns_from_equity(equity: pd.Series) -> pd.Series:
    """Daily simple returns of a marked equity; the first day, which has none, is dropped."""
    e = equity.astype(float).dropna().sort_index()
    return (e / e.shift(1) - 1.0).iloc[1:]


def sharpe_ci(
    returns: pd.Series, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0, block: int = 21
) -> Interval:
    """Percentile CI of the annualised Sharpe by the stationary bootstrap (Politis-Romano),
    arch's `StationaryBootstrap`, seeded.

    Resampling whole blocks keeps the returns' autocorrelation, which an i.i.d. bootstrap
    would destroy (understating the interval for trending strategies). Stationary rather
    than moving-block: block lengths are geometric with mean ``block`` and wrap circularly,
    so the resampled series is itself stationary and less sensitive to the block length.
    A flat resample (a mostly idle book) has no Sharpe and is left out of the quantiles,
    which is why they are taken here rather than by arch's `conf_int`. (nan, nan) when
    undefined.
    """
    r = np.asarray(returns, dtype=float)
    r = r[np.isfinite(r)]
    if len(r) < 2 or np.ptp(r) == 0 or n_boot < 1:
        return Interval(math.nan, math.nan)
    if block < 1:
        raise ValueError("block must be >= 1")
    from arch.bootstrap import StationaryBootstrap  # here: 0.16 s an import otherwise

    s = StationaryBootstrap(block, r, seed=seed).apply(_sharpe, n_boot)[:, 0]
    s = s[np.isfinite(s)]
    if s.size == 0:
        return Interval(math.nan, math.nan)
    lo, hi = np.quantile(s, [alpha / 2, 1 - alpha / 2])
    return Interval(float(lo), float(hi))


def _sharpe(r: np.ndarray) -> float:
    """The annualised Sharpe of daily returns; NaN for a flat series (undefined)."""
    if np.ptp(r) == 0:
        return math.nan
    return float(r.mean() / r.std(ddof=1) * math.sqrt(PERIODS))


def _trade_stats(trades: pd.DataFrame, mean_equity: float, years: float) -> dict[str, Value]:
    # Empyrical works on return series only; fills, round trips and costs are ours.
    # A zero-pnl close counts in win_rate's denominator; P/L ratio needs a win and a loss.
    closing = trades[trades["pnl"].notna()]  # opening fills carry NaN pnl
    pnl = closing["pnl"].astype(float)
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    both = len(wins) and len(losses)
    traded = float(trades["value"].abs().sum())
    return {
        "win_rate": float((pnl > 0).mean()) if len(pnl) else None,
        "profit_loss_ratio": float(wins.mean() / abs(losses.mean())) if both else None,
        "avg_holding_days": closing["holding_days"].astype(float).mean(),
        "trade_count": len(trades),
        "round_trips": len(closing),
        "turnover": traded / mean_equity / years if mean_equity > 0 else None,
        "costs": float(trades["cost"].sum()),
    }


def _benchmark_stats(equity: pd.Series, benchmark: pd.Series) -> dict[str, Value]:
    # Align on the shared dates; each return then spans the same interval for both.
    both = pd.concat([equity, benchmark.astype(float)], axis=1, join="inner").dropna()
    if len(both) < 2:
        return {}
    r, b = returns_from_equity(both.iloc[:, 0]), returns_from_equity(both.iloc[:, 1])
    alpha, beta = ep.alpha_beta(r, b)
    active = r - b
    # A rescaled copy of the equity differs from it by round-off (~1e-17 a day), which
    # empyrical divides into a meaningless ratio; below 1e-12 a day there is no active risk.
    none = bool((active.abs() < 1e-12).all())
    return {
        "alpha": alpha,
        "beta": beta,
        # excess_sharpe is mean/std(ddof=1) of active returns, unannualised.
        "information_ratio": None if none else ep.excess_sharpe(r, b) * math.sqrt(PERIODS),
        "tracking_error": 0.0 if none else ep.annual_volatility(active),
        "benchmark_total_return": ep.cum_returns_final(b),
        "benchmark_cagr": ep.cagr(b),
        "benchmark_sharpe": ep.sharpe_ratio(b),
    }


def compute_metrics(
    equity: pd.Series,
    benchmark: pd.Series | None = None,
    trades: pd.DataFrame | None = None,
    exposure: pd.Series | None = None,
) -> Metrics:
    """All metrics as a flat JSON-safe dict (`Metrics`); None where undefined."""
    e = equity.astype(float).dropna().sort_index()
    m: dict[str, object] = dict.fromkeys(METRIC_NAMES)
    m["days"] = len(e)  # daily marks, first included
    if len(e):
        m["start"], m["end"] = _day(e.index[0]), _day(e.index[-1])
    if len(e) < 2:
        return _named(m)
    r = returns_from_equity(e)
    years = len(r) / PERIODS
    m.update(
        total_return=ep.cum_returns_final(r),
        cagr=ep.cagr(r),
        annual_volatility=ep.annual_volatility(r),
        sharpe=ep.sharpe_ratio(r),
        sortino=ep.sortino_ratio(r),
        max_drawdown=ep.max_drawdown(r),
        calmar=ep.calmar_ratio(r),
    )
    if _clean(m["sharpe"]) is not None:
        m["sharpe_ci_low"], m["sharpe_ci_high"] = sharpe_ci(r)
    if benchmark is not None:
        m.update(_benchmark_stats(e, benchmark))
    if trades is not None:
        m.update(_trade_stats(trades, float(e.mean()), years))
    if exposure is not None:
        m["exposure"] = exposure.astype(float).mean()  # empyrical has no positions input here
    return _named(m)


def _named(m: dict[str, object]) -> Metrics:
    return cast(Metrics, {k: _clean(m[k]) for k in METRIC_NAMES})


def rank_ic_by_date(dates: object, score: object, outcome: object, min_names: int = 5) -> pd.Series:
    """Spearman correlation of `score` with `outcome` within each date, indexed by date (sorted).

    Only finite (score, outcome) pairs count. A date with fewer than `min_names` of them, or
    whose score or outcome is constant there (nothing to rank), is left out rather than
    given 0: an undefined IC is not evidence of no skill. Ties get average ranks, as scipy's
    `spearmanr`. Vectorised over dates (ranks within groups, then Pearson of the ranks).
    """
    frame = pd.DataFrame(
        {
            "date": pd.to_datetime(np.asarray(dates)),
            "s": np.asarray(score, dtype=float),
            "o": np.asarray(outcome, dtype=float),
        }
    )
    frame = frame[np.isfinite(frame["s"]) & np.isfinite(frame["o"])]
    empty = pd.Series([], dtype=float, index=pd.DatetimeIndex([], name="date"), name="rank_ic")
    if frame.empty:
        return empty
    by = frame.groupby("date", sort=True)
    size, distinct = by.size(), by[["s", "o"]].nunique().min(axis=1)
    keep = size.index[(size >= min_names) & (distinct > 1)]
    frame = frame[frame["date"].isin(keep)]
    if frame.empty:
        return empty
    by = frame.groupby("date", sort=True)
    rs, ro = by["s"].rank(), by["o"].rank()
    ds = rs - rs.groupby(frame["date"]).transform("mean")
    do = ro - ro.groupby(frame["date"]).transform("mean")
    sums = pd.DataFrame({"so": ds * do, "ss": ds * ds, "oo": do * do}).groupby(frame["date"]).sum()
    ic = sums["so"] / np.sqrt(sums["ss"] * sums["oo"])
    ic.index.name, ic.name = "date", "rank_ic"
    return ic.sort_index()


def block_bootstrap_t(
    series: pd.Series, block: str = "M", n_boot: int = 2000, seed: int = 0
) -> dict[str, Value]:
    """Mean of a per-date series, its block-bootstrap standard error and t = mean / se.

    Why blocks: a per-date IC measures outcomes over windows (up to 63 trading days for the
    hindsight labels) that overlap between neighbouring dates, so the dates' values are
    serially correlated and 1/sqrt(dates) understates the error; resampling whole calendar
    periods (`block`, a pandas period alias: "M" months, "Q" quarters) with replacement keeps
    that correlation inside each block. Correlation across a block's edge is still ignored, so
    with windows longer than a block the se is a lower bound; a longer block is the check.
    arch's block bootstraps cut blocks of a fixed number of observations, and calendar months
    hold unequal numbers of decision dates, so the periods themselves are resampled: arch's
    `IIDBootstrap` of each period's (sum, count), a resample's mean their pooled ratio.

    The index must be dates (anything `pd.to_datetime` reads); non-finite values are dropped.
    A resample's mean is the mean over all dates of its drawn blocks (months hold unequal
    numbers of dates). Returns `mean`, `se` (bootstrap, ddof=1 over resamples), `t`,
    `se_iid` (the naive std/sqrt(dates), for comparison), `dates` and `blocks`; None where
    undefined (under 2 blocks, or a zero se). Seeded: the same inputs give the same figures.
    """
    s = pd.Series(np.asarray(series, dtype=float), index=pd.to_datetime(series.index))
    s = s[np.isfinite(s.to_numpy())].sort_index()
    codes, uniques = pd.factorize(s.index.to_period(block), sort=True)
    n, b = len(s), len(uniques)
    out: dict[str, object] = {"mean": s.mean() if n else None, "se": None, "t": None}
    out["se_iid"] = s.std(ddof=1) / math.sqrt(n) if n > 1 else None
    out |= {"dates": n, "blocks": b}
    if b < 2 or n_boot < 2:
        return {k: _clean(v) for k, v in out.items()}
    sums = np.bincount(codes, weights=s.to_numpy(), minlength=b)
    counts = np.bincount(codes, minlength=b).astype(float)
    from arch.bootstrap import IIDBootstrap  # here: 0.16 s an import otherwise

    means = IIDBootstrap(sums, counts, seed=seed).apply(_pooled_mean, n_boot)[:, 0]
    # a constant series has no error; round-off in the resampled means would fake one
    se = 0.0 if np.ptp(s.to_numpy()) == 0 else float(np.std(means, ddof=1))
    out["se"] = se
    out["t"] = out["mean"] / se if se > 0 else None
    return {k: _clean(v) for k, v in out.items()}


def _pooled_mean(sums: np.ndarray, counts: np.ndarray) -> float:
    return float(sums.sum() / counts.sum())


def per_year(equity: pd.Series) -> pd.DataFrame:
    """Return, Sharpe and max drawdown per calendar year of marked equity (the regimes:
    2008, 2020, 2022 ...). A year's first return is from the previous year's last mark."""
    r = returns_from_equity(equity.astype(float).dropna().sort_index())
    rows = {
        year: {
            "return": ep.cum_returns_final(g),
            "sharpe": _clean(ep.sharpe_ratio(g)),
            "max_drawdown": ep.max_drawdown(g),
        }
        for year, g in r.groupby(r.index.year)
    }
    return pd.DataFrame(rows).T.rename_axis("year")
