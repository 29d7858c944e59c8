"""`synthpm dataset build|show`: the language model's training conversations.

`--teacher` picks who labels them (`synthpm.dataset.labels`, `synthpm.dataset.teachers`):
the dataset layer cannot import the fixed rules or the Q-learning agent (they sit above it),
so this command builds them and hands them to `build_dataset(teachers=...)`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import pandas as pd
import pyarrow.parquet as pq
import typer
from rich.markup import escape

from synthpm import progress
from synthpm.cli.analysts import load_panel
from synthpm.cli.common import (
    DataSource,
    Opt,
    Scale,
    command,
    console,
    options,
    print_frame,
)
from synthpm.data.errors import ConfigError, SynthpmError
from synthpm.dataset import SCENARIOS, DatasetConfig, build_dataset
from synthpm.dataset.build import SPLITS
from synthpm.dataset.teachers import SOURCES, TeacherInput
from synthpm.features.panel import PanelInputs
from synthpm.strategies.sources import FixedRules

dataset_app = typer.Typer(
    help="Training conversations for the language model.", no_args_is_help=True
)
DataDir = Annotated[Path, typer.Option("--data", help="a `dataset build` output folder")]


def _scenarios(text: str) -> tuple[str, ...]:
    if text == "all":
        return SCENARIOS
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in names if s not in SCENARIOS]
    if unknown or not names:
        raise ConfigError(f"unknown scenarios {unknown}; choose from all, {', '.join(SCENARIOS)}")
    return names


DatasetOptions = Annotated[
    DatasetConfig,
    options(
        "start",
        "end",
        "scenarios",
        "schedule",
        "filings",
        "val_start",
        "test_start",
        "limits.max_positions",
        "jsonl",
        "seed",
        "teacher",
        "held_out_tickers",
        scenarios=Opt(
            type=str, default="all", help="all, or comma-separated names", parse=_scenarios
        ),
        schedule=Opt(type=str),  # the config checks it: its error names the field
        teacher=Opt(type=str),  # likewise, and its error lists the choices
    ),
]


def teachers_for(
    teacher: str,
    inputs: PanelInputs,
    panel: pd.DataFrame,
    forecasts: pd.DataFrame,
    config: DatasetConfig,
) -> dict[str, TeacherInput]:
    """The signal sources `teacher` needs (`teachers.SOURCES`), ready to decide: the fixed
    rules as the `rules` baseline runs them, the Q-learning agent fitted walk-forward on
    the run's history (each year's table trained on the years before it)."""
    found: dict[str, TeacherInput] = {}
    for name in SOURCES[teacher]:
        found[name] = FixedRules() if name == "rules" else _qlearn(inputs, panel, forecasts, config)
    return found


def _qlearn(
    inputs: PanelInputs, panel: pd.DataFrame, forecasts: pd.DataFrame, config: DatasetConfig
) -> TeacherInput:
    # imported here: the learners pull in gymnasium and torch, which other builds never need
    from synthpm.backtest.engine import BacktestConfig
    from synthpm.backtest.market import Market
    from synthpm.learn import History, fitted_learner

    # the dataset's limits: the agent trains under the book the labels are disciplined by
    history = History(
        Market.from_inputs(inputs), panel, forecasts, BacktestConfig(limits=config.limits)
    )
    with console.status("fitting the Q-learning teacher (walk-forward)"):
        learner = fitted_learner("qlearn", history)
        # its yearly tables train lazily: train them here, once, not in each parallel worker
        # (each gets a pickled copy)
        dates = panel.index.get_level_values("date")
        start = pd.Timestamp(config.start) if config.start else dates.min()
        end = pd.Timestamp(config.end) if config.end else dates.max()
        for year in range(start.year, end.year + 1):
            learner.model_for(pd.Timestamp(year=year, month=1, day=1))
    return learner


@command(dataset_app, "build")
def dataset_build(
    *,
    source: Annotated[DataSource, options("store", "tickers", "forecasts", "cache")],
    config: DatasetOptions,
    scale: Scale,
    out: Annotated[Path, typer.Option(help="output folder")] = Path("runs/dataset"),
) -> None:
    """Contexts x scenarios x labels (hindsight's, or `--teacher`'s) → conversations, split
    by date."""
    file = source.forecasts_file()
    # Features need the history before `start`; the calendar cuts decision points to it.
    loaded = load_panel(source.model_copy(update={"end": config.end}))
    forecasts = pd.read_parquet(file)
    started = time.perf_counter()
    teachers = teachers_for(config.teacher, loaded.inputs, loaded.panel, forecasts, config)
    stats = build_dataset(
        loaded.inputs,
        loaded.panel,
        forecasts,
        out,
        config,
        progress=lambda it, total: progress.track(it, "chunks", total=total),
        log=console.print,
        executor=scale,
        teachers=teachers,
    )
    table = pd.DataFrame(stats["by_split"]).T
    table["examples"] = table.sum(axis=1)
    table["MB"] = [stats["bytes"].get(s, 0) / 1e6 for s in table.index]
    print_frame(table, "examples by split and decision", digits=1)
    print_frame(pd.DataFrame(stats["by_scenario"]).T, "by scenario")
    if "agreement_with_hindsight" in stats:
        agree = ", ".join(
            f"{n} {a:.0%}" for n, a in stats["agreement_with_hindsight"].items() if a is not None
        )
        console.print(f"teacher {stats['teacher']}; decisions agreeing with hindsight: {agree}")
    if stats["held_out_tickers"]:
        console.print(f"named only in the test split: {', '.join(stats['held_out_tickers'])}")
    console.print(
        f"validation from {stats['val_start']}, test from {stats['test_start']}; contexts "
        f"{stats['contexts']}; {time.perf_counter() - started:.1f}s; wrote {out}/"
    )


@dataset_app.command("show")
def dataset_show(
    n: Annotated[int, typer.Argument(help="example number within the split")] = 0,
    data: DataDir = Path("runs/dataset"),
    split: Annotated[str, typer.Option(help="train, validation or test")] = "train",
) -> None:
    """Print one example as the model sees it: system, user and assistant turns."""
    if split not in SPLITS:
        raise ConfigError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}")
    parts = sorted((data / split).glob("part-*.parquet"))
    if not parts:
        raise SynthpmError(f"no {split} examples in {data} (run `synthpm dataset build`)")
    seen = 0
    for part in parts:
        rows = pq.ParquetFile(part).metadata.num_rows
        if n < seen + rows:
            row = pd.read_parquet(part).iloc[n - seen]
            break
        seen += rows
    else:
        raise ConfigError(f"example {n} is out of range: the {split} split has {seen} examples")
    console.rule(
        f"[bold]{row['id']}[/] ({split}, scenario {row['scenario']}, reason {row['reason']})"
    )
    for role in ("system", "user", "assistant"):
        console.print(f"[bold]<{role}>[/]")
        console.print(escape(row[role]), highlight=False, soft_wrap=True)
    console.print(
        f"[dim]realised net excess return (never shown to the model): {row['outcome']:+.2%}"
    )
