"""The walk-forward driver: expanding window, periodic refit, purged training sets.

Folds. The test periods are consecutive blocks that start on a calendar boundary (every
`refit_months`, January first by default). A fold's model is fitted on every row whose date
lies at least `purge` trading days before the test start, so the targets of the training
rows (which read up to `lookahead` days ahead) end before the test period begins, and
predicts every row of the test period. The first test period is the first with
`min_train_days` of history before it. Training rows are thinned to every `train_stride`-th
trading day: neighbouring days' multi-day targets overlap almost entirely, so the stride
costs little information and saves most of the time.

Return classes. A fold's class edges are the `class_quantiles` of its training rows' excess
returns, per horizon; its class means turn class probabilities into an expected excess
return when the model gives no direct estimate.

Output per (date, ticker), per horizon h (the `Forecasts` schema, docs/design.md §3):
`return_class_h` (one of CLASSES), `confidence_h` (its probability), `expected_return_h`
(excess over the benchmark, as a fraction), `volatility_h` (annualised), `sharpe_h`
(expected excess return annualised over that volatility), `max_drawdown_h` (<= 0); then
`best_horizon` (the horizon of highest `sharpe_h`), `event_prob_<group>` where filings
exist, and `fold` (the test period's start).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from synthpm.columns import (
    BEST_HORIZON,
    FOLD,
    event_prob_group,
    forecast_col,
    prediction_col,
    proba_cols,
    target_col,
)
from synthpm.data.errors import ConfigError, SynthpmError
from synthpm.executor import LOCAL, ExecutorConfig, parallel_map
from synthpm.features.panel import PanelInputs
from synthpm.folders import atomic_folder, write_atomic
from synthpm.forecast.base import CLASSES, HORIZONS, N_CLASSES, ReturnModel
from synthpm.forecast.lgbm import BASE_PARAMS, EventForecaster, LightGBMForecaster
from synthpm.forecast.quality import quality_report
from synthpm.forecast.targets import event_targets, lookahead, return_targets

MODELS = ("lightgbm", "mlp", "lstm")


class ForecastConfig(BaseModel):
    """Walk-forward settings; every field has the default the CLI uses."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    model: Literal[MODELS] = Field("lightgbm", description="lightgbm, mlp or lstm")
    horizons: dict[str, int] = dict(HORIZONS)
    refit_months: int = Field(12, description="months between refits")
    min_train_days: int = Field(756, description="trading days before the first test")  # 3 years
    purge: int | None = None  # trading days; None means the targets' lookahead
    train_stride: int = Field(5, description="train on every n-th trading day")
    class_quantiles: tuple[float, float, float, float] = (0.2, 0.4, 0.6, 0.8)
    seed: int = 0
    model_params: dict = {}

    @model_validator(mode="after")
    def _check(self):
        if not self.horizons:
            raise ConfigError("horizons: none given")
        bad = {k: v for k, v in self.horizons.items() if not (isinstance(v, int) and v >= 1)}
        if bad:
            raise ConfigError(f"horizons must be whole trading days >= 1, got {bad}")
        if self.purge is not None and self.purge < lookahead(self.horizons):
            raise ConfigError(
                f"purge={self.purge} is shorter than the targets' lookahead "
                f"({lookahead(self.horizons)} trading days): training labels would overlap the "
                "test period"
            )
        if self.refit_months < 1 or 12 % self.refit_months:
            raise ConfigError("refit_months must divide 12 (1, 2, 3, 4, 6 or 12)")
        if list(self.class_quantiles) != sorted(self.class_quantiles):
            raise ConfigError("class_quantiles must increase")
        return self

    @property
    def purge_days(self) -> int:
        return self.purge if self.purge is not None else lookahead(self.horizons)

    @property
    def threads(self) -> int:
        """The CPU threads one fold's return model uses (`num_threads`; the nets' default is
        torch's, every core)."""
        default = BASE_PARAMS["num_threads"] if self.model == "lightgbm" else os.cpu_count()
        return int(self.model_params.get("num_threads") or default or 1)


def make_model(config: ForecastConfig) -> ReturnModel:
    horizons = tuple(config.horizons)
    if config.model == "lightgbm":
        return LightGBMForecaster(horizons, seed=config.seed, **config.model_params)
    from synthpm.forecast.nets import MODELS as NETS  # torch only when asked

    return NETS[config.model](
        horizons=horizons, seed=config.seed, purge=config.purge_days, **config.model_params
    )


