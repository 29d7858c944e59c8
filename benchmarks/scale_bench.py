"""How the pipeline scales: one local worker against Ray with 2 workers, and each stage's cost
per name, extrapolated to a 5,000-name universe (not a test: it prints figures).

    python benchmarks/scale_bench.py                       # sizes 50,100,200; all 621 names
    python benchmarks/scale_bench.py --sizes 25,50 --executor-names 100   # a quicker look

Reads ../shared/data: the point-in-time S&P 500 panel 2005-2022, in the store that
`decision_quality.py` builds (says so and stops when the data is missing). Then:

1. **Per-name cost.** For each size N (N names of the panel, a seeded sample), each stage runs
   in a fresh process, one worker: features, walk-forward (LightGBM, yearly refit), the
   dataset build (weekly decisions from the first forecast, two scenarios), and a compare of
   five baselines over the validation years. Each prints its wall time and its process's peak
   memory (VmHWM). A line a + b*N is fitted per stage by least squares over the sizes; b is
   the per-name cost and a + b*5000 the extrapolation. Time per name grows with the number of
   dates too: these are 18 years of daily bars.
2. **Executors.** The walk-forward over `--executor-names` names (default: all) with
   LightGBM on one thread, and a 12-cell sweep of lgbm_topk (k=5,10,20 x commission
   0,5,10,20 bps over the validation years), each with one local worker and on Ray with 2
   workers (a local runtime); the outputs are checked equal. (With its default 2 threads a
   fold takes both cores, so on this machine Ray runs the folds one at a time.)

Writes `benchmarks/results/scale_bench.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from decision_quality import PANELS, make_store

from synthpm.backtest import BacktestConfig, Market, compare
from synthpm.backtest.sweep import sweep
from synthpm.data.store import Store
from synthpm.dataset import DatasetConfig, build_contexts, build_dataset, decision_points
from synthpm.executor import LOCAL, ExecutorConfig
from synthpm.features import PanelInputs, build_features
from synthpm.forecast import ForecastConfig, walk_forward
from synthpm.limits import Limits
from synthpm.strategies import make_strategy

PANEL = PANELS["pit_2005_2022"]
STAGES = ("features", "walk_forward", "dataset", "compare")
BASELINES = ("always_buy", "rules", "equal_weight", "lgbm_topk", "hrp")
GRID = {"k": [5, 10, 20], "commission_bps": [0, 5, 10, 20]}
TARGET = 5000


def peak_mb() -> float:
    """This process's peak resident memory so far (Linux: VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def sample(store: Store, n: int) -> list[str]:
    names = store.tickers()
    if n >= len(names):
        return names
    return sorted(np.random.default_rng(0).choice(names, size=n, replace=False).tolist())


def validation_contexts(inputs, panel, forecasts):
    """Weekly decision contexts over the validation years (where settings are chosen)."""
    points = decision_points(panel.index, inputs.events, start=PANEL["val_start"])
    points = points[points["trigger"] == "scheduled"]
    points = points[points["date"] < pd.Timestamp(PANEL["test_start"])]
    return build_contexts(inputs, panel, forecasts, points)


def run_stage(store_path: str, stage: str, n: int, work: str) -> dict:
    """One stage at one size, in its own process: seconds and peak memory."""
    store, work = Store(store_path), Path(work)
    inputs = PanelInputs.from_store(store, sample(store, n))
    before = peak_mb()
    started = time.perf_counter()
    if stage == "features":
        build_features(inputs).to_parquet(work / "features.parquet")
    else:
        panel = pd.read_parquet(work / "features.parquet")
        before = peak_mb()
        started = time.perf_counter()
        if stage == "walk_forward":
            config = ForecastConfig(min_train_days=PANEL["min_train_days"])
            walk_forward(panel, inputs, config, log=lambda _: None).save(work / "forecast")
        else:
            forecasts = pd.read_parquet(work / "forecast" / "forecasts.parquet")
            if stage == "dataset":
                config = DatasetConfig(
                    start=str(forecasts.index.get_level_values("date").min().date()),
                    filings=False,
                    scenarios=("empty", "holding"),
                    val_start=PANEL["val_start"],
                    test_start=PANEL["test_start"],
                )
                build_dataset(
                    inputs, panel, forecasts, work / "dataset", config, log=lambda _: None
                )
            else:
                contexts = validation_contexts(inputs, panel, forecasts)
                strategies = [make_strategy(s) for s in BASELINES]
                run = BacktestConfig(start=PANEL["val_start"], limits=Limits())
                compare(strategies, contexts, Market.from_inputs(inputs), run, work / "compare",
                        log=lambda _: None)  # fmt: skip
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "peak_mb": round(peak_mb(), 1),
            "stage_mb": round(peak_mb() - before, 1)}  # fmt: skip


def fit(sizes: list[int], values: list[float]) -> dict:
    """a + b*N by least squares; the per-name cost b and the 5,000-name extrapolation."""
    b, a = np.polyfit(np.asarray(sizes, float), np.asarray(values, float), 1)
    return {"fixed": round(float(a), 2), "per_name": round(float(b), 4),
            f"at_{TARGET}": round(float(a + b * TARGET), 1)}  # fmt: skip


