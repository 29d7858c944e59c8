"""`synthpm backtest` and `synthpm compare`: strategies through one engine, same dates and costs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from synthpm.backtest.engine import (
    BENCHMARK_NOTES,
    IDLE_CASH_NOTES,
    BacktestConfig,
    BenchmarkHold,
    IdleCash,
    Market,
    run_backtest,
)
from synthpm.backtest.run import compare, metrics_of, model_dates, save_run
from synthpm.cli.analysts import Cache, End, Start, Tickers, load_panel, parse_params
from synthpm.cli.common import StoreOption, console, print_frame
from synthpm.data.errors import ConfigError, SynthpmError
from synthpm.dataset import build_contexts, decision_points
from synthpm.limits import Limits
from synthpm.report import model_eval, write_report
from synthpm.strategies import STRATEGIES, make_strategy

BASELINES = ("benchmark", *STRATEGIES)
ModelDir = Annotated[Path, typer.Option("--model", help="the `lm` strategy's model folder")]
Forecasts = Annotated[
    Path, typer.Option(help="a `forecast train` output folder (or its forecasts.parquet)")
]
Commission = Annotated[float, typer.Option(help="commission, basis points of traded value")]
Slippage = Annotated[float, typer.Option(help="slippage, basis points of price")]
IdleCashOption = Annotated[
    IdleCash,
    typer.Option(help="idle cash: earns nothing, or held in the benchmark index (every strategy)"),
]
MaxPositions = Annotated[
    int | None,
    typer.Option(help="portfolio limit [default: the model's training limit with lm, else 20]"),
]
AllowInSample = Annotated[
    bool,
    typer.Option(
        "--allow-in-sample",
        help="let the lm strategy trade dates its model trained on (marked in the run)",
    ),
]


Params = Annotated[
    list[str] | None,
    typer.Option(
        "--param", help="a strategy setting STRATEGY.KEY=VALUE, repeatable (lgbm_topk.k=5)"
    ),
]


def strategy_named(name: str, settings: list[str] | None = None, model: Path | None = None):
    """A strategy by name, with the `--param` settings addressed to it; `lm` is the trained
    language model in `model` (signal-only decoding unless `lm.mode=full`; conviction from its
    probabilities unless `lm.conviction=read`)."""
    mine = parse_params([s.split(".", 1)[1] for s in settings or [] if s.split(".", 1)[0] == name])
    if name == "benchmark":
        return BenchmarkHold()
    if name == "lm":
        from synthpm.agent import PortfolioAgent

        return PortfolioAgent.load(model or Path("runs/lm"), **mine)
    return make_strategy(name, **mine)


def _check_params(settings: list[str] | None, names) -> None:
    for item in settings or []:
        if "." not in item.split("=", 1)[0] or item.split(".", 1)[0] not in names:
            raise ConfigError(f"--param {item!r} names no chosen strategy (use STRATEGY.KEY=VALUE)")


def prepare(store, tickers, start, end, forecasts: Path, cache):
    """Contexts for the decision dates in [start, end] and the engine's price arrays."""
    file = forecasts / "forecasts.parquet" if forecasts.is_dir() else forecasts
    if not file.exists():
        raise SynthpmError(
            f"no forecasts at {file}: run `synthpm forecast train --out {forecasts}` first"
        )
    inputs, panel = load_panel(store, tickers, None, end, None, cache)
    universe = not inputs.universe.empty
    predicted = pd.read_parquet(file)
    first = predicted.index.get_level_values("date").min()
    start = max(pd.Timestamp(start), first) if start else first  # no forecasts, no decisions
    with console.status("contexts"):
        points = decision_points(panel.index, inputs.events, start=start, end=end)
        contexts = build_contexts(inputs, panel, predicted, points)
        market = Market.from_inputs(inputs)
    console.print(f"{len(contexts):,} decision points from {start.date()}")
    return contexts, market, str(start.date()), universe


def _config(
    start, end, commission, slippage, max_positions, chosen, idle_cash: IdleCash
) -> BacktestConfig:
    """The run's settings; the limits are the model's training limits where an `lm` runs (the
    prompts then state what the model learned under), with `--max-positions` applied."""
    trained = next((s.trained for s in chosen if getattr(s, "trained", None)), {})
    limits = Limits(**trained["limits"]) if "limits" in trained else Limits()
    if max_positions is not None:
        limits = limits.model_copy(update={"max_positions": max_positions})
    return BacktestConfig(
        start=start,
        end=end,
        commission_bps=commission,
        slippage_bps=slippage,
        idle_cash=idle_cash,
        limits=limits,
    )


