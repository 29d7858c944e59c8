"""`synthpm backtest` and `synthpm compare`: strategies through one engine, same dates and costs."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from pydantic import BaseModel, ConfigDict, Field

from synthpm.backtest.engine import (
    BENCHMARK_NOTES,
    IDLE_CASH_NOTES,
    BacktestConfig,
    BenchmarkHold,
    Market,
    run_backtest,
)
from synthpm.backtest.run import compare, metrics_of, model_dates, save_run
from synthpm.backtest.sweep import ENGINE_KEYS, LIMIT_KEYS, sweep
from synthpm.cli.analysts import load_panel, parse_params
from synthpm.cli.common import (
    DataSource,
    Scale,
    console,
    options,
    print_frame,
    runs_a_model,
    store_at,
)
from synthpm.context import Contexts
from synthpm.data.errors import ConfigError, did_you_mean
from synthpm.dataset import build_contexts, decision_points
from synthpm.journal.live import journal_run, recorder
from synthpm.learn import LEARNERS, History, make_learner
from synthpm.limits import Limits
from synthpm.report import model_eval
from synthpm.strategies import STRATEGIES, make_strategy, strategy_params

BASELINES = ("benchmark", *STRATEGIES)
# every name a run takes; the learners train before they trade, so `--strategies all` (the
# baselines) leaves them out and a run names them
NAMES = ("lm", *BASELINES, *LEARNERS)


class RunOptions(BaseModel):
    """What `backtest` and `compare` share: the data, the engine's settings, the strategies'."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: DataSource = Field(default_factory=DataSource)
    config: BacktestConfig = Field(default_factory=BacktestConfig)
    max_positions: int | None = Field(
        None, description="portfolio limit [default: the model's training limit with lm, else 20]"
    )
    param: list[str] | None = Field(
        None, description="a strategy setting STRATEGY.KEY=VALUE, repeatable (lgbm_topk.k=5)"
    )
    model: Path = Field(Path("runs/lm"), description="the `lm` strategy's model folder")
    allow_in_sample: Annotated[bool, typer.Option("--allow-in-sample")] = Field(
        False,
        description="let the lm strategy trade dates its model trained on (marked in the run)",
    )


Run = Annotated[
    RunOptions,
    options(
        "source.store",
        "source.tickers",
        "config.start",
        "config.end",
        "source.forecasts",
        "config.commission_bps",
        "config.slippage_bps",
        "config.idle_cash",
        "max_positions",
        "param",
        "model",
        "source.cache",
        "allow_in_sample",
    ),
]


def strategy_named(name: str, settings: list[str] | None = None, model: Path | None = None):
    """A strategy by name, with the `--param` settings addressed to it; `lm` is the trained
    language model in `model` (signal-only decoding unless `lm.mode=full`; conviction from its
    probabilities unless `lm.conviction=read`); a learner is built unfitted (`prepare` fits it)."""
    mine = parse_params([s.split(".", 1)[1] for s in settings or [] if s.split(".", 1)[0] == name])
    if name not in NAMES:
        raise ConfigError(
            f"unknown strategy {name!r}{did_you_mean(name, NAMES)}; choose from {', '.join(NAMES)}"
        )
    if name in LEARNERS:
        return make_learner(name, **mine)
    if name == "benchmark":
        return BenchmarkHold()
    if name == "lm":
        from synthpm.agent import PortfolioAgent

        runs_a_model()
        return PortfolioAgent.load(model or Path("runs/lm"), **mine)
    return make_strategy(name, **mine)


def _check_params(settings: list[str] | None, names) -> None:
    for item in settings or []:
        if "." not in item.split("=", 1)[0] or item.split(".", 1)[0] not in names:
            raise ConfigError(f"--param {item!r} names no chosen strategy (use STRATEGY.KEY=VALUE)")


@dataclass(frozen=True)
class Prepared:
    """Strategies and what they run on: the contexts of the decision dates, the engine's price
    arrays, the settings (from the first decision date, under the model's limits), caveats."""

    strategies: list
    contexts: Contexts
    market: Market
    config: BacktestConfig
    caveats: list[str]

    @property
    def start(self) -> str:
        return self.config.start