def per_name(store_path: Path, sizes: list[int], work: Path) -> dict:
    pool = get_context("forkserver")
    table: dict[str, dict[int, dict]] = {s: {} for s in STAGES}
    for n in sizes:
        where = work / f"n{n}"
        where.mkdir(parents=True, exist_ok=True)
        for stage in STAGES:
            with pool.Pool(1) as one:  # a fresh process: its peak memory is this stage's
                found = one.apply(run_stage, (str(store_path), stage, n, str(where)))
            table[stage][n] = found
            seconds, peak, stage_mb = found["seconds"], found["peak_mb"], found["stage_mb"]
            print(f"   {n:4d} names  {stage:12s} {seconds:8.1f} s  peak {peak:7.0f} MB "
                  f"(stage {stage_mb:+.0f})", flush=True)  # fmt: skip
    return {
        stage: {
            "by_size": rows,
            "seconds": fit(sizes, [r["seconds"] for r in rows.values()]),
            "peak_mb": fit(sizes, [r["peak_mb"] for r in rows.values()]),
        }
        for stage, rows in table.items()
    }


def executors(store_path: Path, n: int, work: Path) -> dict:
    store = Store(store_path)
    inputs = PanelInputs.from_store(store, sample(store, n))
    panel = build_features(inputs)
    ray = ExecutorConfig(executor="ray", workers=2)
    # one thread a fit: a worker is one CPU (a fold reserves the threads it runs)
    config = ForecastConfig(min_train_days=PANEL["min_train_days"], model_params={"num_threads": 1})
    out: dict = {"names": len(inputs.prices["ticker"].unique())}
    results = {}
    for name, executor in (("local_1", LOCAL), ("ray_2", ray)):
        started = time.perf_counter()
        results[name] = walk_forward(panel, inputs, config, log=lambda _: None, executor=executor)
        out[f"walk_forward_{name}_s"] = round(time.perf_counter() - started, 1)
        print(f"   walk-forward, {name}: {out[f'walk_forward_{name}_s']:.1f} s", flush=True)
    out["walk_forward_equal"] = results["local_1"].forecasts.equals(results["ray_2"].forecasts)
    contexts = validation_contexts(inputs, panel, results["local_1"].forecasts)
    market = Market.from_inputs(inputs)
    run = BacktestConfig(start=PANEL["val_start"], limits=Limits())
    tables = {}
    for name, executor in (("local_1", LOCAL), ("ray_2", ray)):
        started = time.perf_counter()
        tables[name] = sweep(lambda cell: make_strategy("lgbm_topk", **cell), GRID, contexts,
                             market, run, work / f"sweep_{name}", log=lambda _: None,
                             executor=executor)  # fmt: skip
        out[f"sweep_{name}_s"] = round(time.perf_counter() - started, 1)
        print(f"   12-cell sweep, {name}: {out[f'sweep_{name}_s']:.1f} s", flush=True)
    out["sweep_equal"] = tables["local_1"].equals(tables["ray_2"])
    out["sweep_best"] = tables["local_1"].iloc[0][["cell", "sharpe"]].to_dict()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, default=Path("runs/scale_bench"))
    parser.add_argument("--sizes", default="50,100,200", help="names per per-name measurement")
    parser.add_argument("--executor-names", type=int, default=10_000, help="[default: all]")
    parser.add_argument("--skip", choices=("per_name", "executors"), help="leave a part out")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    if not (args.shared / PANEL["prices"]).exists():
        print(f"skipped: {args.shared / PANEL['prices']} not found (real data lives in "
              "../shared/data beside the repository; a fresh clone has none)")  # fmt: skip
        return 0
    sizes = sorted(int(s) for s in args.sizes.split(","))
    args.work.mkdir(parents=True, exist_ok=True)
    store_path = args.work / "store.duckdb"
    make_store(args.shared, store_path, PANEL)
    print(f"cores: {os.cpu_count()}; panel pit_2005_2022 ({len(Store(store_path).tickers())} "
          f"names); work folder {args.work}")  # fmt: skip
    document: dict = {"cores": os.cpu_count(), "sizes": sizes}
    if args.skip != "per_name":
        print("1. per-name cost (each stage in a fresh process, one worker)")
        document["per_name"] = per_name(store_path, sizes, args.work)
        for stage, found in document["per_name"].items():
            s, m = found["seconds"], found["peak_mb"]
            print(f"   {stage:12s} {s['per_name']:.3f} s/name, {m['per_name']:.2f} MB/name -> "
                  f"{TARGET:,} names: {s[f'at_{TARGET}'] / 60:,.1f} min, "
                  f"{m[f'at_{TARGET}'] / 1024:,.1f} GB")  # fmt: skip
    if args.skip != "executors":
        print("2. executors: 1 local worker against Ray with 2 workers")
        document["executors"] = executors(store_path, args.executor_names, args.work)
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / "scale_bench.json"
    target.write_text(json.dumps(document, indent=1, default=str) + "\n")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