@dataclass(frozen=True)
class Fold:
    test_start: pd.Timestamp
    test_end: pd.Timestamp  # inclusive
    train_end: pd.Timestamp  # last training date, `purge` trading days before test_start


def make_folds(calendar: pd.DatetimeIndex, config: ForecastConfig) -> list[Fold]:
    """The walk-forward folds over `calendar` (sorted trading dates)."""
    longest = max(config.horizons.items(), key=lambda kv: kv[1])
    need = config.min_train_days + config.purge_days + 1
    if longest[1] >= len(calendar) or len(calendar) < need:
        raise ConfigError(
            f"the data has {len(calendar)} trading days: too short for horizon {longest[0]} "
            f"({longest[1]} days) with min_train_days={config.min_train_days} and a purge of "
            f"{config.purge_days} (needs at least {need})"
        )
    first = calendar[config.min_train_days + config.purge_days]
    step = pd.DateOffset(months=config.refit_months)
    boundary = pd.Timestamp(first.year, 1, 1)
    while boundary < first:
        boundary += step
    folds = []
    while boundary <= calendar[-1]:
        nxt = boundary + step
        in_test = (calendar >= boundary) & (calendar < nxt)
        if in_test.any():
            start_pos = int(np.argmax(in_test))
            folds.append(
                Fold(
                    calendar[start_pos],
                    calendar[in_test][-1],
                    calendar[start_pos - config.purge_days - 1],
                )
            )
        boundary = nxt
    if not folds:
        raise ConfigError("no test period after the minimum training window")
    return folds


def class_edges(excess: np.ndarray, quantiles) -> np.ndarray:
    return np.quantile(excess[~np.isnan(excess)], quantiles)


