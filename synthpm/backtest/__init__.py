"""The backtest (docs/design.md §9): `market` (prices on one calendar) and `broker` (fills,
costs) → `engine` (the day loop; `run_signals`, `run_rule`, `run_benchmark`, and
`run_backtest` by a strategy's kind) → `run` (run folders, metrics, `compare` of strategies
on the same dates and costs)."""

from synthpm.backtest.engine import (
    BacktestConfig,
    BacktestResult,
    BenchmarkHold,
    run_backtest,
    run_benchmark,
    run_rule,
    run_signals,
)
from synthpm.backtest.market import Market
from synthpm.backtest.run import compare, save_run

__all__ = [
    "BacktestConfig",
    "BacktestResult",
    "BenchmarkHold",
    "Market",
    "compare",
    "run_backtest",
    "run_benchmark",
    "run_rule",
    "run_signals",
    "save_run",
]