def caveats(market: Market, has_universe: bool) -> list[str]:
    """What a reader of the table must know: the benchmark's kind and the universe's."""
    lines = [f"benchmark: {market.benchmark_name}, {BENCHMARK_NOTES[market.benchmark_kind]}"]
    if not has_universe:
        lines.append(
            "universe: every stored ticker on every date (no point-in-time membership "
            "stored): a list of today's index members is a list of survivors, which flatters "
            "equal weight and every stock-picking strategy against the index"
        )
    return lines


def _model_evals(strategies: list, model: Path) -> dict[str, dict]:
    """The `lm` strategy's model evaluation (`eval.json` in its folder), for the report's
    reliability diagram; empty without the strategy or the file."""
    names = {s.name for s in strategies}
    found = model_eval(model) if "lm" in names else None
    return {"lm": found} if found and found.get("calibration") else {}


def backtest(
    strategy: Annotated[str, typer.Option(help=f"lm or one of {', '.join(BASELINES)}")] = "rules",
    store: StoreOption = None,
    tickers: Tickers = None,
    start: Start = None,
    end: End = None,
    forecasts: Forecasts = Path("runs/forecast"),
    commission_bps: Commission = 5.0,
    slippage_bps: Slippage = 5.0,
    idle_cash: IdleCashOption = "cash",
    max_positions: MaxPositions = None,
    param: Params = None,
    model: ModelDir = Path("runs/lm"),
    out: Annotated[Path, typer.Option(help="run folder")] = Path("runs/backtest"),
    cache: Cache = None,
    allow_in_sample: AllowInSample = False,
) -> None:
    """Backtest one strategy: equity, trades, decisions, metrics and report in OUT."""
    _check_params(param, [strategy])
    chosen = strategy_named(strategy, param, model)
    contexts, market, start, universe = prepare(store, tickers, start, end, forecasts, cache)
    config = _config(start, end, commission_bps, slippage_bps, max_positions, [chosen], idle_cash)
    sample = model_dates(chosen, start, allow_in_sample)
    started = time.perf_counter()
    result = run_backtest(chosen, contexts, market, config)
    if sample:
        result.notes["model_dates"] = sample
    seconds = time.perf_counter() - started
    metrics = metrics_of(result)
    save_run(result, out, metrics, seconds)
    evals = _model_evals([chosen], model)
    write_report({result.name: out}, out / "report.html", f"synthpm backtest: {result.name}", evals)
    print_frame(pd.DataFrame({result.name: metrics}).dropna(), "metrics")
    notes = [*caveats(market, universe), IDLE_CASH_NOTES[config.idle_cash]]
    for line in [*notes, *([sample["note"]] if sample else [])]:
        console.print(line)
    console.print(f"{seconds:.1f}s; fills: {result.notes['fills']}; wrote {out}/report.html")


def compare_command(
    strategies: Annotated[
        str, typer.Option(help="comma-separated names (lm: the trained model), or all baselines")
    ] = "all",
    store: StoreOption = None,
    tickers: Tickers = None,
    start: Start = None,
    end: End = None,
    forecasts: Forecasts = Path("runs/forecast"),
    commission_bps: Commission = 5.0,
    slippage_bps: Slippage = 5.0,
    idle_cash: IdleCashOption = "cash",
    max_positions: MaxPositions = None,
    param: Params = None,
    model: ModelDir = Path("runs/lm"),
    out: Annotated[Path, typer.Option(help="output folder")] = Path("runs/compare"),
    cache: Cache = None,
    allow_in_sample: AllowInSample = False,
) -> pd.DataFrame:
    """Compare strategies in one run: same contexts, dates and costs; a table and a report."""
    names = BASELINES if strategies == "all" else [s.strip() for s in strategies.split(",")]
    if not names or any(not n for n in names):
        raise ConfigError("--strategies wants comma-separated names")
    _check_params(param, names)
    chosen = [strategy_named(n, param, model) for n in names]
    contexts, market, start, universe = prepare(store, tickers, start, end, forecasts, cache)
    config = _config(start, end, commission_bps, slippage_bps, max_positions, chosen, idle_cash)
    evals = _model_evals(chosen, model)
    table = compare(chosen, contexts, market, config, out, console.print, allow_in_sample, evals)
    print_frame(table, f"comparison {start} .. {end or 'end'} (costs included)")
    notes = [*caveats(market, universe)]
    dated = {s.name: model_dates(s, start, allow_in_sample=True) for s in chosen}
    notes += [f"{name}: {d['note']}" for name, d in dated.items() if d]
    notes.append(f"limits: {config.limits.max_positions} positions at most")
    notes.append(IDLE_CASH_NOTES[config.idle_cash])
    for line in notes:
        console.print(line)
    (out / "caveats.txt").write_text("\n".join(notes) + "\n")
    console.print(f"wrote {out}/comparison.csv and {out}/report.html")
    return table
