"""Do posts carry signal? Text factors of the stocknet tweets (87 stocks, 2014-2015) against
forward excess returns, and the forecaster and the language model with and without them.
Not a test: it prints figures and writes them to `benchmarks/results/text_factors.json`.

    python benchmarks/text_factors.py                     # everything (about 35 min on 2 cores)
    python benchmarks/text_factors.py --lm-steps 0        # without the LM comparison

Reads ../shared/data (says so and stops when it is missing); each step is timed:
1. a store of the tweets' tickers: prices 2010-2016 from the 2005-2022 panel (returns from
   `adj_close`), SPY's dividend-adjusted closes as the total-return benchmark, VIX, sectors.
   The universe is the 87 names stocknet chose (in 2017: a survivor list, said plainly);
2. `text import` of the tweets (a post after 16:00 New York counts from the next session);
3. embedding throughput: 2,000 tweets embedded without the cache, texts/s; then `text
   factors` over the whole file (embeddings cached under the work folder) and its time;
4. each text factor's per-date rank IC against the coming 1w and 1m excess returns, every
   session of 2014-2015, with a month-block bootstrap t (`metrics.block_bootstrap_t`);
5. walk-forward LightGBM (quarterly refits, tests from 2014) on the same folds with and
   without the `text` family: the out-of-sample per-date IC of the expected return;
6. the language model trained with everything else fixed, prompts with and without the
   SOCIAL section, two seeds each (train 2014-01 .. 2015-03, validation 2015-04 .. 06,
   test 2015-07 .. 12), and `lm eval` of each on the test months.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

import pandas as pd
from decision_quality import make_store as dq_store  # this folder is on the path
from decision_quality import timed

from synthpm.data.importers.text import import_text
from synthpm.data.store import Store
from synthpm.dataset import DatasetConfig, build_dataset
from synthpm.features import PanelInputs, build_features
from synthpm.forecast import ForecastConfig, walk_forward
from synthpm.forecast.targets import return_targets
from synthpm.metrics import block_bootstrap_t, rank_ic_by_date
from synthpm.text.concepts import load_concepts
from synthpm.text.embed import EmbedConfig, embed, make_embedder
from synthpm.text.factors import FactorConfig, factors_batch

TWEETS = "stocknet_tweets_2014_2015.parquet"
PRICES = "us_equities_ohlcv_2005_2022.parquet"
FIRST, LAST = "2010-01-01", "2016-12-31"  # history for the features, and 1m after 2015
IC_START, IC_END = "2014-01-01", "2015-12-31"
HORIZONS = ("1w", "1m")
LM_FIGURES = (  # from `lm eval`'s report
    "accuracy",
    "macro_f1",
    "scenario_rule_macro_f1",
    "majority_macro_f1",
    "faithfulness_rate",
    "conviction_expected_brier",
    "conviction_expected_ece",
)
SPLIT = {"start": "2014-01-02", "end": "2015-12-31", "val": "2015-04-01", "test": "2015-07-01"}


def make_store(shared: Path, work: Path) -> Store:
    store = Store(work / "store.duckdb")
    if store.path.exists():
        return store
    tickers = sorted(pd.read_parquet(shared / TWEETS, columns=["ticker"])["ticker"].unique())
    prices = pd.read_parquet(shared / PRICES)
    keep = prices["ticker"].isin(tickers) & prices["date"].between(
        pd.Timestamp(FIRST).date(), pd.Timestamp(LAST).date()
    )
    subset = work / "prices.parquet"
    prices[keep].to_parquet(subset)
    # decision_quality's store, on these prices and without a membership file
    return dq_store(shared, store.path, {"prices": subset.resolve()})


def per_date_ic(panel_dates, score, outcome) -> dict:
    ic = rank_ic_by_date(panel_dates, score, outcome)
    return {**block_bootstrap_t(ic, "M"), "dates": len(ic)}


def factor_ics(panel: pd.DataFrame, targets: pd.DataFrame) -> pd.DataFrame:
    dates = panel.index.get_level_values("date")
    window = (dates >= IC_START) & (dates <= IC_END)
    rows = {}
    for col in [c for c in panel.columns if c.startswith("text_") and c != "text_covered"]:
        for h in HORIZONS:
            r = per_date_ic(dates[window], panel[col][window], targets[f"excess_{h}"][window])
            rows.setdefault(col, {})[f"ic_{h}"] = r["mean"]
            rows[col][f"t_{h}"] = r["t"]
            rows[col]["dates"] = r["dates"]
    return pd.DataFrame(rows).T


def forecaster_ic(forecasts: pd.DataFrame, targets: pd.DataFrame) -> dict:
    joined = forecasts.join(targets, how="inner")
    dates = joined.index.get_level_values("date")
    window = (dates >= IC_START) & (dates <= IC_END)
    out = {}
    for h in HORIZONS:
        score, real = joined[f"expected_return_{h}"][window], joined[f"excess_{h}"][window]
        out[h] = per_date_ic(dates[window], score, real)
        for year in (2014, 2015):
            keep = dates[window].year == year
            out[h][str(year)] = per_date_ic(dates[window][keep], score[keep], real[keep])["mean"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, default=Path("runs/text_factors"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--embedder", choices=("minilm", "tfidf"), default="minilm")
    parser.add_argument("--lm-steps", type=int, default=600, help="0 skips the LM comparison")
    parser.add_argument("--eval-n", type=int, default=300, help="full-mode eval examples")
    parser.add_argument(
        "--lm-seeds", type=lambda v: [int(x) for x in v.split(",")], default=[0, 1],
        help="training seeds per variant (the spread is the noise the difference must beat)",
    )  # fmt: skip
    args = parser.parse_args()
    if not (args.shared / TWEETS).exists():
        print(f"skipped: {args.shared / TWEETS} not found (real data lives in ../shared/data")
        print("beside the repository; a fresh clone has none)")
        return 0
    work = args.work / args.embedder
    work.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    doc: dict = {"cores": os.cpu_count(), "embedder": args.embedder, "seconds": seconds}
    print(f"cores: {os.cpu_count()}; work folder {work}")

    with timed("store", seconds):
        store = make_store(args.shared, work)
    with timed("text_import", seconds):
        batch = import_text(args.shared / TWEETS, source="stocknet")
        report = store.write(batch)
    doc["texts"] = {"rows": report.rows["texts"], "warnings": report.warnings}
    print(f"   {report.rows['texts']:,} texts; {'; '.join(report.warnings)}")

    concepts = load_concepts()
    embed_config = EmbedConfig(embedder=args.embedder)
    with timed("embed_sample", seconds):
        sample = batch.frames["texts"]["text"].sample(2000, random_state=0).tolist()
        embedder = make_embedder(embed_config, concepts.phrases())
        started = time.perf_counter()
        embed(sample, embedder)
        rate = len(sample) / (time.perf_counter() - started)
    doc["embed_texts_per_s"] = round(rate, 1)
    print(f"   {rate:,.0f} texts/s ({embedder.name}, {os.cpu_count()} cores, 2,000 tweets)")
    with timed("text_factors", seconds):
        factors, stats = factors_batch(
            store, FactorConfig(), embed_config, concepts, cache_root=work / "embeddings"
        )
        store.write(factors)
    doc["factors"] = stats
    print(f"   {stats}")

    with timed("features", seconds):
        inputs = PanelInputs.from_store(store)
        panel = build_features(inputs)
        targets = return_targets(inputs, panel.index)
    table = factor_ics(panel, targets)
    doc["factor_ic"] = table.round(4).to_dict(orient="index")
    print(table.round(4).to_string())

    plain_inputs = dataclasses.replace(
        inputs, text_factors=inputs.text_factors.iloc[:0], text_quotes=inputs.text_quotes.iloc[:0]
    )
    plain_panel = build_features(plain_inputs)  # no text factors: no `text` family
    config = ForecastConfig(min_train_days=756, refit_months=3)
    runs = {}
    for name, frame in (("with_text", panel), ("without_text", plain_panel)):
        with timed(f"forecast_{name}", seconds):
            runs[name] = walk_forward(frame, inputs, config, log=lambda _: None).forecasts
    doc["forecaster_ic"] = {name: forecaster_ic(f, targets) for name, f in runs.items()}
    print(json.dumps(doc["forecaster_ic"], indent=1))

    if args.lm_steps:
        doc["lm"] = compare_lm(
            args, work, seconds, inputs, panel, plain_inputs, plain_panel, runs["without_text"]
        )
    out = args.out / f"text_factors_{args.embedder}.json"
    out.write_text(json.dumps(doc, indent=1, default=float) + "\n")
    print(f"wrote {out}")
    return 0


def compare_lm(args, work, seconds, inputs, panel, plain_inputs, plain_panel, forecasts) -> dict:
    """The same LM recipe on prompts with and without SOCIAL; the forecasts are the
    text-free forecaster's in both, so the prompt's SOCIAL section is the only difference."""
    from synthpm.lm.evaluate import evaluate
    from synthpm.lm.train import TrainConfig, train

    dataset = DatasetConfig(
        start=SPLIT["start"],
        end=SPLIT["end"],
        filings=False,
        scenarios=("empty", "healthy", "holding"),
        val_start=SPLIT["val"],
        test_start=SPLIT["test"],
    )
    out: dict = {}
    for name, (ins, pan) in {
        "with_social": (inputs, panel),
        "without_social": (plain_inputs, plain_panel),
    }.items():
        data = work / f"dataset_{name}"
        with timed(f"dataset_{name}", seconds):
            build_dataset(ins, pan, forecasts, data, dataset, log=lambda _: None)
        for seed in args.lm_seeds:
            model, run = work / f"lm_{name}_seed{seed}", f"{name}_seed{seed}"
            shutil.rmtree(model, ignore_errors=True)  # train anew: a finished one would resume
            with timed(f"lm_train_{run}", seconds):
                train(
                    data,
                    model,
                    # 768 tokens: a SOCIAL section with its quote must not push prompts out
                    TrainConfig(
                        steps=args.lm_steps,
                        seq_len=768,
                        eval_every=max(100, args.lm_steps // 5),
                        seed=seed,
                    ),
                    log=print,
                )
            with timed(f"lm_eval_{run}", seconds):
                report = evaluate(model, data, n=args.eval_n)
            ic = report["per_date"]["ic"]
            out.setdefault(name, {})[f"seed{seed}"] = {
                **{k: report[k] for k in LM_FIGURES},
                **{f"ic_{k}": ic[k]["mean"] for k in ("lm_written", "lm_expected")},
                **{f"t_{k}": ic[k]["t"] for k in ("lm_written", "lm_expected")},
                "ic_dates": ic["lm_written"]["dates"],
                "ic_blocks": ic["lm_written"]["blocks"],
            }
            print(f"   {run}: {json.dumps(out[name][f'seed{seed}'], default=float)}")
    return out


if __name__ == "__main__":
    raise SystemExit(main())
