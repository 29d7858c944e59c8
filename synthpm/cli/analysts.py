"""`synthpm features|forecast|research ...`: the analysts' panel, forecasts and research tools."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer

from synthpm import progress
from synthpm.cli.common import (
    DataSource,
    Opt,
    Scale,
    StoreOption,
    command,
    console,
    options,
    print_frame,
    store_at,
)
from synthpm.columns import BEST_HORIZON, FOLD, forecast_col
from synthpm.data.errors import ConfigError
from synthpm.data.validate import IsoDate
from synthpm.features import FeatureConfig, PanelInputs, features_cached
from synthpm.features.panel import family_columns
from synthpm.folders import atomic_file, write_atomic
from synthpm.forecast import ForecastConfig, walk_forward
from synthpm.forecast.quality import quality_table
from synthpm.forecast.walkforward import MODELS, SavedRun

features_app = typer.Typer(help="The point-in-time feature panel.", no_args_is_help=True)
forecast_app = typer.Typer(help="Walk-forward analyst forecasts.", no_args_is_help=True)
research_app = typer.Typer(
    help="Research tools: scan, correlate, ablate, shap.", no_args_is_help=True
)

# where the panel comes from: with a choice of features, or all of them (predict, research)
PanelSource = Annotated[
    DataSource, options("store", "tickers", "start", "end", "features", "cache")
]
DatedSource = Annotated[DataSource, options("store", "tickers", "start", "end", "cache")]
RunDir = Annotated[Path, typer.Option("--run", help="a `forecast train` output folder")]


def _split(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def parse_params(items: list[str]) -> dict:
    """KEY=VALUE settings; a VALUE that parses as JSON (numbers, true) is taken as such."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param wants KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@dataclass(frozen=True)
class Loaded:
    """A source's inputs and their (date, ticker) feature panel."""

    inputs: PanelInputs
    panel: pd.DataFrame


def load_panel(source: DataSource) -> Loaded:
    """Store → inputs → cached feature panel, with a spinner and a bar over tickers."""
    target = store_at(source.store)
    names = _split(source.features)
    config = FeatureConfig(features=tuple(names) if names else None)
    with console.status(f"reading {target.path}"):
        inputs = PanelInputs.from_store(target, _split(source.tickers), source.start, source.end)
    started = time.perf_counter()
    panel = features_cached(
        inputs,
        config,
        source.cache if source.cache is not None else target.path.parent / ".synthpm-cache",
        lambda it, total: progress.track(it, "features", total=total),
    )
    tickers_n = panel.index.get_level_values("ticker").nunique()
    console.print(
        f"features: {len(panel):,} rows x {panel.shape[1]} columns, {tickers_n} tickers "
        f"({time.perf_counter() - started:.1f}s)"
    )
    return Loaded(inputs, panel)


@command(features_app, "build")
def features_build(
    *,
    source: PanelSource,
    out: Annotated[Path, typer.Option(help="Parquet file to write")] = Path(
        "runs/features.parquet"
    ),
) -> None:
    """Build the (date, ticker) feature panel; every value uses data known by its date."""
    panel = load_panel(source).panel
    with atomic_file(out) as tmp:
        panel.to_parquet(tmp)
    console.print(f"wrote {out}")


def _model_name(name: str) -> str:
    if name not in MODELS:
        raise ConfigError(f"--model must be {', '.join(MODELS[:-1])} or {MODELS[-1]}, not {name!r}")
    return name


WalkForwardOptions = Annotated[
    ForecastConfig,
    options(
        "model",
        "refit_months",
        "min_train_days",
        "train_stride",
        "seed",
        "model_params",
        model=Opt(type=str, parse=_model_name),
        train_stride=Opt(flag="stride"),
        model_params=Opt(
            flag="param",
            type=list[str] | None,
            default=None,
            help="model setting KEY=VALUE, repeatable (e.g. loss=sign_ratio, rounds=200)",
            parse=lambda items: parse_params(items or []),
        ),
    ),
]


@command(forecast_app, "train")
def forecast_train(
    *,
    source: PanelSource,
    config: WalkForwardOptions,
    scale: Scale,
    out: Annotated[Path, typer.Option(help="output folder")] = Path("runs/forecast"),
) -> None:
    """Walk-forward: fit per fold, forecast out of sample, write forecasts and quality."""
    loaded = load_panel(source)
    started = time.perf_counter()
    result = walk_forward(
        loaded.panel,
        loaded.inputs,
        config,
        progress=lambda it, total: progress.track(it, "folds", total=total),
        log=console.print,
        executor=scale,
    )
    result.save(out)
    seconds = time.perf_counter() - started
    print_frame(quality_table(result.quality), "out-of-sample forecast quality")
    console.print(f"walk-forward {seconds:.1f}s; wrote {out}/ (forecasts.parquet, quality.json)")


@command(forecast_app, "predict")
def forecast_predict(
    *,
    run: RunDir,
    source: DatedSource,
    out: Annotated[Path | None, typer.Option(help="Parquet file [default: print]")] = None,
) -> None:
    """Forecasts for dates in [start, end] from the run's saved fold models.

    Each date is forecast by the latest model fitted before it (the fold whose test period
    contains it, or the last fold for later dates), never by one that saw its future.
    """
    saved = SavedRun.read(run)
    start = source.start
    lead = None if start is None else str((pd.Timestamp(start) - pd.Timedelta(days=550)).date())
    panel = load_panel(source.model_copy(update={"start": lead})).panel
    dates = panel.index.get_level_values("date")
    wanted = np.ones(len(panel), bool) if start is None else dates >= pd.Timestamp(start)
    forecasts = saved.predict(panel, wanted)
    config = saved.config
    if out:
        with atomic_file(out) as tmp:
            forecasts.to_parquet(tmp)
        console.print(f"wrote {len(forecasts):,} forecasts to {out}")
    else:
        show = [forecast_col(f, h) for h in config.horizons for f in ("return_class", "confidence")]
        print_frame(forecasts[[*show, BEST_HORIZON]].tail(20), "latest forecasts", 3)


