"""Which trained LM ranks stocks best, and does its view of a stock depend on the book? Model
folders compared on validation dates only (not a test: it prints figures and writes
`benchmarks/results/lm_variants_<dataset folder>.json`).

    python benchmarks/lm_variants.py --data runs/decision_quality/pit_2005_2022/dataset \\
        runs/decision_quality/pit_2005_2022/lm runs/decision_quality/pit_2005_2022/lm_opening

Reads a `dataset build` folder (`benchmarks/decision_quality.py` makes the panels'); says so
and stops when it is missing. Per model, on `--dates` validation dates spread over the
split, every `empty`-scenario context (one per stock):
- the per-date rank IC of the expected conviction with the outcome, with its month-block
  bootstrap t (`lm.evaluate.per_date_ic`), beside the forecaster's 1m expected return and
  the other context baselines on the same rows;
- the book's pull: the same contexts under the `holding` scenario (a typical book, 60% of
  its names, that also holds the stock) against `empty` (all cash); the label's conviction
  is the outcome's percentile whatever the book, so a model that reads the stock gives both
  about the same expectation. The mean gap and the correlation of the two across contexts
  say how much the book, not the stock, drives it (the gap mixes holding the stock with
  the rest of the book: it is not the shift a backtest's held name sees).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from synthpm.lm.calibrate import read_convictions
from synthpm.lm.evaluate import context_scores, ic_rows, per_date_ic
from synthpm.lm.train import load_model

COLUMNS = ["date", "ticker", "scenario", "system", "user", "outcome"]


def validation_rows(data: Path) -> pd.DataFrame:
    parts = sorted((data / "validation").glob("part-*.parquet"))
    where = [("scenario", "in", ["empty", "holding"])]
    frame = pd.concat(pd.read_parquet(p, columns=COLUMNS, filters=where) for p in parts)
    frame = frame[np.isfinite(frame["outcome"].to_numpy(dtype=float))]
    return frame.assign(date=lambda f: pd.to_datetime(f["date"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", type=Path, nargs="+", help="`lm train` folders")
    parser.add_argument("--data", type=Path, required=True, help="a `dataset build` folder")
    parser.add_argument("--dates", type=int, default=40, help="validation dates read")
    parser.add_argument("--pairs", type=int, default=2000, help="contexts read under both books")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    if not (args.data / "validation").is_dir():
        print(f"no dataset at {args.data}: run benchmarks/decision_quality.py first")
        return 0
    frame = validation_rows(args.data)
    rows = ic_rows(frame, args.dates)
    holding = frame[frame["scenario"] == "holding"].drop_duplicates(["date", "ticker"])
    pairs = rows.merge(holding, on=["date", "ticker"], suffixes=("", "_held"))
    pairs = pairs.sample(min(args.pairs, len(pairs)), random_state=0)
    held = pairs[["system_held", "user_held"]].set_axis(["system", "user"], axis=1)
    print(f"{len(rows):,} contexts on {rows['date'].nunique()} validation dates; "
          f"{len(pairs):,} also read with the stock held")  # fmt: skip
    baselines = per_date_ic(rows, context_scores(args.data, rows))
    report: dict = {"data": str(args.data), "rows": len(rows), "baselines": baselines}
    for folder in args.models:
        started = time.perf_counter()
        model, tokenizer = load_model(folder)
        _, expected = read_convictions(model, tokenizer, rows)
        by_key = pd.Series(expected, index=pd.MultiIndex.from_frame(rows[["date", "ticker"]]))
        empty = by_key.reindex(pd.MultiIndex.from_frame(pairs[["date", "ticker"]])).to_numpy()
        _, when_held = read_convictions(model, tokenizer, held)
        ic = per_date_ic(rows, {"lm_expected": expected})["lm_expected"]
        report[str(folder)] = {
            "ic": ic,
            "expected_spread": float(np.std(expected)),
            "held_minus_empty": float(np.mean(when_held - empty)),
            "held_empty_correlation": float(np.corrcoef(when_held, empty)[0, 1]),
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(f"{folder}: IC {ic['mean']:+.4f} (t {ic['t']:.2f}), by year "
              f"{ {y: round(v, 4) for y, v in ic['by_year'].items()} }; expectation sd "
              f"{np.std(expected):.4f}; held - empty {np.mean(when_held - empty):+.4f}, "
              f"correlation {report[str(folder)]['held_empty_correlation']:.2f}")  # fmt: skip
    for name, b in baselines.items():
        print(f"baseline {name}: IC {b['mean']:+.4f} (t {b['t']:.2f})")
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"lm_variants_{args.data.parent.name}.json"
    target.write_text(json.dumps(report, indent=1, default=float) + "\n")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