def prepare(names: list[str], run: RunOptions) -> Prepared:
    """The strategies `names` and the contexts for the decision dates in [start, end]."""
    _check_params(run.param, names)
    chosen = [strategy_named(n, run.param, run.model) for n in names]
    file = run.source.forecasts_file()
    loaded = load_panel(run.source.model_copy(update={"end": run.config.end}))
    predicted = pd.read_parquet(file)
    first = predicted.index.get_level_values("date").min()
    start = run.config.start
    start = max(pd.Timestamp(start), first) if start else first  # no forecasts, no decisions
    with console.status("contexts"):
        points = decision_points(
            loaded.panel.index, loaded.inputs.events, start=start, end=run.config.end
        )
        contexts = build_contexts(loaded.inputs, loaded.panel, predicted, points)
        market = Market.from_inputs(loaded.inputs)
    console.print(f"{len(contexts):,} decision points from {start.date()}")
    update = {"start": str(start.date()), "limits": _limits(chosen, run.max_positions)}
    config = run.config.model_copy(update=update)
    # a learner gets the whole history once and trains on each test year's past only
    learners = [s for s in chosen if hasattr(s, "fit")]
    history = History(market, loaded.panel, predicted, config) if learners else None
    for learner in learners:
        learner.fit(history)
    notes = caveats(market, has_universe=not loaded.inputs.universe.empty)
    return Prepared(chosen, contexts, market, config, notes)


def _limits(chosen: list, max_positions: int | None) -> Limits:
    """The model's training limits where an `lm` runs (the prompts then state what the model
    learned under), with `--max-positions` applied."""
    trained = next((s.trained for s in chosen if getattr(s, "trained", None)), {})
    limits = Limits(**trained["limits"]) if "limits" in trained else Limits()
    if max_positions is not None:
        limits = limits.model_copy(update={"max_positions": max_positions})
    return limits


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
    *,
    strategy: Annotated[str, typer.Option(help=f"one of {', '.join(NAMES)}")] = "rules",
    run: Run,
    out: Annotated[Path, typer.Option(help="run folder")] = Path("runs/backtest"),
    journal: Annotated[
        str | None,
        typer.Option(help="also journal every decision in the store, as this new account"),
    ] = None,
) -> None:
    """Backtest one strategy: equity, trades, decisions, metrics and report in OUT."""
    ready = prepare([strategy], run)
    [chosen] = ready.strategies
    sample = model_dates(chosen, ready.start, run.allow_in_sample)
    started = time.perf_counter()
    rows: list[dict] = []
    source = source_of(chosen, run.model)
    record = recorder(rows, source, journal) if journal else None
    result = run_backtest(chosen, ready.contexts, ready.market, ready.config, record)
    if sample:
        result.notes["model_dates"] = sample
    seconds = time.perf_counter() - started
    metrics = metrics_of(result)
    save_run(result, out, metrics, seconds, _model_evals([chosen], run.model))
    print_frame(pd.DataFrame({result.name: metrics}).dropna(), "metrics")
    notes = [*ready.caveats, IDLE_CASH_NOTES[ready.config.idle_cash]]
    for line in [*notes, *([sample["note"]] if sample else [])]:
        console.print(line)
    console.print(f"{seconds:.1f}s; fills: {result.notes['fills']}; wrote {out}/report.html")
    if journal:
        store = store_at(run.source.store)
        n = journal_run(
            store, rows, result, ready.market, account=journal, source=source,
            config=ready.config,
        )  # fmt: skip
        console.print(f"journaled {n:,} decisions in {store.path} as account {journal!r}")


def source_of(strategy, model: Path) -> str:
    """The journal's source name: a strategy's name, or `lm:<folder>@<weights hash>`."""
    if strategy.name != "lm":
        return strategy.name
    from synthpm.lm.train import weights_hash

    return f"lm:{model.name}@{weights_hash(model)}"


