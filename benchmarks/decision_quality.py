"""Is the language model's signal worth following? The whole pipeline on a point-in-time
universe, judged on test years it never saw (not a test: it prints figures).

    python benchmarks/decision_quality.py                          # S&P 500 members, 2005-2022
    python benchmarks/decision_quality.py --panel survivorship_free  # IVV holdings, 2013-2018
    python benchmarks/decision_quality.py --model runs/dq/pit/lm   # evaluate a given model

Reads ../shared/data (says so and stops when it is missing) and runs, each step timed:
1. a store: the panel (returns from `adj_close`: dividends included), its point-in-time
   membership, SPY's dividend-adjusted closes as the **total-return** benchmark, the VIX and
   GICS sectors; the universe's coverage (member-days with prices over member-days);
2. features and walk-forward LightGBM forecasts on each date's members (yearly refit);
3. the training conversations, split by date (`PANELS`: validation and test start);
4. the language model, trained on 2 CPU cores for `--steps` (or `--model` given), and its
   conviction calibrated on the validation dates (`lm calibrate`: isotonic, in the folder);
5. `lm eval`: the per-date rank IC of conviction on one scenario per context, with a
   month-block bootstrap t, beside the forecaster's own expected return and reversal;
6. `compare` on the test years, with costs, through one engine: the LM agent, the
   benchmark, equal weight, always-buy, rules, lgbm_topk and hrp; twice, with idle cash
   earning nothing and held in the benchmark (the same for every strategy); per-year
   figures of each (the regimes: 2008, 2020, 2022 where the test years hold them).
Writes `benchmarks/results/decision_quality_<panel>.json` and the run under `--work`.
Settings are the defaults or chosen on validation dates; the test years are read once.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from synthpm.backtest import BacktestConfig, BenchmarkHold, Market, compare
from synthpm.context import Contexts
from synthpm.data.importers import read_source
from synthpm.data.store import Store
from synthpm.data.universe import coverage
from synthpm.dataset import DatasetConfig, build_contexts, build_dataset, decision_points
from synthpm.executor import ExecutorConfig
from synthpm.features import FeatureConfig, PanelInputs, features_cached
from synthpm.forecast import ForecastConfig, walk_forward
from synthpm.limits import Limits
from synthpm.lm.calibrate import Calibration, fit_calibration
from synthpm.lm.evaluate import evaluate
from synthpm.lm.train import TrainConfig, train
from synthpm.metrics import per_year
from synthpm.strategies import make_strategy

# Per panel: its files, how membership is known, and the split dates. The 2013-2018 panel
# is five years long, so its forecasts start after two years of history, not three.
PANELS = {
    "pit_2005_2022": {
        "prices": "us_equities_ohlcv_2005_2022.parquet",
        "universe": ("sp500_membership_1996_2025.csv", {}),
        "min_train_days": 756,
        "val_start": "2016-01-01",
        "test_start": "2019-01-01",
    },
    "survivorship_free": {
        "prices": "us_equities_survivorship_free_2013_2018.parquet",
        "universe": ("us_equities_survivorship_free_2013_2018.parquet", {"from_prices": True}),
        "min_train_days": 504,
        "val_start": "2016-09-01",
        "test_start": "2017-03-01",
    },
}
IDLE_CASH = ("cash", "benchmark")
LM_EVAL = (  # what the result keeps of `lm eval`'s report
    "macro_f1", "scenario_rule_macro_f1", "majority_macro_f1", "faithfulness_rate",
    "faithfulness_failures", "unseen_tickers",
)  # fmt: skip
STRATEGIES = ("equal_weight", "always_buy", "rules", "lgbm_topk", "hrp")
# The dataset's portfolio states: the book with room, a full one, one holding the stock, one
# in drawdown and one over its sector cap (ten per context would be 4M examples here).
SCENARIOS = ("empty", "healthy", "holding", "full", "drawdown", "over_concentrated")


@contextmanager
def timed(name: str, seconds: dict):
    """Log a step and record its wall time."""
    started = time.perf_counter()
    print(f"== {name}", flush=True)
    yield
    seconds[name] = round(time.perf_counter() - started, 1)
    print(f"   {name}: {seconds[name]:.0f}s", flush=True)


def missing(path: Path) -> bool:
    """True, saying so, when the real data a benchmark reads are not there."""
    if path.exists():
        return False
    print(f"skipped: {path} not found (real data lives in ../shared/data beside the ")
    print("repository; a fresh clone has none)")
    return True


def years_of(table: pd.DataFrame, where: Path) -> dict:
    """Per compared strategy (`table`'s columns), its figures per calendar year, read from
    the equity curve `compare` saved under `where`."""
    return {
        name: per_year(
            pd.read_csv(where / name / "equity.csv", index_col="date", parse_dates=True)["equity"]
        ).to_dict("index")
        for name in table.columns
    }


def study_parser(doc: str) -> argparse.ArgumentParser:
    """The arguments of a study of one trained model on this script's work folder."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a trained model folder")
    parser.add_argument("--panel", choices=sorted(PANELS), default="pit_2005_2022")
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, default=Path("runs/decision_quality"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    return parser


def study_inputs(args: argparse.Namespace) -> tuple[dict, Path, dict] | None:
    """A study's panel, work folder and dataset stats, with the model calibrated on
    validation dates as here; None, saying why, when the data or this script's run are
    missing."""
    panel, work = PANELS[args.panel], args.work / args.panel
    if missing(args.shared / panel["prices"]) or missing(work / "dataset" / "stats.json"):
        return None
    if Calibration.load(args.model) is None:
        fit_calibration(args.model, work / "dataset")
    return panel, work, json.loads((work / "dataset" / "stats.json").read_text())


def scheduled_contexts(
    shared: Path, work: Path, panel: dict, start: str | None, end: str
) -> tuple[Contexts, Market]:
    """The scheduled decision dates' contexts from `start` (None: the first forecast) to
    `end` on a panel whose store, features and forecasts this script has already built under
    `work`, and its market."""
    inputs = PanelInputs.from_store(make_store(shared, work / "store.duckdb", panel))
    features = features_cached(inputs, FeatureConfig(), work / ".cache")
    forecasts = pd.read_parquet(work / "forecast" / "forecasts.parquet")
    start = start or str(forecasts.index.get_level_values("date").min().date())
    points = decision_points(features.index, inputs.events, start=start, end=end)
    contexts = build_contexts(inputs, features, forecasts, points[points["trigger"] == "scheduled"])
    return contexts, Market.from_inputs(inputs)


def make_store(shared: Path, path: Path, panel: dict) -> Store:
    if path.exists():
        return Store(path)
    store = Store(path)
    steps = [("parquet", shared / panel["prices"], {})]  # an absolute path stays itself
    if "universe" in panel:  # else every priced ticker is a member
        universe_file, options = panel["universe"]
        steps.append(("universe", shared / universe_file, options))
    steps += [
        ("sectors", shared / "sp500_constituents_now.csv", {}),
        ("sectors", shared / "sp500_constituents_2017.csv", {}),
        (
            "market",
            shared / "us_etfs_adjclose_2005_2022.parquet",
            {"series": "index", "ticker": "SPY", "total_return": True},
        ),
        ("market", shared / "vix_daily.csv", {"series": "vix"}),
    ]
    for kind, source, opts in steps:
        store.write(read_source(kind, source, store=store, **opts))
    return store


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--panel", choices=sorted(PANELS), default="pit_2005_2022")
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, default=Path("runs/decision_quality"))
    parser.add_argument("--model", type=Path, help="a trained model folder (skips training)")
    parser.add_argument("--steps", type=int, default=3000, help="LM training steps (~1 h)")
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--max-examples", type=int, default=400_000)
    parser.add_argument("--calibration-n", type=int, default=2000, help="validation contexts")
    parser.add_argument("--eval-n", type=int, default=500, help="full-mode eval examples")
    parser.add_argument(
        "--held-out-tickers", type=float, default=0.1,
        help="share of tickers kept out of training and validation (faithful on unseen names)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--fresh", action="store_true", help="recompute cached steps")
    args = parser.parse_args()
    panel = PANELS[args.panel]
    if missing(args.shared / panel["prices"]):
        return 0
    work = args.work / args.panel
    work.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    print(f"cores: {os.cpu_count()}; panel {args.panel}; work folder {work}")

    with timed("store", seconds):
        store = make_store(args.shared, work / "store.duckdb", panel)
        inputs = PanelInputs.from_store(store)
        covered = coverage(inputs.universe, inputs.prices)
    print(f"   coverage: {covered['priced_member_days']:,} of {covered['member_days']:,} ")
    print(f"   member-days have prices ({covered['share']:.1%})")
    with timed("features", seconds):
        features = features_cached(inputs, FeatureConfig(), work / ".cache")
    with timed("forecasts", seconds):
        saved = work / "forecast"
        if (saved / "forecasts.parquet").exists() and not args.fresh:
            forecasts = pd.read_parquet(saved / "forecasts.parquet")
            quality = json.loads((saved / "quality.json").read_text())
            print(f"   reusing {saved} (--fresh recomputes)")
        else:
            config = ForecastConfig(min_train_days=panel["min_train_days"])
            result = walk_forward(features, inputs, config, log=lambda _: None)
            result.save(saved)
            forecasts, quality = result.forecasts, result.quality
    first = forecasts.index.get_level_values("date").min()
    with timed("dataset", seconds):
        data = work / "dataset"
        dataset = DatasetConfig(
            start=str(first.date()),
            filings=False,  # no filings in these stores: weekly decisions only
            scenarios=SCENARIOS,
            val_start=panel["val_start"],
            test_start=panel["test_start"],
            held_out_tickers=args.held_out_tickers,
        )
        done = data / "config.json"
        # compared as configs (JSON turns the tuples into lists); one of an older layout differs
        try:
            same = done.exists() and DatasetConfig.model_validate_json(done.read_text()) == dataset
        except ValueError:
            same = False
        if same and not args.fresh:
            stats = json.loads((data / "stats.json").read_text())
            print(f"   reusing {data}")
        else:
            stats = build_dataset(
                inputs, features, forecasts, data, dataset, log=print, executor=ExecutorConfig()
            )
    model = args.model
    if model is None:
        model = work / "lm"
        with timed("lm_train", seconds):
            train(
                data,
                model,
                TrainConfig(
                    depth=args.depth,
                    steps=args.steps,
                    max_examples=args.max_examples,
                    eval_every=max(100, args.steps // 10),
                    save_every=500,
                ),
                log=print,
            )
    with timed("calibrate", seconds):  # on validation dates: seeded, so refitting is cheap
        fit_calibration(model, data, n=args.calibration_n)
    with timed("lm_eval", seconds):
        report = evaluate(model, data, n=args.eval_n)
    with timed("compare", seconds):
        from synthpm.agent import PortfolioAgent

        points = decision_points(features.index, inputs.events, start=panel["test_start"])
        points = points[points["trigger"] == "scheduled"]
        contexts = build_contexts(inputs, features, forecasts, points)
        market = Market.from_inputs(inputs)
        strategies = [PortfolioAgent.load(model), BenchmarkHold()]
        strategies += [make_strategy(name) for name in STRATEGIES]
        tables, years = {}, {}
        for idle in IDLE_CASH:  # the same for every signal source, reported both ways
            run = BacktestConfig(start=stats["test_start"], limits=Limits(), idle_cash=idle)
            where = work / f"compare_idle_{idle}"
            tables[idle] = compare(
                strategies, contexts, market, run, where, log=print, model_evals={"lm": report}
            )
            years[idle] = years_of(tables[idle], where)
    seconds["total"] = round(time.perf_counter() - started, 1)

    dates = market.dates[market.dates >= pd.Timestamp(stats["test_start"])]
    per_date = report["per_date"]["ic"]
    lm_ic = per_date["lm_expected"]
    keys = (
        "sharpe", "sharpe_ci_low", "sharpe_ci_high", "cagr", "max_drawdown",
        "information_ratio", "exposure", "turnover", "trade_count",
    )  # fmt: skip
    document = {
        "panel": args.panel,
        "test_start": stats["test_start"],
        "test_end": str(dates[-1].date()),
        "benchmark": {"name": market.benchmark_name, "kind": market.benchmark_kind},
        "strategies": {
            idle: {
                name: {k: table.loc[k, name] if k in table.index else None for k in keys}
                for name in table.columns
            }
            for idle, table in tables.items()
        },
        "per_year": years,
        "lm_conviction_ic": {k: lm_ic[k] for k in ("mean", "t", "dates", "by_year")},
        "ic_baselines": {k: v for k, v in per_date.items() if not k.startswith("lm")},
        "lm_eval": {k: report[k] for k in LM_EVAL if k in report},
        "coverage": {k: covered[k] for k in ("member_days", "priced_member_days", "share")},
        "dataset": {k: stats[k] for k in ("examples", "val_start", "test_start")},
        "model": str(model),
        "train_steps": None if args.model else args.steps,
        "forecast_rank_ic_1m": quality.get("horizons", {}).get("1m", {}).get("rank_ic"),
        "forecast_rank_ic_1m_by_year": {
            start[:4]: fold["1m"]["rank_ic"] for start, fold in quality["folds"].items()
        },
        "calibration": report.get("calibration"),
        "seconds": seconds,
        "cores": os.cpu_count(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"decision_quality_{args.panel}.json"
    target.write_text(json.dumps(document, indent=1, default=float) + "\n")
    print_tables(document)
    print(f"wrote {target}")
    return 0


def print_tables(doc: dict) -> None:
    print(
        f"\n{doc['panel']}: test {doc['test_start']} .. {doc['test_end']}, benchmark "
        f"{doc['benchmark']['name']} ({doc['benchmark']['kind']}), coverage "
        f"{doc['coverage']['share']:.1%} of member-days"
    )
    wide = pd.option_context(
        "display.width", 200, "display.max_columns", None, "display.float_format", "{:.3f}".format
    )
    with wide:
        for idle, strategies in doc["strategies"].items():
            print(f"\nidle cash held as {idle}:")
            print(pd.DataFrame(strategies).T)
            years = {
                (name, k): {y: row[k] for y, row in by_year.items()}
                for name, by_year in doc["per_year"][idle].items()
                for k in ("return", "sharpe")
            }
            print(f"\nper year (idle cash as {idle}): return and Sharpe")
            print(pd.DataFrame(years).T.unstack(1).swaplevel(axis=1).sort_index(axis=1))
        print("\nforecaster 1m rank IC per year (walk-forward, out of sample):")
        print(pd.Series(doc["forecast_rank_ic_1m_by_year"]).to_string())
        if doc.get("calibration"):
            print("\ncalibration of the LM's conviction on the test split:")
            print(json.dumps(doc["calibration"], indent=1, default=float)[:3000])
    ic = {"lm (expected conviction)": doc["lm_conviction_ic"], **doc["ic_baselines"]}
    print("\nper-date rank IC on the test years (month-block bootstrap t):")
    for name, row in ic.items():
        years = "  ".join(f"{y} {v:+.3f}" for y, v in row.get("by_year", {}).items())
        print(f"  {name:26s} mean {row['mean']:+.4f}  t {row['t']:+.2f}  dates {row['dates']}")
        print(f"  {'':26s} per year: {years}")
    print("\nLM answers on the test split (full mode; unseen_tickers: names never trained on):")
    print(json.dumps(doc["lm_eval"], indent=1, default=float))
    print(f"\nwall time: {doc['seconds']}")


if __name__ == "__main__":
    raise SystemExit(main())
