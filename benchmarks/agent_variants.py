"""How the agent turns the model's view into decisions, chosen on validation dates: one
trained and calibrated model backtested over the validation years with each decision rule,
beside the baselines on the same engine, costs and dates (not a test: it prints figures and
writes `benchmarks/results/agent_variants_<panel>_<model folder>.json`). The test years are
never read.

    python benchmarks/agent_variants.py --model runs/decision_quality/pit_2005_2022/lm_opening

Reads `benchmarks/decision_quality.py`'s work folder for the panel (store, forecasts and
dataset) and says so and stops when it is missing. The rules (`PortfolioAgent`):
- `lm_date_ranks`: a date's stocks decided by their expectations' ranks among each other,
  BUY the top 30%, SELL a holding in the bottom 30% (the agent's default);
- `lm_bands`: each stock alone, by the calibration's fixed bands (validation quantiles of
  the expectation), as before.
Validation dates are the ones the model's bands and calibration were fitted on, so the
runs are marked in sample: they choose, the test years report.
"""

from __future__ import annotations

import json
import sys
import time

import pandas as pd
from decision_quality import IDLE_CASH, scheduled_contexts, study_inputs, study_parser, years_of

from synthpm.agent import CROSS_SECTION, PortfolioAgent
from synthpm.backtest import BacktestConfig, BenchmarkHold, compare
from synthpm.limits import Limits
from synthpm.strategies import make_strategy

RULES = {"lm_date_ranks": CROSS_SECTION, "lm_bands": sys.maxsize}  # -> the agent's cross_section
BASELINES = ("always_buy", "lgbm_topk", "equal_weight")
KEYS = ("sharpe", "cagr", "max_drawdown", "exposure", "turnover", "trade_count")


def main() -> int:
    parser = study_parser(__doc__)
    parser.add_argument("--idle", choices=IDLE_CASH, default="cash")
    args = parser.parse_args()
    if (found := study_inputs(args)) is None:
        return 0
    panel, work, stats = found
    started = time.perf_counter()
    start, end = stats["val_start"], pd.Timestamp(stats["test_start"]) - pd.Timedelta(days=1)
    contexts, market = scheduled_contexts(args.shared, work, panel, start, str(end.date()))
    strategies = []
    for name, cross_section in RULES.items():
        agent = PortfolioAgent.load(args.model, cross_section=cross_section)
        agent.name = name
        strategies.append(agent)
    strategies += [BenchmarkHold(), *(make_strategy(name) for name in BASELINES)]
    config = BacktestConfig(start=start, end=str(end.date()), limits=Limits(), idle_cash=args.idle)
    where = work / f"agent_variants_{args.model.name}"
    table = compare(strategies, contexts, market, config, where, log=print, allow_in_sample=True)
    years = years_of(table, where)
    document = {
        "panel": args.panel,
        "model": str(args.model),
        "validation": [start, str(end.date())],
        "idle_cash": args.idle,
        "benchmark": {"name": market.benchmark_name, "kind": market.benchmark_kind},
        "strategies": {
            name: {k: table.loc[k, name] if k in table.index else None for k in KEYS}
            for name in table.columns
        },
        "per_year": years,
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"agent_variants_{args.panel}_{args.model.name}.json"
    out.write_text(json.dumps(document, indent=1, default=float))
    with pd.option_context("display.width", 200, "display.float_format", "{:.3f}".format):
        print(f"\nvalidation {start} .. {end.date()}, idle cash as {args.idle}:")
        print(pd.DataFrame(document["strategies"]).T)
        returns = {n: {y: r["return"] for y, r in by.items()} for n, by in years.items()}
        print("\nreturn per year:")
        print(pd.DataFrame(returns).T)
    print(f"\nwrote {out} ({document['seconds']:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
