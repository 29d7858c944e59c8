"""How much a price-index benchmark flatters excess returns (not a test: it prints figures).

    python benchmarks/benchmark_gap.py [--shared ../shared/data]

The embedded demo has only the S&P 500 *price* index (skfolio), while its stocks' adjusted
closes include dividends. This measures the gap on the dates both series cover: skfolio's
index against SPY's dividend-adjusted closes from ../shared (a total-return series, less
SPY's 0.09% a year of fees). `BENCHMARK_NOTES` (`synthpm.backtest.market`) quotes these
figures; the result is written to benchmarks/results/benchmark_gap.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
from skfolio.datasets import load_sp500_index

PERIODS = {"all": (None, None), "demo_test": ("2018-06-01", "2022-12-31")}


def cagr(series: pd.Series) -> float:
    years = (series.index[-1] - series.index[0]).days / 365.25
    return float((series.iloc[-1] / series.iloc[0]) ** (1 / years) - 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/benchmark_gap.json"))
    args = parser.parse_args()
    source = args.shared / "us_etfs_adjclose_2005_2022.parquet"
    if not source.exists():
        print(f"skipped: {source} not found (real data lives in ../shared/data beside the repo)")
        return 0
    etfs = pd.read_parquet(source)
    spy = etfs[etfs["ticker"] == "SPY"].set_index("date")["close"]
    spy.index = pd.to_datetime(spy.index)
    index = load_sp500_index().iloc[:, 0]
    both = index.index.intersection(spy.index)
    out = {}
    for name, (start, end) in PERIODS.items():
        days = both[(both >= (start or both[0])) & (both <= (end or both[-1]))]
        total, price = cagr(spy[days]), cagr(index[days])
        out[name] = {
            "start": str(days[0].date()),
            "end": str(days[-1].date()),
            "spy_total_return_cagr": round(total, 5),
            "sp500_price_index_cagr": round(price, 5),
            "gap_per_year": round(total - price, 5),
        }
        print(
            f"{name}: {days[0].date()} .. {days[-1].date()}: SPY total return "
            f"{total:.2%}/yr, S&P 500 price index {price:.2%}/yr, gap {total - price:.2%}/yr"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
