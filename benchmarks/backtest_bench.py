"""Backtest benchmark on real data (not a test: it prints figures).

    python benchmarks/backtest_bench.py [--shared ../shared/data] [--forecasts runs/bench/forecast]

On the 494-stock panel (SPY as the benchmark index, CBOE VIX, 2017 sectors, EDGAR 8-Ks):
1. engine speed: weekly decision points 2005–2017 (and 8-K days), signals computed
   beforehand (always-buy and the fixed rules over the whole context frame), then one
   `run_signals` each, timed alone. Goal: <= 30 s on 2 cores.
2. `compare` of every baseline from the first forecast date (the walk-forward's first test
   year) to the end, same dates and costs (5 bp commission + 5 bp slippage), writing the
   runs, `comparison.csv` and `report.html` to --out. Forecasts come from
   `forecast_bench.py`'s output; without them step 2 is skipped.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from forecast_bench import shared_store

from synthpm.backtest.engine import BacktestConfig, BenchmarkHold, run_signals
from synthpm.backtest.market import Market
from synthpm.backtest.run import compare
from synthpm.context import Contexts
from synthpm.dataset import build_contexts, decision_points
from synthpm.features import PanelInputs, build_features
from synthpm.strategies import STRATEGIES, make_strategy


class Precomputed:
    """Signals computed once for every context, served per decision date."""

    def __init__(self, source, contexts: Contexts):
        self.name = f"{source.name} (precomputed)"
        frame = contexts.frame
        signals = source.signals(contexts)
        self.by_date = {
            day: [signals[i] for i in rows]
            for day, rows in frame.groupby("date", sort=True).indices.items()
        }

    def signals(self, contexts: Contexts):
        return self.by_date[contexts.frame["date"].iloc[0]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--forecasts", type=Path, default=Path("runs/bench/forecast"))
    parser.add_argument("--out", type=Path, default=Path("runs/bench/compare"))
    args = parser.parse_args()
    panel_file = args.shared / "us_equities_ohlcv_2005_2017.parquet"
    if not panel_file.exists():
        print(f"skipped: {panel_file} not found (real data lives in ../shared/data)")
        return 0
    forecast_file = args.forecasts / "forecasts.parquet"
    forecasts = pd.read_parquet(forecast_file) if forecast_file.exists() else None
    print(f"cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        inputs = PanelInputs.from_store(shared_store(args.shared, Path(tmp) / "s.duckdb"))
    panel = build_features(inputs)
    points = decision_points(panel.index, inputs.events)
    contexts = build_contexts(inputs, panel, forecasts, points)
    market = Market.from_inputs(inputs)
    print(f"{len(contexts):,} decision points, {len(market.dates):,} days, "
          f"{len(market.tickers)} tickers; fills: next bar open")  # fmt: skip
    config = BacktestConfig()
    for name in ("always_buy", "rules"):
        source = Precomputed(make_strategy(name), contexts)
        started = time.perf_counter()
        result = run_signals(source, contexts, market, config)
        seconds = time.perf_counter() - started
        print(
            f"1. {source.name}: {seconds:.1f} s for {len(result.equity):,} days, "
            f"{len(result.decisions):,} signals, {len(result.trades):,} fills"
        )
    if forecasts is None:
        print("2. skipped: no forecasts (run benchmarks/forecast_bench.py first)")
        return 0
    start = str(forecasts.index.get_level_values("date").min().date())
    strategies = [BenchmarkHold(), *(make_strategy(name) for name in STRATEGIES)]
    config = BacktestConfig(start=start)
    started = time.perf_counter()
    table = compare(strategies, contexts, market, config, args.out)
    print(f"2. compare from {start}: {time.perf_counter() - started:.1f} s")
    print(table.to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
