"""Training-data benchmark on real data (not a test: it prints figures).

    python benchmarks/dataset_bench.py [--shared ../shared/data] [--forecasts DIR] [--workers 2]

On the 494-stock panel (SPY index, CBOE VIX, 2017 sectors, EDGAR 8-Ks; the store that
`forecast_bench.py` builds) with weekly decision points 2005–2017 and 8-K filing days:
1. context generation: the vectorised context frame of every decision point (no text);
2. rendering + labelling on one core: contexts → 10 scenarios → prompt, label, reasoning,
   faithfulness check, JSON, for every context of a sample of decision dates;
3. the full build streamed to disk (`build_dataset`, all decision points x 10 scenarios),
   with its wall time and peak memory (the parent's and the largest worker's RSS).
Forecasts come from `forecast_bench.py`'s output (runs/bench/forecast); without it the
contexts of those dates say "no forecast" and step 3 is skipped. Goals: >= 100,000
contexts/s, >= 5,000 examples/s rendered and labelled, bounded memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from forecast_bench import shared_store

from synthpm.dataset import DatasetConfig, build_contexts, build_dataset, decision_points
from synthpm.dataset.build import examples_for_context
from synthpm.dataset.labels import outcomes
from synthpm.dataset.scenarios import ScenarioBook
from synthpm.executor import ExecutorConfig
from synthpm.features import PanelInputs, build_features


def rss_mb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--forecasts", type=Path, default=Path("runs/bench/forecast"))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--dates", type=int, default=10, help="decision dates rendered in step 2")
    parser.add_argument("--no-build", action="store_true", help="steps 1 and 2 only")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/dataset"))
    args = parser.parse_args()
    panel_file = args.shared / "us_equities_ohlcv_2005_2017.parquet"
    if not panel_file.exists():
        print(
            f"skipped: {panel_file} not found (real data lives in ../shared/data beside the repo)"
        )
        return 0
    forecast_file = args.forecasts / "forecasts.parquet"
    forecasts = pd.read_parquet(forecast_file) if forecast_file.exists() else None
    print(
        f"cores: {os.cpu_count()}; forecasts: {forecast_file if forecasts is not None else 'none'}"
    )
    figures: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = PanelInputs.from_store(shared_store(args.shared, Path(tmp) / "s.duckdb"))
        panel = build_features(inputs)
        closes = inputs.closes()
        print(f"panel: {len(panel):,} rows; memory so far {rss_mb():.0f} MB")

        started = time.perf_counter()
        points = decision_points(panel.index, inputs.events)
        contexts = build_contexts(inputs, panel, forecasts, points, closes)
        seconds = time.perf_counter() - started
        figures["contexts"] = len(contexts)
        figures["contexts_per_s"] = len(contexts) / seconds
        print(
            f"1. contexts: {len(contexts):,} decision points "
            f"({(points['trigger'] == 'filing').sum():,} on filing days) in {seconds:.2f} s "
            f"= {figures['contexts_per_s']:,.0f} contexts/s"
        )

        # Whole decision dates, as the build processes them (one scenario book per date).
        frame = contexts.frame
        labels = outcomes(inputs, points, closes=closes).fillna({"outcome": 0.0, "conviction": 0.0})
        days = pd.Series(frame["date"].unique()).sample(args.dates, random_state=0)
        config = DatasetConfig()
        count, contexts_done = 0, 0
        started = time.perf_counter()
        for day in sorted(days):
            on_day = frame[frame["date"] == day]
            universe = dict(zip(on_day["ticker"], on_day["sector"], strict=True))
            book = ScenarioBook(day.to_datetime64(), universe, config.limits, config.seed)
            day_labels = labels.loc[on_day.index].to_dict("records")
            for row, label in zip(on_day.to_dict("records"), day_labels, strict=True):
                for _ in examples_for_context(row, contexts.benchmark, label, book, config):
                    count += 1
                contexts_done += 1
        seconds = time.perf_counter() - started
        figures["examples_per_s_one_core"] = count / seconds
        print(
            f"2. render + label + check, one core: {count:,} examples from {contexts_done:,} "
            f"contexts in {seconds:.2f} s = {figures['examples_per_s_one_core']:,.0f} examples/s"
        )
        del contexts, frame
        if args.no_build or forecasts is None:
            why = "--no-build" if args.no_build else "no forecasts (run forecast_bench.py first)"
            print(f"3. skipped: {why}")
            return 0
        started = time.perf_counter()
        stats = build_dataset(
            inputs,
            panel,
            forecasts,
            args.out,
            DatasetConfig(),
            log=print,
            executor=ExecutorConfig(workers=args.workers),
        )
        seconds = time.perf_counter() - started
        figures.update(
            build_s=seconds,
            examples=stats["examples"],
            build_examples_per_s=stats["examples"] / seconds,
            peak_rss_parent_mb=rss_mb(),
            peak_rss_worker_mb=rss_mb(resource.RUSAGE_CHILDREN),
            gigabytes_written=sum(stats["bytes"].values()) / 1e9,
            by_split=stats["by_split"],
        )
        print(
            f"3. full build, {args.workers} workers: {stats['examples']:,} examples in "
            f"{seconds:.1f} s = {figures['build_examples_per_s']:,.0f}/s; peak RSS parent "
            f"{figures['peak_rss_parent_mb']:,.0f} MB, largest worker "
            f"{figures['peak_rss_worker_mb']:,.0f} MB; "
            f"{figures['gigabytes_written']:.2f} GB written"
        )
        print(json.dumps(stats["by_split"]))
    (args.out / "bench.json").write_text(json.dumps(figures, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
