"""The LM trained on hindsight labels and on consensus labels, everything else the same, on
the embedded data (not a test: it prints figures).

    python benchmarks/teachers.py                       # hindsight and consensus
    python benchmarks/teachers.py --teachers hindsight,rules,qlearn,consensus

Uses the demo's store and walk-forward forecasts in --demo (`make demo` writes them; made
here when absent). Per teacher: `dataset build --teacher T` with the demo's settings, the
demo's LM (500 steps, 50k examples, seed 0) trained afresh, its conviction calibrated on
the validation split, then
- `lm eval` on the **hindsight** dataset's test split for every teacher: the outcome is the
  truth, whichever teacher the model learned from (the same 300 examples and dates);
- `compare` on the test years: the LM beside the benchmark, always-buy and lgbm_topk.
Writes `benchmarks/results/teachers_embedded.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import pandas as pd

from synthpm.backtest.engine import BacktestConfig
from synthpm.cli.analysts import forecast_train
from synthpm.cli.backtest import RunOptions, compare_command
from synthpm.cli.common import DataSource
from synthpm.cli.data import data_init
from synthpm.cli.dataset import dataset_build
from synthpm.cli.lm import lm_calibrate, lm_train
from synthpm.columns import FOLD
from synthpm.dataset import DatasetConfig
from synthpm.executor import LOCAL, ExecutorConfig
from synthpm.forecast import ForecastConfig
from synthpm.limits import Limits
from synthpm.lm.evaluate import evaluate
from synthpm.lm.train import TrainConfig

EVAL_KEYS = (
    "accuracy", "macro_f1", "majority_macro_f1", "scenario_rule_macro_f1",
    "conviction_expected_brier", "conviction_expected_ece", "faithfulness_rate",
)  # fmt: skip
RUN_KEYS = ("sharpe", "sharpe_ci_low", "sharpe_ci_high", "cagr", "max_drawdown", "turnover",
            "trade_count", "exposure")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=Path("runs/demo"))
    parser.add_argument("--work", type=Path, default=Path("runs/teachers"))
    parser.add_argument("--teachers", default="hindsight,consensus")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    teachers = [t.strip() for t in args.teachers.split(",")]
    source = DataSource(store=args.demo / "store.duckdb", forecasts=args.demo / "forecast")
    if not source.store.exists():
        data_init(source.store)
    if not (source.forecasts / "forecasts.parquet").exists():
        forecast_train(source=source, config=ForecastConfig(), scale=LOCAL, out=source.forecasts)
    first = pd.read_parquet(source.forecasts_file(), columns=[FOLD])
    start = str(first.index.get_level_values("date").min().date())
    results: dict[str, dict] = {}
    seconds: dict[str, dict] = {}
    for teacher in teachers:
        home = args.work / teacher
        timing: dict[str, float] = {}
        clock = time.perf_counter()
        config = DatasetConfig(start=start, limits=Limits(max_positions=10), teacher=teacher)
        dataset_build(source=source, config=config, scale=ExecutorConfig(), out=home / "dataset")
        timing["dataset"] = round(time.perf_counter() - clock, 1)
        shutil.rmtree(home / "lm", ignore_errors=True)  # trained afresh, never resumed
        clock = time.perf_counter()
        lm_train(data=home / "dataset", out=home / "lm",
                 config=TrainConfig(steps=args.steps, max_examples=50_000))  # fmt: skip
        timing["train"] = round(time.perf_counter() - clock, 1)
        lm_calibrate(home / "lm", data=home / "dataset", n=1000)
        truth = args.work / teachers[0] / "dataset" if teachers[0] == "hindsight" else None
        truth = truth or home / "dataset"
        report = evaluate(home / "lm", truth, n=300, out=home / "eval_on_hindsight.json")
        stats = json.loads((home / "dataset" / "stats.json").read_text())
        run = RunOptions(source=source, config=BacktestConfig(start=stats["test_start"]),
                         param=["lgbm_topk.k=5"], model=home / "lm")  # fmt: skip
        table = compare_command(strategies="lm,benchmark,always_buy,lgbm_topk", run=run,
                                scale=LOCAL, out=home / "compare")  # fmt: skip
        ic = report["per_date"]["ic"]
        results[teacher] = {
            "eval": {k: report.get(k) for k in EVAL_KEYS},
            "ic_expected": {k: ic["lm_expected"][k] for k in ("mean", "t", "dates")},
            "ic_written": {k: ic["lm_written"][k] for k in ("mean", "t", "dates")},
            "compare": {name: {k: table.loc[k, name] for k in RUN_KEYS} for name in table.columns},
            "agreement_with_hindsight": stats.get("agreement_with_hindsight"),
            "test_start": stats["test_start"],
        }
        seconds[teacher] = timing
    document = {"teachers": results, "seconds": seconds, "steps": args.steps,
                "cores": os.cpu_count()}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / "teachers_embedded.json"
    target.write_text(json.dumps(document, indent=1, default=float) + "\n")
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(pd.DataFrame({t: {**r["eval"], "ic_expected": r["ic_expected"]["mean"],
                                "ic_expected_t": r["ic_expected"]["t"]}
                            for t, r in results.items()}))  # fmt: skip
        print(pd.DataFrame({t: r["compare"]["lm"] for t, r in results.items()}))
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
