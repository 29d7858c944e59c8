"""A simulated year of the live loop on the embedded data (not a test: it prints figures).

    python benchmarks/journal_year.py [--year 2022] [--strategy rules] [--work runs/journal_year]

1. A store holding the embedded data up to the year's start, and the walk-forward forecast
   run fitted on it (default settings);
2. every trading day of the year: that day's prices imported (the store grows by one day),
   `decide` for the paper account, `journal update`; each stage timed;
3. the backtest over the same days on the finished store with a fresh walk-forward: its
   decisions, sizes and fills against the journal's, row by row;
4. a sample of the journal's outcome columns against a hand computation from the stored
   closes and index; the `journal stats` tables;
5. journal write throughput (transactions of 20 rows into the year's store).
Writes `benchmarks/results/journal_year.json`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from synthpm.backtest.engine import BacktestConfig, run_signals
from synthpm.backtest.market import Market
from synthpm.data.embedded import embedded_batch
from synthpm.data.store import ImportBatch, Store
from synthpm.dataset import build_contexts, decision_points
from synthpm.features import FeatureConfig, PanelInputs, build_features
from synthpm.forecast import ForecastConfig, walk_forward
from synthpm.journal import stats
from synthpm.journal.live import as_of, decide, write_decided
from synthpm.journal.outcomes import update_journal
from synthpm.journal.records import entry, read_journal, write_entries
from synthpm.limits import Limits
from synthpm.signals import Signal
from synthpm.strategies import make_strategy

RESULTS = Path(__file__).parent / "results" / "journal_year.json"


def sliced(batch: ImportBatch, first, last) -> ImportBatch:
    frames = {}
    for name, frame in batch.frames.items():
        if "date" in frame:
            frame = frame[(frame["date"] >= first) & (frame["date"] <= last)]
        frames[name] = frame
    return ImportBatch("embedded", f"{first.date()}..{last.date()}", frames)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--year", type=int, default=2022)
    parser.add_argument("--strategy", default="rules")
    parser.add_argument("--work", type=Path, default=Path("runs/journal_year"))
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    batch = embedded_batch()
    dates = pd.DatetimeIndex(sorted(batch.frames["prices"]["date"].unique()))
    days = dates[dates.year == args.year]
    store = Store(args.work / "store.duckdb")
    store.write(sliced(batch, dates[0], days[0] - pd.Timedelta(days=1)))
    inputs = PanelInputs.from_store(store)
    panel = build_features(inputs, FeatureConfig())
    walk_forward(panel, inputs, ForecastConfig(), log=lambda _: None).save(args.work / "forecast")
    timings["setup_s"] = time.perf_counter() - started
    config = BacktestConfig(limits=Limits(max_positions=10))
    strategy = make_strategy(args.strategy)
    stage = {"import": [], "decide": [], "write": [], "update": []}
    for day in days:
        t0 = time.perf_counter()
        store.write(sliced(batch, day, day))
        t1 = time.perf_counter()
        today = as_of(store, day, args.work / "forecast")
        decided = decide(store, strategy, today, source=strategy.name, config=config)
        t2 = time.perf_counter()
        write_decided(store, decided, "paper", strategy.name, config, book=False)
        t3 = time.perf_counter()
        update_journal(store)
        t4 = time.perf_counter()
        for name, seconds in zip(stage, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            stage[name].append(seconds)
        if decided.rows:
            print(f"{day.date()}: {len(decided.rows)} decisions, {t4 - t0:.1f} s", flush=True)
    per_day = {f"{name}_s_per_day": float(np.mean(v)) for name, v in stage.items()}

    # the backtest over the same days, on the finished store
    inputs = PanelInputs.from_store(store)
    panel = build_features(inputs, FeatureConfig())
    forecasts = walk_forward(panel, inputs, ForecastConfig(), log=lambda _: None).forecasts
    points = decision_points(panel.index, inputs.events, start=days[0], end=days[-1])
    contexts = build_contexts(inputs, panel, forecasts, points)
    run = config.model_copy(update={"start": str(days[0].date()), "end": str(days[-1].date())})
    result = run_signals(strategy, contexts, Market.from_inputs(inputs), run)
    got = read_journal(store, account="paper").sort_values(["date", "ticker"])
    got = got.reset_index(drop=True)
    # the data's last week can end before its last session (the embedded data end on a
    # Wednesday): the backtest reviews that Wednesday, which no one could know live, and its
    # orders never fill; compared on the dates both decided, that extra review is reported
    backtest_only = sorted(set(pd.to_datetime(result.decisions["date"])) - set(got["date"]))
    expected = result.decisions[~pd.to_datetime(result.decisions["date"]).isin(backtest_only)]
    expected = expected.reset_index(drop=True)
    same_rows = len(got) == len(expected) and (
        got["ticker"].tolist() == expected["ticker"].tolist()
    )
    mismatches = {
        c: int((got[c].to_numpy() != expected[c].to_numpy()).sum()) if same_rows else None
        for c in ("decision", "status", "reason")
    }
    size_gap = float(np.abs(got["size"] - expected["size"]).max()) if same_rows else None
    filled = sum(len(json.loads(f)) for f in got["fills"])
    trades = result.trades[result.trades["reason"].isin(["signal", "sell_signal"])]

    # outcomes by hand on a sample
    closes = inputs.closes()
    index = inputs.market.set_index("date")["index_close"]
    sample = got[got["excess_21d"].notna()].sample(25, random_state=0)
    gaps = []
    for row in sample.itertuples():
        t = closes.index.get_loc(row.date)
        a, b = closes.index[t + 1], closes.index[t + 22]
        hand = (closes.at[b, row.ticker] / closes.at[a, row.ticker] - 1) - (index[b] / index[a] - 1)
        gaps.append(abs(hand - row.excess_21d))

    hit = stats.hit_rates(got)
    table = stats.reliability(got)
    print(hit.to_string())
    print(table.to_string())

    # write throughput: transactions of 20 rows
    probe = Store(args.work / "probe.duckdb")
    shutil.copyfile(store.path, probe.path)
    contexts_day = list(contexts[:20])
    signal_ = result.decisions.iloc[0]
    sig = Signal(decision=signal_["decision"], conviction=signal_["conviction"],
                 hold_duration_days=int(signal_["hold_days"]), reasoning="probe")  # fmt: skip
    t0 = time.perf_counter()
    writes = 30
    for _ in range(writes):
        rows = [entry(c, sig, source="probe", account="probe", limits=config.limits,
                      status="skipped") for c in contexts_day]  # fmt: skip
        write_entries(probe, rows, "probe")
    seconds = time.perf_counter() - t0
    figures = {
        "year": args.year,
        "strategy": strategy.name,
        "trading_days": len(days),
        "journal_entries": len(got),
        "backtest_decisions": len(expected),
        "backtest_only_dates": [str(d.date()) for d in backtest_only],
        "same_rows": bool(same_rows),
        "mismatches": mismatches,
        "max_size_gap_dollars": size_gap,
        "journal_fills": filled,
        "backtest_signal_fills_in_year": int((trades["date"] <= days[-1]).sum()),
        # positions are credited to their opening BUY: the sum is the run's closed P&L
        "journal_realised_pnl_of_buys": float(got.loc[got["decision"] == "BUY", "pnl"].sum()),
        "backtest_closed_trades_pnl": float(result.trades["pnl"].sum()),
        "outcome_hand_check_max_abs_gap": float(max(gaps)),
        "hit_rate": hit.reset_index().to_dict("records"),
        "reliability": table.reset_index().astype({"bucket": str}).to_dict("records"),
        "store_mb": round(store.path.stat().st_size / 2**20, 1),
        "journal_write_transactions_per_s": writes / seconds,
        "journal_rows_per_s": writes * 20 / seconds,
        **timings,
        **per_day,
    }
    RESULTS.write_text(json.dumps(figures, indent=1, default=str))
    print(json.dumps({k: v for k, v in figures.items() if k not in ("reliability",)}, indent=1,
                     default=str))  # fmt: skip


if __name__ == "__main__":
    main()