@forecast_app.command("report")
def forecast_report(
    run: RunDir,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON report")] = False,
) -> None:
    """The out-of-sample quality of a run: overall per horizon, then rank IC per fold."""
    SavedRun.read(run)
    quality = json.loads((run / "quality.json").read_text())
    if as_json:
        print(json.dumps(quality, indent=1))
        return
    print_frame(quality_table(quality), "out-of-sample forecast quality (all folds)")
    per_fold = pd.DataFrame(
        {
            fold: {h: m.get("rank_ic") for h, m in hs.items()}
            for fold, hs in quality["folds"].items()
        }
    ).T.rename_axis(FOLD)
    print_frame(per_fold, "rank IC per fold")
    if quality.get("events"):
        print_frame(pd.DataFrame(quality["events"]).T.rename_axis("event"), "event probabilities")


@research_app.command("scan")
def research_scan(
    ticker: Annotated[str, typer.Argument(help="start ticker")],
    n: Annotated[int, typer.Option(help="how many tickers to select")] = 10,
    as_of: Annotated[IsoDate | None, typer.Option(help="use returns up to this date")] = None,
    window: Annotated[int, typer.Option(help="trading days of returns")] = 252,
    store: StoreOption = None,
) -> None:
    """Greedy least-correlated tickers, starting from one."""
    from synthpm.research import least_correlated

    closes = store_at(store).closes(end=as_of)
    picked = least_correlated(closes, ticker.upper(), n=n, as_of=as_of, window=window)
    print_frame(picked.set_index("step"), f"least correlated with {ticker.upper()}", 3)


@command(research_app, "correlate")
def research_correlate(
    *,
    source: DatedSource,
    top: Annotated[int, typer.Option(help="rows to print")] = 25,
    family: Annotated[
        str | None, typer.Option(help="only this family's features (e.g. text)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="CSV file for the whole table")] = None,
) -> None:
    """Feature-label rank IC per horizon (mean daily cross-sectional Spearman)."""
    from synthpm.forecast.targets import return_targets
    from synthpm.research import feature_label_correlation

    loaded = load_panel(source)
    panel = loaded.panel
    if family is not None:
        panel = panel[family_columns(panel, family)]
    targets = return_targets(loaded.inputs, panel.index)
    table = feature_label_correlation(panel, targets)
    print_frame(table.head(top), "feature-label rank IC", 4)
    if out:
        write_atomic(out, table.to_csv())
        console.print(f"wrote {out}")


@command(research_app, "ablate")
def research_ablate(
    *,
    source: DatedSource,
    horizon: Annotated[str, typer.Option(help="1d, 1w, 1m or 3m")] = "1m",
    by: Annotated[str, typer.Option(help="family or feature")] = "family",
    test_start: Annotated[IsoDate | None, typer.Option(help="first test date")] = None,
    out: Annotated[Path | None, typer.Option(help="CSV file")] = None,
) -> None:
    """Drop each feature family (or feature), refit, and report the change in loss, F1, IC."""
    from synthpm.forecast.base import HORIZONS
    from synthpm.forecast.targets import return_targets
    from synthpm.research import ablation

    if horizon not in HORIZONS:
        raise ConfigError(f"--horizon must be one of {', '.join(HORIZONS)}, not {horizon!r}")
    loaded = load_panel(source)
    targets = return_targets(loaded.inputs, loaded.panel.index, {horizon: HORIZONS[horizon]})
    table = ablation(
        loaded.panel,
        targets,
        horizon=horizon,
        by=by,
        test_start=test_start,
        progress=lambda it, total: progress.track(it, "ablation", total=total),
    )
    print_frame(
        table.drop(columns="features_dropped").set_index("dropped"), f"ablation, {horizon}", 4
    )
    if out:
        write_atomic(out, table.to_csv(index=False))
        console.print(f"wrote {out}")


@command(research_app, "shap")
def research_shap(
    *,
    run: RunDir,
    source: Annotated[DataSource, options("store", "cache")],
    horizon: Annotated[str, typer.Option(help="1d, 1w, 1m or 3m")] = "1m",
    top: Annotated[int, typer.Option(help="rows to print")] = 20,
) -> None:
    """Mean |SHAP| per feature of the run's last LightGBM fold, over its test period."""
    saved = SavedRun.read(run)
    config, folds = saved.config, saved.folds
    if config.model != "lightgbm":
        raise ConfigError(f"SHAP values need a lightgbm run; {run} used {config.model}")
    if horizon not in config.horizons:
        raise ConfigError(f"--horizon must be one of {', '.join(config.horizons)}")
    fold = folds[-1]
    returns, _ = saved.fold_models(fold["test_start"])
    lead = str((pd.Timestamp(fold["test_start"]) - pd.Timedelta(days=550)).date())
    panel = load_panel(source.model_copy(update={"start": lead, "end": fold["test_end"]})).panel
    dates = panel.index.get_level_values("date")
    rows = np.flatnonzero(dates >= pd.Timestamp(fold["test_start"]))
    table = returns.shap_values(panel, rows, horizon)
    print_frame(
        table.head(top).set_index("feature"), f"SHAP, {horizon}, fold {fold['test_start']}", 6
    )
