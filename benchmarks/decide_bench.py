"""`decide` on a 500-name universe for one date (not a test: it prints figures).

    python benchmarks/decide_bench.py [--date 2019-12-27] [--model runs/demo/lm]

Reads ../shared/data (says so and stops when it is missing): the point-in-time S&P 500
store of `benchmarks/decision_quality.py` (reused from its work folder when there), one
walk-forward fold fitted on every date before D's year (the model `decide` would use on D),
then times each stage of `decide` for D: the store read as of D, the feature panel, D's
forecasts, D's contexts, and the strategy with the portfolio manager, for the `rules`
baseline and, with `--model`, the language model in signal-only mode. Nothing is journaled.
Writes `benchmarks/results/decide_bench.json`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from synthpm.backtest.engine import BacktestConfig
from synthpm.backtest.market import Market
from synthpm.dataset import build_contexts
from synthpm.features import FeatureConfig, PanelInputs, build_features
from synthpm.forecast import ForecastConfig, walk_forward
from synthpm.forecast.walkforward import SavedRun
from synthpm.journal.live import Today, decide, points_on
from synthpm.limits import Limits
from synthpm.strategies import make_strategy

RESULTS = Path(__file__).parent / "results" / "decide_bench.json"


def fit_fold_for(store, day: pd.Timestamp, run: Path) -> None:
    """One walk-forward fold in `run`, fitted on every date before D's year: the model
    `decide` would use on D."""
    inputs = PanelInputs.from_store(store, end=day)
    features = build_features(inputs, FeatureConfig())
    dates = features.index.get_level_values("date").unique()
    before = int((dates < pd.Timestamp(day.year, 1, 1)).sum())
    purge = ForecastConfig().purge_days  # the first test period is then D's year
    config = ForecastConfig(min_train_days=before - 1 - purge, refit_months=12)
    walk_forward(features, inputs, config, log=print).save(run)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--date", default="2019-12-27")
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, default=Path("runs/decision_quality/pit_2005_2022"))
    parser.add_argument("--model", type=Path, help="a trained model folder: also time the lm")
    args = parser.parse_args()
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from decision_quality import PANELS, make_store

    panel = PANELS["pit_2005_2022"]
    if not (args.shared / panel["prices"]).exists():
        print(f"skipped: {args.shared / panel['prices']} not found (real data lives in ")
        print("../shared/data beside the repository; a fresh clone has none)")
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    day = pd.Timestamp(args.date)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    store = make_store(args.shared, args.work / "store.duckdb", panel)
    seconds["store_build_or_open"] = time.perf_counter() - t
    run = args.work / f"forecast_for_{day.year}"
    if not (run / "folds.json").exists():
        t = time.perf_counter()
        fit_fold_for(store, day, run)
        seconds["fold_fit"] = time.perf_counter() - t

    t = time.perf_counter()
    inputs = PanelInputs.from_store(store, end=day)
    seconds["read_store_as_of_D"] = time.perf_counter() - t
    t = time.perf_counter()
    features = build_features(inputs, FeatureConfig())
    seconds["features"] = time.perf_counter() - t
    t = time.perf_counter()
    dates = features.index.get_level_values("date")
    predicted = SavedRun.read(run).predict(features, np.asarray(dates == day))
    seconds["forecasts_of_D"] = time.perf_counter() - t
    t = time.perf_counter()
    points = points_on(features, inputs.events, day)
    contexts = build_contexts(inputs, features, predicted, points)
    today = Today(day, inputs, contexts, Market.from_inputs(inputs), features, predicted)
    seconds["contexts_and_market"] = time.perf_counter() - t
    config = BacktestConfig(limits=Limits())
    strategies = [make_strategy("rules")]
    if args.model:
        from synthpm.agent import PortfolioAgent
        from synthpm.lm.heap import keep_freed_memory

        keep_freed_memory()
        strategies.append(PortfolioAgent.load(args.model, mode="signal"))
    for strategy in strategies:
        t = time.perf_counter()
        decided = decide(store, strategy, today, source=strategy.name, account=f"bench-{day}",
                         config=config)  # fmt: skip
        seconds[f"decide_{strategy.name}"] = time.perf_counter() - t
        acted = sum(r["decision"] != "SKIP" for r in decided.rows)
        print(f"{strategy.name}: {len(decided.rows)} decisions, {acted} not SKIP, "
              f"{len(decided.orders)} orders")  # fmt: skip
    figures = {
        "date": str(day.date()),
        "names_decided": len(contexts),
        "tickers_in_store": int(inputs.prices["ticker"].nunique()),
        "price_rows_as_of_D": len(inputs.prices),
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "model": str(args.model) if args.model else None,
    }
    RESULTS.write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
