"""Evaluation on held-out conversations: is the model valid, right, calibrated, faithful, fast?

On `n` examples of the test split (dates the model never trained on):
- schema-valid rate (parsed as `Signal`; the constrained decoder makes it 100% by design,
  and this counts it rather than assuming it);
- decision accuracy and macro-F1 against the hindsight labels, beside the majority-class
  baseline (always the most common training decision);
- conviction as a probability that the stock beats the benchmark after costs (the label's
  meaning): Brier score and expected calibration error (10 equal-width bins) against the
  realised outcome > 0, and the rank IC (Spearman) of conviction with the realised net excess
  return; for both readings of conviction (`decode`): the value written ("read") and the
  mean under the model's probabilities ("expected", keys `conviction_expected_*`);
- faithfulness: the share of full-mode answers whose text cites only what the prompt states
  (with the cited-text grammar by default; `cite=False` measures the model unaided);
- latency of one full decision (p50/p95) and batched throughput in both modes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.metrics import accuracy_score, f1_score

from synthpm.dataset.faithfulness import check_faithfulness
from synthpm.lm.decode import SignalDecoder, parse_signal
from synthpm.lm.model import GPT
from synthpm.lm.train import load_model, read_split


def calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    gaps = [abs(p[which == b].mean() - y[which == b].mean()) * (which == b).mean()
            for b in range(bins) if (which == b).any()]  # fmt: skip
    return float(sum(gaps))


def evaluate(
    model_dir: str | Path,
    data: str | Path,
    n: int = 1000,
    batch_size: int = 32,
    untrained: bool = False,
    cite: bool = True,
) -> dict:
    """The report, also written to `model_dir/eval.json` (`eval-untrained.json` for a freshly
    initialised model of the same size: the decoder's validity must not depend on training)."""
    model, tokenizer = load_model(model_dir)
    if untrained:
        torch.manual_seed(0)
        model = GPT(model.config).to(model.embed.weight.dtype).eval()  # same dtype
    decoder = SignalDecoder(model, tokenizer, cite=cite)
    columns = ("system", "user", "decision", "conviction", "outcome")
    test = read_split(Path(data), "test", None, columns)
    test = test.sample(n, random_state=0) if len(test) > n else test
    train = read_split(Path(data), "train", 200_000)
    majority = train["decision"].mode().iloc[0]
    prompts = [tokenizer.render(s, u)[0] for s, u in zip(test["system"], test["user"], strict=True)]

    # Signal mode timed on its second pass (a second or so): the first pays once for the
    # memory of each batch shape (`heap`) and keeps the system prompt's keys and values.
    fast = decoder.decode(prompts, mode="signal", batch_size=batch_size)
    started = time.perf_counter()
    decoder.decode(prompts, mode="signal", batch_size=batch_size)
    signal_rate = len(prompts) / (time.perf_counter() - started)
    started = time.perf_counter()
    scored = decoder.decode_scored(prompts, mode="full", batch_size=batch_size)
    full_rate = len(prompts) / (time.perf_counter() - started)
    full = [parse_signal(text) for text, _ in scored]
    single = []
    for ids in prompts[:50]:
        tick = time.perf_counter()
        decoder.decode([ids], mode="full")
        single.append(time.perf_counter() - tick)

    truth = test["decision"].to_numpy()
    predicted = np.array([s.decision for s in full])
    won = (test["outcome"].to_numpy() > 0).astype(float)
    readings = {
        "conviction": np.array([s.conviction for s in full]),
        "conviction_expected": np.array([expected for _, expected in scored]),
    }
    faithful = [check_faithfulness(s, u).ok for s, u in zip(full, test["user"], strict=True)]
    report = {
        "examples": len(prompts),
        "schema_valid_rate": (len(full) + len(fast)) / (2 * len(prompts)),
        "accuracy": accuracy_score(truth, predicted),
        "macro_f1": f1_score(truth, predicted, average="macro"),
        "majority_class": majority,
        "majority_accuracy": accuracy_score(truth, np.full(len(truth), majority)),
        "majority_macro_f1": f1_score(truth, np.full(len(truth), majority), average="macro"),
        "signal_mode_agreement": float(
            np.mean([a.decision == b.decision for a, b in zip(fast, full, strict=True)])
        ),
        **{
            f"{name}_{key}": value
            for name, conviction in readings.items()
            for key, value in _scores(conviction, won, test["outcome"].to_numpy()).items()
        },
        "faithfulness_rate": float(np.mean(faithful)),
        "latency_p50_ms": 1e3 * float(np.percentile(single, 50)),
        "latency_p95_ms": 1e3 * float(np.percentile(single, 95)),
        "signal_per_s_batched": signal_rate,
        "full_per_s_batched": full_rate,
    }
    report["cited_text_grammar"] = cite
    name = ("eval-untrained" if untrained else "eval") + ("" if cite else "-uncited") + ".json"
    (Path(model_dir) / name).write_text(json.dumps(report, indent=1))
    return report


def _scores(conviction: np.ndarray, won: np.ndarray, outcome: np.ndarray) -> dict:
    return {
        "brier": float(np.mean((conviction - won) ** 2)),
        "ece": calibration_error(conviction, won),
        # a constant conviction ranks nothing: undefined, not zero
        "rank_ic": float(spearmanr(conviction, outcome).statistic)
        if np.ptp(conviction) > 0
        else None,
    }