def compare_command(
    *,
    strategies: Annotated[
        str,
        typer.Option(
            help=f"comma-separated names of {', '.join(NAMES)} (lm: the trained model), or "
            "all baselines"
        ),
    ] = "all",
    run: Run,
    scale: Scale,
    out: Annotated[Path, typer.Option(help="output folder")] = Path("runs/compare"),
) -> pd.DataFrame:
    """Compare strategies in one run: same contexts, dates and costs; a table and a report."""
    names = BASELINES if strategies == "all" else [s.strip() for s in strategies.split(",")]
    if not names or any(not n for n in names):
        raise ConfigError("--strategies wants comma-separated names")
    ready = prepare(list(names), run)
    evals = _model_evals(ready.strategies, run.model)
    notes = [*ready.caveats]
    dated = {s.name: model_dates(s, ready.start, allow_in_sample=True) for s in ready.strategies}
    notes += [f"{name}: {d['note']}" for name, d in dated.items() if d]
    notes.append(f"limits: {ready.config.limits.max_positions} positions at most")
    notes.append(IDLE_CASH_NOTES[ready.config.idle_cash])
    table = compare(
        ready.strategies,
        ready.contexts,
        ready.market,
        ready.config,
        out,
        console.print,
        run.allow_in_sample,
        evals,
        notes,
        scale,
    )
    print_frame(table, f"comparison {ready.start} .. {ready.config.end or 'end'} (costs included)")
    for line in notes:
        console.print(line)
    console.print(f"wrote {out}/comparison.csv and {out}/report.html")
    return table


def parse_grid(items: list[str]) -> dict[str, list]:
    """`KEY=V1,V2,...` items as {key: values}; a value that parses as JSON is taken as such."""
    grid: dict[str, list] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise ConfigError(f"--grid wants KEY=V1,V2,..., got {item!r}")
        if key in grid:
            raise ConfigError(f"--grid names {key!r} twice: list its values once (V1,V2)")
        grid[key] = [parse_params([f"v={v.strip()}"])["v"] for v in values.split(",")]
    return grid


def sweep_command(
    *,
    strategy: Annotated[str, typer.Option(help=f"one of {', '.join(STRATEGIES)}")] = "lgbm_topk",
    grid: Annotated[
        list[str],
        typer.Option(
            help="KEY=V1,V2,...: a setting of the strategy, one of "
            f"{', '.join(ENGINE_KEYS)}, or a limit ({', '.join(LIMIT_KEYS)}); repeatable, "
            "every combination is run"
        ),
    ],
    run: Run,
    scale: Scale,
    out: Annotated[Path, typer.Option(help="output folder")] = Path("runs/sweep"),
) -> pd.DataFrame:
    """Sweep one strategy over a grid of its settings and the costs: one run folder per cell,
    on the same contexts, dates and engine, ranked by Sharpe in sweep.csv and a report."""
    if strategy not in STRATEGIES:
        raise ConfigError(
            f"--strategy {strategy!r}{did_you_mean(strategy, STRATEGIES)}: a sweep runs one of "
            f"{', '.join(STRATEGIES)}"
        )
    parsed = parse_grid(grid)
    known = (*strategy_params(strategy), *ENGINE_KEYS, *LIMIT_KEYS)
    for key in parsed:
        if key not in known:
            raise ConfigError(
                f"--grid {key!r}{did_you_mean(key, known)} is not a setting of {strategy}; "
                f"choose from {', '.join(known)}"
            )
    ready = prepare([strategy], run)
    base = [s for s in run.param or [] if s.startswith(f"{strategy}.")]

    def make(settings: dict):
        cell = [f"{strategy}.{k}={json.dumps(v)}" for k, v in settings.items()]
        return strategy_named(strategy, [*base, *cell], run.model)

    table = sweep(
        make, parsed, ready.contexts, ready.market, ready.config, out, console.print, scale
    )
    shown = ["sharpe", "sharpe_ci_low", "sharpe_ci_high", "total_return", "max_drawdown", "costs"]
    print_frame(table.set_index("cell")[shown], f"sweep of {strategy}, best Sharpe first")
    for line in ready.caveats:
        console.print(line)
    console.print(f"wrote {out}/sweep.csv and {out}/report.html")
    return table
