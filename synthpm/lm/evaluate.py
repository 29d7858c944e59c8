"""Evaluation on held-out conversations: is the model valid, right, calibrated, skilled, fast?

Everything is measured on the test split (dates the model never trained on). Each context
(a stock on a date) appears there under up to 10 portfolio scenarios (`empty`, `holding`,
`bear_market`, ...), with the same outcome and the same conviction label in every copy.

**Decisions**, on `n` rows sampled from every scenario, decoded in full mode, as the agent
decides them (`steered_by_bands`: by the calibration's bands where the folder has them,
`decode`'s steered decision; else greedy):
- `schema_valid_rate`: answers parsed as `Signal` (the constrained decoder makes it 100% by
  design; this counts it rather than assuming it);
- `accuracy`, `macro_f1` against the hindsight labels, beside two baselines that read no
  market data at all: the majority class (`majority_*`, always the most common training
  decision) and the scenario rule (`scenario_rule_*`: SELL when the scenario is `holding`,
  SKIP otherwise). The labels depend on the portfolio as much as on the stock (a held laggard is
  a SELL, a binding limit a SKIP), so the rule alone scores well above the majority class; the
  model's skill at decisions is its margin over the rule;
- `by_scenario`: per scenario, `n` and accuracy / macro-F1 of the model (`lm_*`), the rule
  and the majority class, to see where that margin comes from;
- `signal_mode_agreement`: signal-only mode's decisions equal full mode's.

**Conviction as a probability** that the stock beats the benchmark after costs (the label's
meaning), on the same rows, for both readings (`decode`): as written (`conviction_*`) and as
the mean under the model's probabilities (`conviction_expected_*`): Brier score and expected
calibration error (10 equal-width bins) against outcome > 0. `*_rank_ic_pooled` is the
Spearman correlation with the outcome over those rows pooled across dates, tickers and
scenarios: kept for continuity, **pooled, not a skill measure**. Its rows are not independent
(one context counted up to 10 times; outcome windows of neighbouring dates overlap) and it
mixes the cross-section with moves of the whole market between dates, so its 1/sqrt(n) error
is far too small.

**Ranking skill**, `per_date` (the figure to read for conviction): the test split's `empty`
scenario rows only (one row per context, no portfolio in the way), on up to `ic_dates` test
dates spread evenly over the split (dates with at least `MIN_NAMES` contexts), decoded in
signal mode. Per date, the Spearman IC of a score with the realised net excess return
(`metrics.rank_ic_by_date`); then over dates their mean, a standard error from a block
bootstrap that resamples whole calendar months (`metrics.block_bootstrap_t`: outcome windows
overlap between neighbouring dates, so per-date ICs are serially correlated), t = mean / se,
the naive se for comparison, and the numbers of dates and months. Scores, same rows:
- `lm_written`, `lm_expected`: the model's conviction, both readings;
- `forecaster_1m`: the walk-forward forecaster's 1-month expected return
  (`expected_return_1m` of the dataset's `contexts/` frame, which the prompt shows the model;
  missing before the first fold, such rows are left out): the model's edge over it is what
  it adds to its own input;
- `reversal_1m`: minus the stock's past 1-month return (`ret_21d`): short-term reversal, a
  score that needs no model at all;
- `volatility_1m`: the stock's trailing 1-month volatility (`vol_21d`). The outcome is the
  peak of the 5/21/63-day net excess returns, and the maximum of three noisy returns is
  larger for a more volatile stock whatever its drift, so volatility alone ranks outcomes:
  conviction shows skill only where it beats this.

**Calibration** (`calibration`; the map is `synthpm lm calibrate`'s, fitted on validation):
on the `per_date` rows (the scenario the map is fitted on, one row per context), the
expected conviction's Brier score, ECE and reliability table (10 equal-width bins: count,
mean predicted, observed win rate), `raw` and, when the model folder has `calibration.json`,
`calibrated` (null otherwise), with `fit`: the map's rows and its in-sample Brier / ECE.

**Speed**: latency of one full decision (p50/p95) and batched throughput in both modes.
**Faithfulness**: the share of full-mode answers whose text cites only what the prompt
states (with the cited-text grammar by default; `cite=False` measures the model unaided);
`faithfulness_failures`, the citations it made that its prompt did not back, most frequent
first (what to fix); `unseen_tickers`, the same on the sampled rows of the tickers the
dataset kept out of training and validation (`held_out_tickers` in its stats.json): `n`,
`faithfulness_rate`, `failures`, and `decisions` (accuracy, macro-F1).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from scipy.stats import spearmanr
from sklearn.metrics import accuracy_score, f1_score

from synthpm.columns import TREND_COLUMNS, forecast_col
from synthpm.dataset.faithfulness import check_faithfulness
from synthpm.dataset.scenarios import SCENARIOS
from synthpm.executor import LOCAL, ExecutorConfig
from synthpm.folders import write_atomic
from synthpm.lm.calibrate import Calibration, assess, calibration_error, read_convictions
from synthpm.lm.decode import SignalDecoder, parse_signal
from synthpm.lm.model import GPT
from synthpm.lm.train import load_model, read_split
from synthpm.metrics import block_bootstrap_t, rank_ic_by_date

IC_SCENARIO = "empty"  # one row per context, and no portfolio to shape the answer
MIN_NAMES = 5  # contexts a date needs for its IC (filing-only days have one or two)
IC_BLOCK = "M"  # bootstrap blocks: calendar months
# per-date baselines read from the contexts frame: name -> (column, sign)
CONTEXT_BASELINES = {
    "forecaster_1m": (forecast_col("expected_return", "1m"), 1.0),
    "reversal_1m": (TREND_COLUMNS["return_1m"], -1.0),
    # a volatile stock's outcome is more extreme either way: in a rising market (2019-2022)
    # volatility alone ranks outcomes, and a score must beat it
    "volatility_1m": (TREND_COLUMNS["volatility_1m"], 1.0),
}
COLUMNS = ("date", "ticker", "scenario", "system", "user", "decision", "conviction", "outcome")


def scenario_rule(scenarios: object) -> np.ndarray:
    """The decision baseline that reads only the scenario's name: SELL when the portfolio
    holds the stock (`holding`: a held loser is labelled SELL), SKIP otherwise."""
    return np.where(np.asarray(scenarios) == "holding", "SELL", "SKIP").astype(object)


def decision_scores(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 (over the classes in truth or prediction, as sklearn's default;
    a class never predicted scores 0)."""
    return {
        "accuracy": float(accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
    }


def by_scenario(
    scenarios: object, truth: object, predictions: dict[str, np.ndarray]
) -> dict[str, dict[str, float | int]]:
    """Per scenario (in `SCENARIOS` order, unknown names after): `n` and `<who>_accuracy`,
    `<who>_macro_f1` of each named prediction."""
    scenarios, truth = np.asarray(scenarios, dtype=object), np.asarray(truth, dtype=object)
    found = set(scenarios)
    names = [s for s in SCENARIOS if s in found] + sorted(found - set(SCENARIOS))
    out: dict[str, dict[str, float | int]] = {}
    for name in names:
        rows = scenarios == name
        out[name] = {"n": int(rows.sum())}
        for who, predicted in predictions.items():
            scores = decision_scores(truth[rows], np.asarray(predicted, dtype=object)[rows])
            out[name] |= {f"{who}_{key}": value for key, value in scores.items()}
    return out


def ic_rows(test: pd.DataFrame, ic_dates: int | None, min_names: int = MIN_NAMES) -> pd.DataFrame:
    """The `IC_SCENARIO` rows of up to `ic_dates` dates with at least `min_names` of them,
    spread evenly over the split (neighbouring dates repeat each other's outcome windows,
    so spreading them buys more independent evidence than taking the first ones). Data
    without that scenario (a journal export: one conversation per context) are used whole."""
    if (test["scenario"] == IC_SCENARIO).any():
        test = test[test["scenario"] == IC_SCENARIO]
    rows = test.drop_duplicates(["date", "ticker"]).assign(date=lambda f: pd.to_datetime(f["date"]))
    counts = rows.groupby("date").size()
    usable = counts.index[counts >= min_names].sort_values()
    if ic_dates is not None and len(usable) > ic_dates:
        picks = np.linspace(0, len(usable) - 1, max(ic_dates, 0)).round().astype(int)
        usable = usable[np.unique(picks)]
    rows = rows[rows["date"].isin(usable)]
    return rows.sort_values(["date", "ticker"]).reset_index(drop=True)


def context_scores(data: Path, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """The `CONTEXT_BASELINES` scores of `rows` (by date and ticker) from the dataset's
    `contexts/` frames; a baseline whose column is absent is left out, a missing value NaN."""
    parts = sorted((Path(data) / "contexts").glob("part-*.parquet"))
    if not parts or rows.empty:
        return {}
    present = set(pq.read_schema(parts[0]).names)
    wanted = [c for c, _ in CONTEXT_BASELINES.values() if c in present]
    if not wanted:
        return {}
    frames = [pd.read_parquet(p, columns=["date", "ticker", *wanted]) for p in parts]
    ctx = pd.concat(frames, ignore_index=True).assign(date=lambda f: pd.to_datetime(f["date"]))
    # a filing on a scheduled day is still one context: its values are the same
    ctx = ctx.drop_duplicates(["date", "ticker"]).set_index(["date", "ticker"])
    joined = ctx.reindex(pd.MultiIndex.from_arrays([rows["date"], rows["ticker"]]))
    return {
        name: sign * joined[column].to_numpy(dtype=float)
        for name, (column, sign) in CONTEXT_BASELINES.items()
        if column in wanted
    }


def per_date_ic(
    rows: pd.DataFrame, scores: dict[str, np.ndarray], min_names: int = MIN_NAMES
) -> dict[str, dict]:
    """Per score: mean per-date rank IC with `rows['outcome']`, block-bootstrap se and t,
    and the mean per calendar year (`by_year`: the regimes)."""
    out = {}
    for name, score in scores.items():
        ic = rank_ic_by_date(rows["date"], score, rows["outcome"], min_names)
        by_year = ic.groupby(pd.DatetimeIndex(ic.index).year).mean()
        out[name] = {
            **block_bootstrap_t(ic, IC_BLOCK),
            "by_year": {str(y): float(v) for y, v in by_year.items()},
        }
    return out


def evaluate(
    model_dir: str | Path,
    data: str | Path,
    n: int = 1000,
    batch_size: int = 32,
    untrained: bool = False,
    cite: bool = True,
    ic_dates: int | None = None,
    out: str | Path | None = None,
    executor: ExecutorConfig = LOCAL,
) -> dict:
    """The report, also written to `out`, by default `model_dir/eval.json`
    (`eval-untrained.json` for a freshly initialised model of the same size: the decoder's
    validity must not depend on training). Flat scalars (the module docstring) plus the
    nested `by_scenario` and `per_date`."""
    model, tokenizer = load_model(model_dir)
    if untrained:
        torch.manual_seed(0)
        model = GPT(model.config).to(model.embed.weight.dtype).eval()  # same dtype
    decoder = SignalDecoder(model, tokenizer, cite=cite)
    calibration = None if untrained else Calibration.load(model_dir)  # fitted on the trained
    steer = decoder.steering(calibration)  # the agent's decisions: by the bands, if any
    everything = read_split(Path(data), "test", None, COLUMNS)
    test = everything.sample(n, random_state=0) if len(everything) > n else everything
    train = read_split(Path(data), "train", 200_000, ("decision",))  # for the majority only
    majority = train["decision"].mode().iloc[0]
    prompts = [
        tokenizer.render(s, u).ids for s, u in zip(test["system"], test["user"], strict=True)
    ]

    # Signal mode timed on its second pass (a second or so): the first pays once for the
    # memory of each batch shape (`heap`) and keeps the system prompt's keys and values.
    fast = [
        parse_signal(s.text, True)
        for s in decoder.decode_scored(prompts, "signal", batch_size, steer)
    ]
    started = time.perf_counter()
    decoder.decode_scored(prompts, "signal", batch_size, steer)
    signal_rate = len(prompts) / (time.perf_counter() - started)
    started = time.perf_counter()
    scored = decoder.decode_scored(prompts, "full", batch_size, steer)
    full_rate = len(prompts) / (time.perf_counter() - started)
    full = [parse_signal(s.text) for s in scored]
    single = []
    for ids in prompts[:50]:
        tick = time.perf_counter()
        decoder.decode([ids], mode="full")
        single.append(time.perf_counter() - tick)

    truth = test["decision"].to_numpy()
    predicted = np.array([s.decision for s in full], dtype=object)
    baselines = {
        "majority": np.full(len(truth), majority, dtype=object),
        "scenario_rule": scenario_rule(test["scenario"]),
    }
    won = (test["outcome"].to_numpy() > 0).astype(float)
    readings = {
        "conviction": np.array([s.conviction for s in full]),
        "conviction_expected": np.array([s.expected for s in scored]),
    }
    checks = [check_faithfulness(s, u) for s, u in zip(full, test["user"], strict=True)]
    report = {
        "examples": len(prompts),
        "schema_valid_rate": (len(full) + len(fast)) / (2 * len(prompts)),
        **decision_scores(truth, predicted),
        "majority_class": majority,
        **{
            f"{who}_{k}": v
            for who, p in baselines.items()
            for k, v in decision_scores(truth, p).items()
        },
        "signal_mode_agreement": float(
            np.mean([a.decision == b.decision for a, b in zip(fast, full, strict=True)])
        ),
        **{
            f"{name}_{key}": value
            for name, conviction in readings.items()
            for key, value in _scores(conviction, won, test["outcome"].to_numpy()).items()
        },
        "faithfulness_rate": float(np.mean([c.ok for c in checks])),
        "faithfulness_failures": failures(checks),
        "unseen_tickers": unseen_tickers(data, test["ticker"], checks, truth, predicted),
        "latency_p50_ms": 1e3 * float(np.percentile(single, 50)),
        "latency_p95_ms": 1e3 * float(np.percentile(single, 95)),
        "signal_per_s_batched": signal_rate,
        "full_per_s_batched": full_rate,
    }
    report["cited_text_grammar"] = cite
    report["steered_by_bands"] = steer is not None
    report["by_scenario"] = by_scenario(test["scenario"], truth, {"lm": predicted, **baselines})
    # the per-date rows (`empty`, one per context), decoded once for both sections
    rows = ic_rows(everything, ic_dates)
    # the longest part: `executor` may spread it (the speed figures above stay in-process)
    written, expected = read_convictions(model, tokenizer, rows, batch_size, executor)
    scores = {"lm_written": written, "lm_expected": expected, **context_scores(Path(data), rows)}
    report["per_date"] = _per_date(rows, scores)
    report["calibration"] = _calibration(rows, expected, calibration)
    name = ("eval-untrained" if untrained else "eval") + ("" if cite else "-uncited") + ".json"
    write_atomic(out or Path(model_dir) / name, json.dumps(report, indent=1))
    return report


def held_out_tickers(data: str | Path) -> list[str]:
    """The tickers the dataset named only in its test split (none for older datasets)."""
    stats = Path(data) / "stats.json"
    return json.loads(stats.read_text()).get("held_out_tickers", []) if stats.exists() else []


def unseen_tickers(data, tickers: pd.Series, checks: list, truth, predicted) -> dict:
    """Faithfulness and decisions on the rows of the names kept out of training."""
    names = held_out_tickers(data)
    unseen = tickers.isin(names).to_numpy()
    kept = [c for c, u in zip(checks, unseen, strict=True) if u]
    return {
        "tickers": names,
        "n": len(kept),
        "faithfulness_rate": float(np.mean([c.ok for c in kept])) if kept else None,
        "failures": failures(kept),
        "decisions": decision_scores(truth[unseen], predicted[unseen]) if kept else None,
    }


def failures(checks, top: int = 20) -> dict[str, int]:
    """Unsupported citations over faithfulness results, counted once per answer, most
    frequent first."""
    counts = Counter(c for check in checks for c in set(check.unsupported))
    return dict(counts.most_common(top))


def _per_date(rows: pd.DataFrame, scores: dict[str, np.ndarray]) -> dict:
    """The `per_date` section: each score's per-date rank IC on the chosen rows."""
    return {
        "scenario": IC_SCENARIO,
        "examples": len(rows),
        "dates": int(rows["date"].nunique()),
        "min_names": MIN_NAMES,
        "block": IC_BLOCK,
        "ic": per_date_ic(rows, scores),
    }


def _calibration(rows: pd.DataFrame, expected: np.ndarray, calibration: Calibration | None) -> dict:
    """The `calibration` section: on the per-date rows (the scenario `calibrate` fits on),
    Brier, ECE and the reliability table of the expected conviction, raw and, when the
    model folder has `calibration.json`, calibrated; `fit` is how that map was fitted."""
    won = (rows["outcome"].to_numpy(dtype=float) > 0).astype(float)
    fit = None
    if calibration is not None:
        keep = ("split", "scenario", "n", "dates", "n_dates", "win_rate", "before", "after")
        fit = {k: calibration.record[k] for k in keep if k in calibration.record}
    return {
        "split": "test",
        "scenario": IC_SCENARIO,
        "examples": len(rows),
        "win_rate": float(won.mean()) if len(won) else None,
        **assess(expected, won, calibration),
        "fit": fit,
    }


def _scores(conviction: np.ndarray, won: np.ndarray, outcome: np.ndarray) -> dict:
    return {
        "brier": float(np.mean((conviction - won) ** 2)),
        "ece": calibration_error(conviction, won),
        # pooled over dates and scenarios: not a skill measure (module docstring);
        # a constant conviction ranks nothing: undefined, not zero
        "rank_ic_pooled": float(spearmanr(conviction, outcome).statistic)
        if np.ptp(conviction) > 0
        else None,
    }
