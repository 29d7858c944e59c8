"""The portfolio's risk limits chosen before the test years (not a test: it prints figures
and writes `benchmarks/results/limits_choice_<panel>.json`). The test years are never read.

    python benchmarks/limits_choice.py --model runs/decision_quality/pit_2005_2022/lm_opening

The limits (`synthpm.limits.Limits`: the drawdown that stops new buys and the window of its
peak, the stop loss, the take profit) act on every signal source alike, so they are chosen
with the sources that fit nothing on the years before the test, over all of those years
(from the first forecast to the last validation date: 2009-2018 on the point-in-time
panel, its 2011 and 2018 falls included), and then checked with the LM on its validation
years only (it trained on the earlier ones). The rule, fixed before the runs:
1. every cell of `GRID` runs `always_buy` and `rules` (`synthpm.backtest.sweep`), idle cash
   earning nothing; a cell's score is the mean of the two Sharpes;
2. the LM agent runs on the validation years under the limits used before this study
   (`BEFORE`) and the best `LM_CANDIDATES` cells that run different books;
3. chosen: the candidate with the best mean of its three Sharpes.
Reads `benchmarks/decision_quality.py`'s work folder for the panel (store, forecasts, and
the dataset's split dates) and says so and stops when it is missing.
"""

from __future__ import annotations

import json
import time

import pandas as pd
from decision_quality import scheduled_contexts, study_inputs, study_parser

from synthpm.agent import PortfolioAgent
from synthpm.backtest import BacktestConfig
from synthpm.backtest.run import backtests, metrics_of
from synthpm.backtest.sweep import cells, sweep
from synthpm.executor import ExecutorConfig
from synthpm.limits import Limits
from synthpm.strategies import make_strategy

GRID = {  # None: the limit is off
    "derisk_window": [21, 63, 252],
    "derisk_drawdown": [0.10, 0.15, 0.20, None],
    "stop_loss": [0.08, 0.15, None],
    "take_profit": [0.25, 10.0],  # +1000%: never reached
}
# the defaults until this study chose others: a 15% drawdown limit, an 8% stop loss
BEFORE = {"derisk_window": 252, "derisk_drawdown": 0.15, "stop_loss": 0.08, "take_profit": 0.25}
SOURCES = ("always_buy", "rules")
LM_CANDIDATES = 3
KEYS = ("sharpe", "cagr", "max_drawdown", "trade_count")


def main() -> int:
    parser = study_parser(__doc__)
    parser.add_argument("--workers", type=int, default=0, help="sweep processes (0: a core each)")
    args = parser.parse_args()
    if (found := study_inputs(args)) is None:
        return 0
    panel, work, stats = found
    started = time.perf_counter()
    val_start = stats["val_start"]
    end = str((pd.Timestamp(stats["test_start"]) - pd.Timedelta(days=1)).date())
    contexts, market = scheduled_contexts(args.shared, work, panel, None, end)
    first = str(contexts.frame["date"].min().date())
    print(f"{len(contexts.frame):,} contexts, {first} .. {end}", flush=True)

    pre_test = BacktestConfig(start=first, end=end)
    executor = ExecutorConfig(workers=args.workers)
    names = [",".join(f"{k}={v}" for k, v in cell.items()) for cell in cells(GRID)]
    named = dict(zip(names, cells(GRID), strict=True))
    scores = {}
    for source in SOURCES:
        folder = work / f"limits_{source}"
        if (folder / "sweep.csv").exists() and sorted(
            pd.read_csv(folder / "sweep.csv")["cell"]
        ) == sorted(names):
            print(f"reusing {folder} (the same grid)")
            table = pd.read_csv(folder / "sweep.csv")
        else:
            table = sweep(
                lambda _, s=source: make_strategy(s), GRID, contexts, market, pre_test, folder,
                log=print, executor=executor,
            )  # fmt: skip
        scores[source] = table.set_index("cell")
    score = sum(scores[s]["sharpe"] for s in SOURCES) / len(SOURCES)
    # cells that run the same books (a window with the drawdown limit off) count once
    books = pd.concat([scores[s][["sharpe", "trade_count"]] for s in SOURCES], axis=1)
    distinct = books.loc[score.sort_values(ascending=False).index].round(6).drop_duplicates()
    candidates = {"before": BEFORE} | {n: named[n] for n in distinct.index[:LM_CANDIDATES]}

    agent = PortfolioAgent.load(args.model)
    jobs = [
        (agent, BacktestConfig(start=val_start, end=end, limits=Limits(**cell)))
        for cell in candidates.values()
    ]
    lm = {}
    for name, (result, seconds) in zip(candidates, backtests(jobs, contexts, market), strict=True):
        lm[name] = {k: metrics_of(result)[k] for k in KEYS}
        print(f"lm under {name}: Sharpe {lm[name]['sharpe']:.2f} ({seconds:.0f}s)", flush=True)

    def figures(name: str) -> dict:
        cell = ",".join(f"{k}={v}" for k, v in candidates[name].items())
        found = {s: scores[s].loc[cell, list(KEYS)].to_dict() for s in SOURCES}
        return found | {"lm_validation": lm[name]}

    chosen_by = {n: sum(f["sharpe"] for f in figures(n).values()) / 3 for n in candidates}
    chosen = max(chosen_by, key=chosen_by.__getitem__)
    document = {
        "panel": args.panel,
        "sources_years": [first, end],
        "lm_years": [val_start, end],
        "idle_cash": pre_test.idle_cash,
        "benchmark": {"name": market.benchmark_name, "kind": market.benchmark_kind},
        "grid": GRID,
        "model": str(args.model),
        "candidates": {
            n: {"limits": c, "score": chosen_by[n], **figures(n)} for n, c in candidates.items()
        },
        "chosen": {"name": chosen, "limits": candidates[chosen]},
        "cells": {
            cell: {"score": score[cell]}
            | {f"{s}_{k}": scores[s].loc[cell, k] for s in SOURCES for k in KEYS[:3]}
            for cell in score.sort_values(ascending=False).index
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"limits_choice_{args.panel}.json"
    out.write_text(json.dumps(document, indent=1, default=float) + "\n")
    with pd.option_context("display.width", 200, "display.float_format", "{:.3f}".format):
        print(f"\nbest cells by the mean Sharpe of {', '.join(SOURCES)}, {first} .. {end}:")
        print(pd.DataFrame(document["cells"]).T.head(10))
        print(f"\ncandidates (the LM on {val_start} .. {end}):")
        print(
            pd.DataFrame(
                {
                    n: {
                        "score": c["score"],
                        **{s: c[s]["sharpe"] for s in (*SOURCES, "lm_validation")},
                    }
                    for n, c in document["candidates"].items()
                }
            ).T
        )
    print(f"\nchosen: {chosen} {candidates[chosen]}")
    print(f"wrote {out} ({document['seconds']:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