def to_class(excess: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Class index 0..4 by the edges (NaN stays NaN)."""
    out = np.searchsorted(edges, excess, side="right").astype(np.float64)
    out[np.isnan(excess)] = np.nan
    return out


class FoldTargets(NamedTuple):
    targets: pd.DataFrame  # with `class_h` added
    edges: dict[str, list[float]]  # per horizon, the four class edges
    means: dict[str, list[float]]  # per horizon, the mean excess return of each class


def with_classes(targets: pd.DataFrame, config: ForecastConfig) -> FoldTargets:
    """A fold's training targets with `class_h` added, its class edges and class means."""
    out = targets.copy()
    edges: dict[str, list[float]] = {}
    means: dict[str, list[float]] = {}
    for h in config.horizons:
        excess = out[target_col("excess", h)].to_numpy()
        edges[h] = class_edges(excess, config.class_quantiles).tolist()
        classes = to_class(excess, np.asarray(edges[h]))
        out[target_col("class", h)] = classes
        means[h] = [float(excess[classes == k].mean()) for k in range(len(CLASSES))]
    out.attrs["class_edges"] = edges
    return FoldTargets(out, edges, means)


def assemble(raw: pd.DataFrame, fold: dict, horizons: dict[str, int]) -> pd.DataFrame:
    """Model output → the forecast schema (see module docstring)."""
    out = pd.DataFrame(index=raw.index)
    sharpe = []
    for h, days in horizons.items():
        proba = raw[proba_cols(h, N_CLASSES)].to_numpy()
        best = proba.argmax(axis=1)
        out[forecast_col("return_class", h)] = pd.Categorical.from_codes(best, CLASSES)
        out[forecast_col("confidence", h)] = proba.max(axis=1)
        if prediction_col("ret", h) in raw:
            expected = raw[prediction_col("ret", h)].to_numpy()
        else:
            expected = proba @ np.asarray(fold["class_means"][h])
        out[forecast_col("expected_return", h)] = expected
        volatility = raw[prediction_col("vol", h)].to_numpy()
        out[forecast_col("volatility", h)] = volatility
        with np.errstate(divide="ignore", invalid="ignore"):
            out[forecast_col("sharpe", h)] = expected * (252.0 / days) / volatility
        out[forecast_col("max_drawdown", h)] = raw[prediction_col("mdd", h)].to_numpy()
        sharpe.append(out[forecast_col("sharpe", h)].to_numpy())
    names = np.array(list(horizons))
    out[BEST_HORIZON] = pd.Categorical(
        names[np.nan_to_num(np.vstack(sharpe), nan=-np.inf).argmax(axis=0)], categories=names
    )
    for col in raw.columns:
        if event_prob_group(col) is not None:
            out[col] = raw[col].to_numpy()
    out[FOLD] = fold["test_start"]
    return out


class FoldModels(NamedTuple):
    """One fold's fitted models: the return forecaster and the event forecaster."""

    returns: ReturnModel
    events: EventForecaster


@dataclass
class WalkForward:
    """A finished walk-forward run: forecasts, quality, and the fitted fold models."""

    config: ForecastConfig
    forecasts: pd.DataFrame
    quality: dict
    folds: list[dict]
    models: list[FoldModels] = field(repr=False, default_factory=list)

    def save(self, out: str | Path) -> Path:
        """The run folder, written whole or not at all (a killed save leaves the earlier run)."""
        with atomic_folder(out, "forecasts.parquet") as partial:
            self.forecasts.to_parquet(partial / "forecasts.parquet")
            (partial / "quality.json").write_text(json.dumps(self.quality, indent=1, default=str))
            (partial / "config.json").write_text(self.config.model_dump_json(indent=1))
            (partial / "folds.json").write_text(json.dumps(self.folds, indent=1, default=str))
            for fold, (model, events) in zip(self.folds, self.models, strict=True):
                where = partial / "models" / str(fold["test_start"])[:10]
                model.save(where / "returns")
                events.save(where / "events")
        return Path(out)


def walk_forward(
    panel: pd.DataFrame,
    inputs: PanelInputs,
    config: ForecastConfig | None = None,
    progress=None,
    log=print,
    folds: list[Fold] | None = None,
    executor: ExecutorConfig = LOCAL,
) -> WalkForward:
    """Fit and predict every fold (or the `folds` given, of `make_folds`); `panel` from
    `build_features(inputs, ...)`. The folds are independent: `executor` runs them in
    parallel, with the same result as one after the other."""
    config = config or ForecastConfig()
    if panel.empty:
        raise ConfigError("empty universe: the feature panel has no rows")
    dates = panel.index.get_level_values("date")
    calendar = pd.DatetimeIndex(dates.unique()).sort_values()
    folds = make_folds(calendar, config) if folds is None else folds
    targets = return_targets(inputs, panel.index, config.horizons)
    events = event_targets(inputs, panel.index)
    thinned = calendar.get_indexer(dates) % config.train_stride == 0
    complete = targets.notna().all(axis=1).to_numpy()
    job = _FoldJob(panel, targets, events, dates, thinned, complete, config)
    pieces, fold_info, models = [], [], []
    done = parallel_map(_fit_fold, job, folds, executor, config.threads)
    for piece, info, fitted in progress(done, total=len(folds)) if progress else done:
        pieces.append(piece)
        fold_info.append(info)
        models.append(fitted)
        log(
            f"fold {info['test_start']}..{info['test_end']}: {info['train_rows']:,} training "
            f"rows, {info['test_rows']:,} forecasts, {info['seconds']} s"
        )
    forecasts = pd.concat(pieces)
    quality = quality_report(forecasts, targets, events, fold_info, config.horizons)
    return WalkForward(config, forecasts, quality, fold_info, models)


class _FoldJob(NamedTuple):
    """What every fold reads (shipped to each worker once)."""

    panel: pd.DataFrame
    targets: pd.DataFrame
    events: pd.DataFrame
    dates: pd.DatetimeIndex
    thinned: np.ndarray  # rows on the training stride
    complete: np.ndarray  # rows with every target
    config: ForecastConfig


def _fit_fold(job: _FoldJob, fold: Fold) -> tuple[pd.DataFrame, dict, FoldModels]:
    """One fold: fit on its purged training rows, predict its test period."""
    started = time.perf_counter()
    panel, dates, config = job.panel, job.dates, job.config
    train = np.flatnonzero((dates <= fold.train_end) & job.thinned & job.complete)
    test = np.flatnonzero((dates >= fold.test_start) & (dates <= fold.test_end))
    fold_targets, edges, means = with_classes(job.targets.iloc[train], config)
    info = {
        "test_start": str(fold.test_start.date()),
        "test_end": str(fold.test_end.date()),
        "train_end": str(fold.train_end.date()),
        "train_rows": len(train),
        "test_rows": len(test),
        "class_edges": edges,
        "class_means": means,
    }
    model = make_model(config).fit(panel, train, fold_targets)
    event_train = np.flatnonzero((dates <= fold.train_end) & job.thinned)
    # LightGBM, with the return model's `num_threads` where one is set (a fit's bits depend on it)
    threads = config.model_params.get("num_threads", BASE_PARAMS["num_threads"])
    event_model = EventForecaster(seed=config.seed, num_threads=threads).fit(
        panel, event_train, job.events.iloc[event_train]
    )
    raw = pd.concat([model.predict(panel, test), event_model.predict(panel, test)], axis=1)
    piece = assemble(raw, info, config.horizons)
    info["seconds"] = round(time.perf_counter() - started, 2)
    return piece, info, FoldModels(model, event_model)


class SavedRun(NamedTuple):
    """A `forecast train` folder: its config, its folds as `folds.json` records them."""

    path: Path
    config: ForecastConfig
    folds: list[dict]

    @classmethod
    def read(cls, run: str | Path) -> SavedRun:
        run = Path(run)
        if not (run / "config.json").exists():
            raise SynthpmError(
                f"{run} is not a forecast run: no config.json (run `forecast train`)"
            )
        config = ForecastConfig.model_validate_json((run / "config.json").read_text())
        return cls(run, config, json.loads((run / "folds.json").read_text()))

    def fold_models(self, start: str) -> FoldModels:
        where = self.path / "models" / start
        if self.config.model == "lightgbm":
            returns = LightGBMForecaster.load(where / "returns")
        else:
            from synthpm.forecast.nets import load_net  # torch only when asked

            returns = load_net(where / "returns")
        return FoldModels(returns, EventForecaster.load(where / "events"))

    def current(self, panel: pd.DataFrame, inputs: PanelInputs, log=print) -> SavedRun:
        """The run with a fold for every refit period the panel's dates reach. A period that
        began after the run was fitted (the live loop's first day of a new year) gets its
        fold now, fitted as `walk_forward` fits it (on the dates before it, purged: the same
        model a later run would fit), and saved into the run."""
        calendar = pd.DatetimeIndex(panel.index.get_level_values("date").unique()).sort_values()
        have = {f["test_start"] for f in self.folds}
        missing = [f for f in make_folds(calendar, self.config)
                   if str(f.test_start.date()) not in have]  # fmt: skip
        if not missing:
            return self
        fitted = walk_forward(panel, inputs, self.config, log=log, folds=missing)
        for info, (model, events) in zip(fitted.folds, fitted.models, strict=True):
            final = self.path / "models" / info["test_start"]
            partial = final.with_name(final.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            model.save(partial / "returns")
            events.save(partial / "events")
            shutil.rmtree(final, ignore_errors=True)
            partial.rename(final)
        folds = sorted([*self.folds, *fitted.folds], key=lambda f: f["test_start"])
        record = self.path / "folds.json"
        write_atomic(record, json.dumps(folds, indent=1, default=str))  # the models, then this
        return SavedRun(self.path, self.config, folds)

    def predict(self, panel: pd.DataFrame, wanted: np.ndarray) -> pd.DataFrame:
        """Forecasts of the `wanted` rows of `panel` (a boolean mask), each date by the
        latest model fitted before it: the fold whose test period contains it, or the last
        fold for later dates; never one that saw its future."""
        dates = panel.index.get_level_values("date")
        first = pd.Timestamp(self.folds[0]["test_start"])
        if (dates[wanted] < first).any():
            raise SynthpmError(
                f"no model of {self.path} was fitted before {dates[wanted].min().date()}; "
                f"the first forecastable date is {first.date()}"
            )
        starts = pd.DatetimeIndex([f["test_start"] for f in self.folds])
        which = starts.searchsorted(dates, side="right") - 1
        pieces = []
        for k, fold in enumerate(self.folds):
            rows = np.flatnonzero(wanted & (which == k))
            if len(rows):
                returns, events = self.fold_models(fold["test_start"])
                raw = pd.concat([returns.predict(panel, rows), events.predict(panel, rows)], axis=1)
                pieces.append(assemble(raw, fold, self.config.horizons))
        if not pieces:
            raise SynthpmError("no rows to forecast")
        return pd.concat(pieces).sort_index()
