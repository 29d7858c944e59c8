"""A parameter sweep: one strategy over a grid of its settings and the engine's costs, on the
same contexts, dates and engine as every other run, ranked in one table.

A grid is `{key: [values]}`; a key is one of the strategy's parameters (`k` of lgbm_topk),
a scalar engine setting (`commission_bps`, `slippage_bps`, `fill`, `idle_cash`) or one of
the portfolio's limits (`stop_loss`, `derisk_window`, ...: `synthpm.limits.Limits`). Each
cell is a run folder named by its settings (`k=5,commission_bps=0`); `sweep.csv` lists the
cells with their settings and metrics, best Sharpe first, with the Sharpe's bootstrap
interval; `report.html` draws them together. The folder is written whole or not at all.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from synthpm.backtest.engine import BacktestConfig
from synthpm.backtest.market import Market
from synthpm.backtest.run import backtests, metrics_of, save_run
from synthpm.context import Contexts
from synthpm.data.errors import ConfigError
from synthpm.executor import LOCAL, ExecutorConfig
from synthpm.folders import atomic_folder
from synthpm.limits import Limits
from synthpm.report import write_report

ENGINE_KEYS = ("commission_bps", "slippage_bps", "fill", "idle_cash")
LIMIT_KEYS = tuple(Limits.model_fields)
SHOWN = ("sharpe", "sharpe_ci_low", "sharpe_ci_high", "total_return", "cagr", "max_drawdown",
         "annual_volatility", "information_ratio", "trade_count", "turnover", "costs")  # fmt: skip


def cells(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values, in the order the grid lists them."""
    if not grid or any(not values for values in grid.values()):
        raise ConfigError("a sweep needs a grid of at least one setting, each with values")
    return [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]


def sweep(
    make: Callable[[dict], object],
    grid: dict[str, list],
    contexts: Contexts,
    market: Market,
    config: BacktestConfig,
    out: str | Path,
    log=print,
    executor: ExecutorConfig = LOCAL,
) -> pd.DataFrame:
    """Run `make(strategy settings)` on every cell of `grid`; write the sweep folder and
    return its table. Engine and limit keys change `config`; every other key goes to `make`."""
    # every cell's strategy and settings are built (and validated) before the first run
    planned = []
    for cell in cells(grid):
        settings = config.model_dump() | {k: v for k, v in cell.items() if k in ENGINE_KEYS}
        settings["limits"] |= {k: v for k, v in cell.items() if k in LIMIT_KEYS}
        strategy = make({k: v for k, v in cell.items() if k not in (*ENGINE_KEYS, *LIMIT_KEYS)})
        planned.append((cell, strategy, BacktestConfig.model_validate(settings)))
    rows, runs = [], {}
    with atomic_folder(out, "sweep.csv") as partial:
        jobs = [(strategy, settings) for _, strategy, settings in planned]
        done = backtests(jobs, contexts, market, executor)
        for n, ((cell, _, _), (result, seconds)) in enumerate(zip(planned, done, strict=True), 1):
            metrics = metrics_of(result)
            name = ",".join(f"{k}={v}" for k, v in cell.items())
            runs[name] = save_run(result, partial / name, metrics, seconds)
            rows.append({"cell": name, **cell, **{m: metrics.get(m) for m in SHOWN}})
            sharpe = "n/a" if metrics["sharpe"] is None else f"{metrics['sharpe']:.2f}"
            log(f"[{n}/{len(planned)}] {name}: Sharpe {sharpe}, {seconds:.1f}s")
        table = pd.DataFrame(rows).sort_values("sharpe", ascending=False, kind="stable")
        table.to_csv(partial / "sweep.csv", index=False)
        write_report(runs, partial / "report.html", "synthpm sweep")
    return table.reset_index(drop=True)
