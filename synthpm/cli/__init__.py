"""The `synthpm` command line (Typer + rich).

`synthpm data ...` manages the store and `synthpm text ...` its dated texts; `features`,
`forecast` and `research` are the analysts' panel, walk-forward forecasts and research tools;
`dataset` builds the language model's training conversations; `synthpm demo` runs the main
job end to end on the embedded default data. Errors synthpm raises on purpose (bad data,
unknown tickers, a missing store) print one clear line and exit with status 2.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from pydantic import ValidationError
from rich.markup import escape

from synthpm import progress
from synthpm.backtest.engine import BacktestConfig
from synthpm.cli.analysts import features_app, forecast_app, forecast_train, research_app
from synthpm.cli.backtest import BASELINES, RunOptions, backtest, compare_command, sweep_command
from synthpm.cli.common import DataSource, command, console, err
from synthpm.cli.data import data_app, data_info, data_init
from synthpm.cli.dataset import dataset_app, dataset_build
from synthpm.cli.journal import decide_command, journal_app
from synthpm.cli.lm import lm_app, lm_calibrate, lm_eval, lm_train
from synthpm.cli.serve import serve_app
from synthpm.cli.text import text_app
from synthpm.columns import FOLD
from synthpm.data.errors import SynthpmError
from synthpm.dataset import DatasetConfig
from synthpm.executor import LOCAL, ExecutorConfig
from synthpm.forecast import ForecastConfig
from synthpm.learn import LEARNERS
from synthpm.limits import Limits
from synthpm.lm.train import TrainConfig, dataset_record, trained_on_other_data

DEMO_STEPS = 500  # about 5 minutes of the tiny model on 2 cores (~24k tokens/s)

app = typer.Typer(
    help="synthpm: a synthetic portfolio manager.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")
app.add_typer(text_app, name="text")
app.add_typer(features_app, name="features")
app.add_typer(forecast_app, name="forecast")
app.add_typer(research_app, name="research")
app.add_typer(dataset_app, name="dataset")
app.add_typer(lm_app, name="lm")
app.add_typer(journal_app, name="journal")
app.add_typer(serve_app, name="serve")
command(app, "backtest")(backtest)
command(app, "compare")(compare_command)
command(app, "sweep")(sweep_command)
command(app, "decide")(decide_command)


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option(help="folder for the demo's store and results")] = Path(
        "runs/demo"
    ),
) -> None:
    """The main job, end to end on the embedded default data (grows as the system does)."""
    out.mkdir(parents=True, exist_ok=True)
    store = out / "store.duckdb"
    source = DataSource(store=store, forecasts=out / "forecast")
    console.rule("[bold]1. data: embedded default store")
    data_init(store)
    data_info(store)
    console.rule("[bold]2. features and walk-forward forecasts (LightGBM, yearly refit)")
    forecast_train(source=source, config=ForecastConfig(), scale=LOCAL, out=source.forecasts)
    console.rule("[bold]3. training data: contexts x 10 portfolio scenarios x hindsight labels")
    first = pd.read_parquet(source.forecasts_file(), columns=[FOLD])
    dataset = DatasetConfig(
        # from the first forecast on: earlier contexts would all read "no forecast yet"
        start=str(first.index.get_level_values("date").min().date()),
        # 20 stocks: a full book of 20 would hold the whole universe, so the demo's limit is 10
        limits=Limits(max_positions=10),
        # 4 of the 20 named only in the test years: the answers' faithfulness on names the
        # model never saw (`lm eval`'s unseen_tickers)
        held_out_tickers=0.2,
    )
    dataset_build(source=source, config=dataset, scale=ExecutorConfig(), out=out / "dataset")
    console.rule("[bold]4. the language model: the tiny default, trained from scratch on CPU")
    # 50k examples drawn across every training date (`sample_split`)
    training = TrainConfig(steps=DEMO_STEPS, max_examples=50_000)
    if trained_on_other_data(out / "lm", dataset_record(out / "dataset")):
        console.print(f"{out / 'lm'} was trained on an earlier dataset: training afresh")
        shutil.rmtree(out / "lm")
    lm_train(data=out / "dataset", out=out / "lm", config=training)
    # conviction as the probability of beating the index over the hold, fitted on validation
    lm_calibrate(out / "lm", data=out / "dataset", n=1000)
    lm_eval(model=out / "lm", data=out / "dataset", n=300)
    test_start = json.loads((out / "dataset" / "stats.json").read_text())["test_start"]
    console.rule(
        f"[bold]5. backtest: the LM agent, the baselines and the learners from {test_start}"
    )
    run = RunOptions(
        source=source,
        # from test_start: the lm strategy is refused on its model's own years
        config=BacktestConfig(start=test_start),
        # no --max-positions: the model's own training limits (10), one truth for both
        param=["lgbm_topk.k=5"],  # a top-k of 20 in a 20-stock universe would be equal weight
        model=out / "lm",
    )
    # the learners train before they trade (about 4 minutes of the demo, PPO the most)
    compare_command(
        strategies=",".join(("lm", *BASELINES, *LEARNERS)), run=run, scale=LOCAL,
        out=out / "compare",
    )  # fmt: skip
    console.print(f"report: {(out / 'compare' / 'report.html').resolve()}")
    console.print(f"\nresults in {out.resolve()}")


def main() -> None:
    progress.enable(sys.stderr.isatty())
    try:
        code = app(standalone_mode=False)  # errors come here, each printed as one line
    except typer.TyperException as exc:  # typer's usage errors: an unknown option, a bad value
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError":  # `synthpm data` alone: its help
            err.print(exc.format_message(), highlight=False)
            sys.exit(2)
        _fail(exc.format_message() + (f" (see {ctx.command_path} --help)" if ctx else ""))
    except typer.Abort:  # Ctrl-C
        sys.exit(130)
    except SynthpmError as exc:
        _fail(str(exc))
    except ValidationError as exc:  # a setting out of its range: name it, skip the traceback
        _fail(
            "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
            )
        )
    except OSError as exc:  # a path the system refuses: too long, no permission, disk full
        _fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
    if isinstance(code, int):  # --help and the like return their exit status
        sys.exit(code)


def _fail(message: str) -> None:
    """One line on stderr, exit status 2: a message that spans lines is joined into one."""
    line = " ".join(message.split())
    err.print(f"[red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
    sys.exit(2)


if __name__ == "__main__":
    main()
