"""The learning strategies against the baselines, on the point-in-time S&P 500 panel (not a
test: it prints figures).

    python benchmarks/learners.py       # the test years 2019-2022, and the paper's window
    python benchmarks/learners.py --seeds 3 --lm runs/decision_quality/pit_2005_2022/lm

Reads ../shared/data (says so and stops when it is missing); reuses the store and the
walk-forward forecasts of `benchmarks/decision_quality.py` in --work (computing them when
absent). Then, on 2 cores:
1. training times: one yearly fit of Q-learning, of PPO per seed, and the online
   optimiser's pretraining and its monthly step;
2. `compare` on the test years, through one engine with costs: qlearn, PPO per seed (the
   median and spread are printed), online_lora, the benchmark (SPY, total return),
   equal weight and lgbm_topk (and the LM when --lm names a model trained on this panel),
   with the per-year figures;
3. the online optimiser on the paper's own window, 2009-06-01 .. 2019-12-31 (100 names by
   liquidity, monthly), beside the paper's reported figures (tuned in sample, on data we
   do not have: Chronos-T5-Large, 61 TA-Lib indicators).
Writes `benchmarks/results/learners_<panel>.json` and the runs under --work.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from decision_quality import PANELS, make_store, missing, timed, years_of

from synthpm.backtest import BacktestConfig, compare
from synthpm.cli.backtest import RunOptions, prepare
from synthpm.cli.common import DataSource
from synthpm.features import FeatureConfig, PanelInputs, features_cached
from synthpm.forecast import ForecastConfig, walk_forward

PAPER = {"window": ["2009-06-01", "2019-12-31"], "cagr": 0.1444, "sp500_cagr": 0.1231,
         "sharpe": 0.793, "max_drawdown": -0.169}  # fmt: skip
KEYS = (
    "sharpe", "sharpe_ci_low", "sharpe_ci_high", "cagr", "total_return", "max_drawdown",
    "turnover", "trade_count", "exposure",
)  # fmt: skip


def ensure_forecasts(shared: Path, work: Path, panel: dict) -> None:
    """The store and walk-forward forecasts decision_quality.py uses, made when absent."""
    store = make_store(shared, work / "store.duckdb", panel)
    if (work / "forecast" / "forecasts.parquet").exists():
        return
    inputs = PanelInputs.from_store(store)
    features = features_cached(inputs, FeatureConfig(), work / ".cache")
    config = ForecastConfig(min_train_days=panel["min_train_days"])
    walk_forward(features, inputs, config, log=print).save(work / "forecast")


def timed_calls(strategy) -> list[float]:
    """Seconds of each `weights` call of a rule, recorded as the compare runs it."""
    calls: list[float] = []
    inner = strategy.weights

    def weights(*args, **kwargs):
        started = time.perf_counter()
        out = inner(*args, **kwargs)
        calls.append(time.perf_counter() - started)
        return out

    strategy.weights = weights
    return calls


def online_seconds(calls: list[float]) -> dict:
    """The first call pretrains; each later one is the monthly LoRA step and the weights."""
    return {
        "pretraining_and_first_month": round(calls[0], 1),
        "monthly_step_median": round(statistics.median(calls[1:]), 3),
        "months": len(calls),
    }


def table_of(frame: pd.DataFrame, where: Path) -> tuple[dict, dict]:
    figures = {
        name: {k: frame.loc[k, name] if k in frame.index else None for k in KEYS}
        for name in frame.columns
    }
    return figures, years_of(frame, where)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--panel", choices=["pit_2005_2022"], default="pit_2005_2022")
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, default=Path("runs/decision_quality"))
    parser.add_argument("--seeds", type=int, default=3, help="PPO seeds")
    parser.add_argument("--timesteps", type=int, default=20_000, help="PPO steps per fit")
    parser.add_argument("--lm", type=Path, help="an LM trained on this panel, to compare too")
    parser.add_argument("--skip-paper", action="store_true", help="skip the paper's window")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    panel = PANELS[args.panel]
    if missing(args.shared / panel["prices"]):
        return 0
    work = args.work / args.panel
    work.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    print(f"cores: {os.cpu_count()}; panel {args.panel}; work folder {work}")
    with timed("store_and_forecasts", seconds):
        ensure_forecasts(args.shared, work, panel)
    source = DataSource(
        store=work / "store.duckdb", forecasts=work / "forecast", cache=work / ".cache"
    )
    test_start = panel["test_start"]
    names = [
        "benchmark",
        "equal_weight",
        "lgbm_topk",
        "qlearn",
        *["ppo"] * args.seeds,
        "online_lora",
    ]
    names += ["lm"] if args.lm else []
    params = [f"ppo.timesteps={args.timesteps}"]
    with timed("prepare", seconds):
        run = RunOptions(source=source, config=BacktestConfig(start=test_start), param=params,
                         model=args.lm or Path("runs/lm"))  # fmt: skip
        ready = prepare(names, run)
    ppo = [s for s in ready.strategies if s.name == "ppo"]
    for seed, rule in enumerate(ppo):  # one strategy per seed, named apart
        rule.seed, rule.name = seed, f"ppo_seed{seed}"
    first = pd.Timestamp(ready.start)
    fits: dict[str, float] = {}
    for strategy in ready.strategies:  # one yearly fit each, timed; the compare reuses it
        if strategy.name.startswith(("qlearn", "ppo")):
            started = time.perf_counter()
            strategy.model_for(first)
            fits[strategy.name] = round(time.perf_counter() - started, 1)
            print(f"   {strategy.name}: one yearly fit {fits[strategy.name]:.0f}s", flush=True)
    online = next(s for s in ready.strategies if s.name == "online_lora")
    calls = timed_calls(online)
    with timed("compare", seconds):
        frame = compare(ready.strategies, ready.contexts, ready.market, ready.config,
                        work / "compare_learners", log=print)  # fmt: skip
    figures, years = table_of(frame, work / "compare_learners")
    sharpes = [figures[r.name]["sharpe"] for r in ppo]
    ppo_spread = {
        "median_sharpe": statistics.median(sharpes),
        "min_sharpe": min(sharpes),
        "max_sharpe": max(sharpes),
        "median_cagr": statistics.median(figures[r.name]["cagr"] for r in ppo),
    }
    online_times = online_seconds(calls)
    paper = None
    if not args.skip_paper:
        with timed("paper_window", seconds):
            start, end = PAPER["window"]
            run = RunOptions(source=source, config=BacktestConfig(start=start, end=end),
                             param=["equal_weight.every=month"])  # fmt: skip
            window = prepare(["benchmark", "equal_weight", "online_lora"], run)
            window_calls = timed_calls(window.strategies[-1])
            paper_frame = compare(window.strategies, window.contexts, window.market,
                                  window.config, work / "paper_window", log=print)  # fmt: skip
            paper_figures, paper_years = table_of(paper_frame, work / "paper_window")
            paper = {"ours": paper_figures, "per_year": paper_years, "paper": PAPER,
                     "online_lora_seconds": online_seconds(window_calls)}  # fmt: skip
    document = {
        "panel": args.panel,
        "test_start": ready.start,
        "test_end": str(ready.market.dates[-1].date()),
        "benchmark": {"name": ready.market.benchmark_name, "kind": ready.market.benchmark_kind},
        "strategies": figures,
        "per_year": years,
        "ppo_seeds": ppo_spread,
        "fit_seconds": fits,
        "online_lora_seconds": online_times,
        "paper_window": paper,
        "settings": {"ppo_timesteps": args.timesteps, "seeds": args.seeds, "lm": str(args.lm)},
        "seconds": seconds,
        "cores": os.cpu_count(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"learners_{args.panel}.json"
    target.write_text(json.dumps(document, indent=1, default=float) + "\n")
    with pd.option_context("display.width", 200, "display.max_columns", None,
                           "display.float_format", "{:.3f}".format):  # fmt: skip
        print(f"\ntest {document['test_start']} .. {document['test_end']}, benchmark "
              f"{document['benchmark']['name']} ({document['benchmark']['kind']})")  # fmt: skip
        print(pd.DataFrame(figures).T)
        print(f"\nPPO over {args.seeds} seeds: {ppo_spread}")
        print(f"yearly fit seconds: {fits}; online_lora: {online_times}")
        if paper:
            print(f"\npaper window {PAPER['window']}:")
            print(pd.DataFrame(paper["ours"]).T)
            print(f"paper reported: {PAPER}")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
