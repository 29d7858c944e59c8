"""The backtest (DESIGN §9): `engine` (fills, costs, exits, marking) → `run` (run folders,
metrics, `compare` of strategies on the same dates and costs)."""

from synthpm.backtest.engine import (
    BacktestConfig,
    BacktestResult,
    BenchmarkHold,
    Market,
    run_backtest,
)
from synthpm.backtest.run import compare, save_run

__all__ = [
    "BacktestConfig",
    "BacktestResult",
    "BenchmarkHold",
    "Market",
    "compare",
    "run_backtest",
    "save_run",
]
