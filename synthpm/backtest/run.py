"""A run directory per strategy, and `compare`: strategies through one engine, same dates, costs.

A run directory holds `equity.csv` (date, equity, cash, benchmark, exposure, positions),
`trades.csv`, `decisions.parquet` (every signal with its status and reason), `metrics.json`
(the metrics, their convention, the fill/dividend/cost statement) and `report.html`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from synthpm.backtest.engine import BacktestConfig, BacktestResult, run_backtest
from synthpm.backtest.market import Market
from synthpm.context import Contexts
from synthpm.data.errors import ConfigError
from synthpm.executor import LOCAL, ExecutorConfig, parallel_map
from synthpm.folders import atomic_folder
from synthpm.metrics import CONVENTION, METRIC_NAMES, Metrics, compute_metrics
from synthpm.report import write_report


def model_dates(strategy, start: str, allow_in_sample: bool = False) -> dict | None:
    """Where a run starting at `start` stands against the dates its model has seen.

    A strategy that learned from a dataset (the language model) carries that dataset's
    record as `trained`, whose `test_start` is the first date it never trained or chose
    settings on. A run from before it is in sample: refused unless `allow_in_sample`, and
    then marked as such in `metrics.json` and the report."""
    test_start = (getattr(strategy, "trained", None) or {}).get("test_start")
    if not test_start:
        return None
    inside = pd.Timestamp(start) < pd.Timestamp(test_start)
    if inside and not allow_in_sample:
        raise ConfigError(
            f"{strategy.name}: its model trained and was validated on dates before "
            f"{test_start}, and this run starts {pd.Timestamp(start).date()}: start on or "
            "after that date, or pass --allow-in-sample to run in sample on purpose"
        )
    note = (
        f"IN SAMPLE: the model saw dates before {test_start}"
        if inside
        else f"out of sample: the model's data end before {test_start}"
    )
    return {"test_start": test_start, "in_sample": bool(inside), "note": note}


def metrics_of(result: BacktestResult) -> Metrics:
    equity = result.equity.set_index("date")
    return compute_metrics(equity["equity"], equity["benchmark"], result.trades, equity["exposure"])


def save_run(
    result: BacktestResult,
    out: Path,
    metrics: Metrics,
    seconds: float,
    model_evals: dict[str, dict] | None = None,
) -> Path:
    """A run folder (equity, trades, decisions, metrics and report), written whole or not at
    all: a killed run leaves the earlier folder as it was."""
    with atomic_folder(out, "metrics.json") as folder:
        result.equity.to_csv(folder / "equity.csv", index=False)
        result.trades.to_csv(folder / "trades.csv", index=False)
        result.decisions.to_parquet(folder / "decisions.parquet", index=False)
        dates = result.equity["date"]
        document = {
            "strategy": result.name,
            "start": str(dates.iloc[0].date()),
            "end": str(dates.iloc[-1].date()),
            "seconds": round(seconds, 3),
            "metrics": metrics,
            "convention": CONVENTION,
            **result.notes,
        }
        (folder / "metrics.json").write_text(json.dumps(document, indent=1, default=str))
        evals = model_evals or {}
        own = {result.name: evals[result.name]} if result.name in evals else None
        write_report(
            {result.name: folder}, folder / "report.html", f"synthpm backtest: {result.name}", own
        )
    return Path(out)


def backtests(
    jobs: list[tuple[object, BacktestConfig]],
    contexts: Contexts,
    market: Market,
    executor: ExecutorConfig = LOCAL,
) -> Iterator[tuple[BacktestResult, float]]:
    """Each (strategy, settings) run on the same contexts and market, in the jobs' order,
    with its seconds; the runs are independent, so `executor` may run them in parallel."""
    return parallel_map(_timed_backtest, (contexts, market), jobs, executor)


def _timed_backtest(
    shared: tuple[Contexts, Market], job: tuple[object, BacktestConfig]
) -> tuple[BacktestResult, float]:
    started = time.perf_counter()
    result = run_backtest(job[0], *shared, job[1])
    return result, time.perf_counter() - started


def compare(
    strategies: list,
    contexts: Contexts,
    market: Market,
    config: BacktestConfig,
    out: str | Path,
    log=print,
    allow_in_sample: bool = False,
    model_evals: dict[str, dict] | None = None,
    caveats: list[str] | None = None,
    executor: ExecutorConfig = LOCAL,
) -> pd.DataFrame:
    """Run every strategy on the same contexts, dates and costs; write each run, the
    comparison table (`comparison.csv`) and one report over all of them (`report.html`).
    A model is refused on dates it trained on unless `allow_in_sample` (`model_dates`).
    `model_evals` (strategy name -> its model's `eval.json`) adds the reliability diagram;
    `caveats`, lines about the run a reader must know, go to `caveats.txt`."""
    start = config.start or str(contexts.frame["date"].min().date())
    sample = {s.name: model_dates(s, start, allow_in_sample) for s in strategies}  # before any run
    runs, table = {}, {}
    evals = model_evals or {}
    # the whole comparison is written whole or not at all, like each run folder
    with atomic_folder(out, "comparison.csv") as partial:
        done = backtests([(s, config) for s in strategies], contexts, market, executor)
        for strategy, (result, seconds) in zip(strategies, done, strict=True):
            if sample[strategy.name]:
                result.notes["model_dates"] = sample[strategy.name]
            metrics = metrics_of(result)
            runs[result.name] = save_run(result, partial / result.name, metrics, seconds, evals)
            table[result.name] = metrics
            log(
                f"{result.name}: {seconds:.1f}s, total return {metrics['total_return']:+.1%}, "
                f"Sharpe {_fmt(metrics['sharpe'])}, {metrics['trade_count']} trades"
            )
        frame = pd.DataFrame(table)
        frame = frame.reindex([m for m in METRIC_NAMES if m in frame.index])
        frame.to_csv(partial / "comparison.csv")
        write_report(runs, partial / "report.html", "synthpm comparison", evals or None)
        if caveats:
            (partial / "caveats.txt").write_text("\n".join(caveats) + "\n")
    return frame


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"
