"""`lm eval`'s baselines and per-date IC: the pieces by hand, then the report on a tiny model."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_dataset

from synthpm.dataset.faithfulness import check_faithfulness
from synthpm.dataset.scenarios import SCENARIOS
from synthpm.lm.evaluate import (
    COLUMNS,
    by_scenario,
    context_scores,
    decision_scores,
    evaluate,
    failures,
    ic_rows,
    scenario_rule,
    unseen_tickers,
)
from synthpm.lm.train import TrainConfig, read_split, train

# A hand-made test frame: the rule says SELL on the three `holding` rows, SKIP elsewhere.
HAND = pd.DataFrame(
    {
        "scenario": ["holding", "holding", "holding", "empty", "empty", "full"],
        "decision": ["SELL", "SKIP", "BUY", "SKIP", "BUY", "SKIP"],
    }
)


def test_scenario_rule():
    rule = scenario_rule(HAND["scenario"])
    assert list(rule) == ["SELL", "SELL", "SELL", "SKIP", "SKIP", "SKIP"]


def test_scenario_rule_scores_by_hand():
    # SELL: precision 1/3, recall 1 -> F1 1/2; SKIP: 2 of 3 predicted right, 2 of 3 found ->
    # F1 2/3; BUY never predicted -> 0. Macro-F1 = (1/2 + 2/3 + 0) / 3 = 7/18; accuracy 3/6.
    scores = decision_scores(HAND["decision"].to_numpy(), scenario_rule(HAND["scenario"]))
    assert scores == pytest.approx({"accuracy": 0.5, "macro_f1": 7 / 18})


def test_by_scenario_by_hand():
    truth = HAND["decision"].to_numpy()
    table = by_scenario(
        HAND["scenario"], truth, {"rule": scenario_rule(HAND["scenario"]), "truth": truth}
    )
    assert list(table) == ["empty", "full", "holding"]  # SCENARIOS order
    # holding: SELL F1 1/2, SKIP and BUY 0 -> 1/6; empty: SKIP F1 2/3, BUY 0 -> 1/3
    assert table["holding"] == pytest.approx(
        {
            "n": 3,
            "rule_accuracy": 1 / 3,
            "rule_macro_f1": 1 / 6,
            "truth_accuracy": 1.0,
            "truth_macro_f1": 1.0,
        }
    )
    assert table["empty"]["rule_macro_f1"] == pytest.approx(1 / 3)
    assert table["full"]["rule_macro_f1"] == 1.0 and table["full"]["n"] == 1


def test_ic_rows_one_row_per_context_on_spread_dates():
    days = pd.bdate_range("2021-01-04", periods=10)
    rows = [(d, f"T{i}", s) for d in days for i in range(6) for s in ("empty", "holding")]
    rows += [(pd.Timestamp("2021-01-09"), "T0", "empty")]  # a filing-only day: one context
    test = pd.DataFrame(rows, columns=["date", "ticker", "scenario"])
    test["date"] = test["date"].dt.date  # as the shards store it
    every = ic_rows(test, None)
    assert set(every["scenario"]) == {"empty"} and every["date"].nunique() == 10
    assert not every.duplicated(["date", "ticker"]).any()
    three = ic_rows(test, 3)
    assert list(three["date"].unique()) == [days[0], days[4], days[9]]  # first, middle, last
    assert ic_rows(test, 0).empty


def test_context_scores_join_by_date_and_ticker(tmp_path):
    (tmp_path / "contexts").mkdir()
    frame = pd.DataFrame(
        {
            "date": pd.to_datetime(["2021-01-04", "2021-01-04", "2021-01-05"]),
            "ticker": ["A", "B", "A"],
            "expected_return_1m": [0.01, np.nan, 0.03],
            "ret_21d": [0.1, 0.2, 0.3],
        }
    )
    frame.to_parquet(tmp_path / "contexts" / "part-00000.parquet")
    rows = pd.DataFrame(
        {"date": pd.to_datetime(["2021-01-05", "2021-01-04"]), "ticker": ["A", "B"]}
    )
    scores = context_scores(tmp_path, rows)
    assert scores["forecaster_1m"][0] == 0.03 and math.isnan(scores["forecaster_1m"][1])
    assert list(scores["reversal_1m"]) == [-0.3, -0.2]
    assert "volatility_1m" not in scores  # the frame has no vol_21d: left out, not NaN


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    data = tmp_path_factory.mktemp("ds")
    tiny_dataset(data)
    model = tmp_path_factory.mktemp("lm")
    tiny = TrainConfig(depth=1, seq_len=2048, vocab_size=400, batch_size=4, steps=40, lr=1e-2)
    train(data, model, tiny, log=lambda _: None)
    return data, model


@pytest.mark.slow
def test_evaluation_reports_baselines_and_per_date_ic(world):
    data, model = world
    report = evaluate(model, data, n=30, batch_size=8)
    assert report["examples"] == 30 and report["schema_valid_rate"] == 1.0
    # the scenario rule on the very rows evaluated (the same sample as `evaluate` draws)
    test = read_split(data, "test", None, COLUMNS).sample(30, random_state=0)
    rule = decision_scores(test["decision"].to_numpy(), scenario_rule(test["scenario"]))
    assert report["scenario_rule_macro_f1"] == pytest.approx(rule["macro_f1"])
    assert report["scenario_rule_accuracy"] == pytest.approx(rule["accuracy"])
    for key in ("macro_f1", "majority_macro_f1", "scenario_rule_macro_f1"):
        assert 0.0 <= report[key] <= 1.0, key
    assert "conviction_rank_ic_pooled" in report and "conviction_rank_ic" not in report

    scenarios = report["by_scenario"]
    assert set(scenarios) <= set(SCENARIOS)
    assert sum(s["n"] for s in scenarios.values()) == 30
    for row in scenarios.values():
        for who in ("lm", "scenario_rule", "majority"):
            assert 0.0 <= row[f"{who}_macro_f1"] <= 1.0 and 0.0 <= row[f"{who}_accuracy"] <= 1.0

    per_date = report["per_date"]
    empty = read_split(data, "test", None, ("date", "scenario")).query("scenario == 'empty'")
    assert per_date["scenario"] == "empty" and 0 < per_date["examples"] <= len(empty)
    baselines = {"forecaster_1m", "reversal_1m", "volatility_1m"}
    assert set(per_date["ic"]) == {"lm_written", "lm_expected", *baselines}
    for name, stats in per_date["ic"].items():
        assert 0 <= stats["dates"] <= per_date["dates"], name
        if stats["dates"]:
            assert -1.0 <= stats["mean"] <= 1.0, name
        if stats["se"]:
            assert stats["t"] == pytest.approx(stats["mean"] / stats["se"]), name
    # the model's expectation moves with the evidence and the forecaster is there by then
    assert per_date["ic"]["lm_expected"]["dates"] > 0
    assert per_date["ic"]["forecaster_1m"]["dates"] > 0
    saved = json.loads((model / "eval.json").read_text())
    assert saved["per_date"]["ic"]["lm_expected"] == per_date["ic"]["lm_expected"]


def test_unseen_tickers_and_failures_are_counted_per_answer(tmp_path):
    prompt = "COMPANY: AAA, 1m +2.0%"
    answers = ["AAA +2.0%", "AAA +3.0% +3.0%, like BBB", "BBB did +3.0%", "AAA up"]
    checks = [check_faithfulness(a, prompt) for a in answers]
    assert failures(checks) == {"+3%": 2, "BBB": 2}  # once per answer
    (tmp_path / "stats.json").write_text(json.dumps({"held_out_tickers": ["ZZZ"]}))
    tickers = pd.Series(["ZZZ", "YYY", "ZZZ", "YYY"])
    truth = np.array(["BUY", "SKIP", "SKIP", "SKIP"], dtype=object)
    predicted = np.array(["BUY", "SKIP", "BUY", "SKIP"], dtype=object)
    unseen = unseen_tickers(tmp_path, tickers, checks, truth, predicted)
    assert unseen["tickers"] == ["ZZZ"] and unseen["n"] == 2
    assert unseen["faithfulness_rate"] == 0.5
    assert unseen["failures"] == {"+3%": 1, "BBB": 1} and unseen["decisions"]["accuracy"] == 0.5
    # a dataset from before held-out tickers: no rows, no rates
    (tmp_path / "stats.json").write_text("{}")
    empty = unseen_tickers(tmp_path, tickers, checks, truth, predicted)
    assert empty["n"] == 0 and empty["faithfulness_rate"] is None
