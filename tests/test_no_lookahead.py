"""No look-ahead across the whole pipeline: features → forecasts → dataset → trained LM agent
→ engine.

Two changes a vendor or the future can make, and what must not move:
- a later split's back-adjustment multiplies one ticker's whole price history by a constant:
  nothing a model reads depends on a price level, so every feature, forecast, prompt,
  label, decision, conviction and equity value is unchanged;
- prices and filings after T change: every decision, trade and equity value up to T is
  unchanged, and so are the training examples.
And the agent reads, byte for byte, the prompt the training data showed for the same
context and book.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import analysts, synthetic_inputs

from synthpm.agent import PortfolioAgent
from synthpm.backtest import BacktestConfig, Market, run_backtest
from synthpm.context import context_from_row
from synthpm.dataset import DatasetConfig, build_contexts, build_dataset, decision_points
from synthpm.dataset.scenarios import ScenarioBook
from synthpm.features import PanelInputs
from synthpm.limits import Limits
from synthpm.lm.train import TrainConfig, train
from synthpm.strategies import make_strategy

pytestmark = pytest.mark.slow
LIMITS = Limits(max_positions=4)
SCALED = "T1"


def stages(inputs: PanelInputs, out) -> dict:
    """Features, forecasts, the dataset (written to `out`) and the backtests' contexts."""
    panel, forecasts = analysts(inputs)
    build_dataset(inputs, panel, forecasts, out, DatasetConfig(limits=LIMITS), log=lambda _: 0)
    start = forecasts.index.get_level_values("date").min()
    contexts = build_contexts(
        inputs, panel, forecasts, decision_points(panel.index, inputs.events, start=start)
    )
    return {"panel": panel, "forecasts": forecasts, "contexts": contexts, "start": start}


def backtests(inputs: PanelInputs, done: dict, model) -> dict:
    """The engine over `done`'s contexts: two baselines and the trained agent."""
    market = Market.from_inputs(inputs)
    strategies = [make_strategy("rules"), make_strategy("lgbm_topk", k=2)]
    strategies.append(PortfolioAgent.load(model))
    config = BacktestConfig(start=str(done["start"].date()), limits=LIMITS)
    done["runs"] = {s.name: run_backtest(s, done["contexts"], market, config) for s in strategies}
    return done


def run(inputs: PanelInputs, out, model) -> dict:
    return backtests(inputs, stages(inputs, out), model)


def shards(folder, split: str) -> pd.DataFrame:
    parts = sorted((folder / split).glob("part-*.parquet"))
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    inputs = synthetic_inputs(tickers=6, days=700, events=True)
    data = tmp_path_factory.mktemp("data")
    base = stages(inputs, data)
    model = tmp_path_factory.mktemp("lm")
    tiny = TrainConfig(depth=1, seq_len=2048, vocab_size=400, batch_size=4, steps=30, lr=1e-2)
    train(data, model, tiny, log=lambda _: None)
    return inputs, data, model, backtests(inputs, base, model)


def up_to(frame: pd.DataFrame, t: pd.Timestamp, column: str = "date") -> pd.DataFrame:
    return frame[pd.to_datetime(frame[column]) <= t].reset_index(drop=True)


def test_a_later_split_changes_nothing_a_model_reads_or_decides(world, tmp_path):
    inputs, data, model, base = world
    prices = inputs.prices.copy()
    # 4: a 4-for-1 split's back-adjustment, a power of two so that every ratio is exact
    mine = prices["ticker"] == SCALED
    prices.loc[mine, ["open", "high", "low", "close"]] *= 4.0
    scaled = run(PanelInputs(**{**vars(inputs), "prices": prices}), tmp_path / "ds", model)

    pd.testing.assert_frame_equal(scaled["panel"], base["panel"], check_exact=True)
    pd.testing.assert_frame_equal(scaled["forecasts"], base["forecasts"], check_exact=True)
    pd.testing.assert_frame_equal(scaled["contexts"].frame, base["contexts"].frame)
    agent = PortfolioAgent.load(model)
    for a, b in zip(scaled["contexts"][:50], base["contexts"][:50], strict=True):
        assert agent.prompt(a) == agent.prompt(b)
    for split in ("train", "validation", "test"):
        pd.testing.assert_frame_equal(shards(tmp_path / "ds", split), shards(data, split))
    for name, result in base["runs"].items():
        other = scaled["runs"][name]
        pd.testing.assert_frame_equal(other.equity, result.equity, check_exact=True)
        pd.testing.assert_frame_equal(other.decisions, result.decisions, check_exact=True)
        # a trade's shares and price are as traded in the scaled history; its value is not
        pd.testing.assert_series_equal(other.trades["value"], result.trades["value"])
        assert (other.trades["ticker"] == result.trades["ticker"]).all()
    assert len(base["runs"]["lm"].decisions) > 0


def test_the_future_after_t_changes_no_decision_trade_or_equity_before_it(world, tmp_path):
    inputs, data, model, base = world
    dates = pd.DatetimeIndex(sorted(inputs.prices["date"].unique()))
    t = dates[int(len(dates) * 0.92)]
    rng = np.random.default_rng(3)
    prices = inputs.prices.copy()
    later = prices["date"] > t
    shock = rng.uniform(0.5, 1.5, later.sum())
    prices.loc[later, ["open", "high", "low", "close"]] *= shock[:, None]
    events = pd.concat(
        [
            inputs.events,
            pd.DataFrame(
                {"ticker": ["T2"], "date_known": [dates[-20]], "event_type": ["bankruptcy"]}
            ),
        ],
        ignore_index=True,
    )
    future = run(
        PanelInputs(**{**vars(inputs), "prices": prices, "events": events}), tmp_path / "ds", model
    )

    past = base["panel"].index.get_level_values("date") <= t
    pd.testing.assert_frame_equal(future["panel"][past], base["panel"][past], check_exact=True)
    known = base["forecasts"].index.get_level_values("date") <= t
    pd.testing.assert_frame_equal(future["forecasts"][known], base["forecasts"][known])
    # the model trained on the train split: the same examples, so the same model
    pd.testing.assert_frame_equal(shards(tmp_path / "ds", "train"), shards(data, "train"))
    for name, result in base["runs"].items():
        other = future["runs"][name]
        for part in ("equity", "decisions", "trades"):
            pd.testing.assert_frame_equal(
                up_to(getattr(other, part), t), up_to(getattr(result, part), t), check_exact=True
            )


def test_the_agent_reads_the_training_prompt_byte_for_byte(world):
    inputs, data, model, base = world
    agent = PortfolioAgent.load(model)
    assert agent.limits == LIMITS  # from the model's dataset.json, not the default
    examples = shards(data, "test")
    frame = pd.concat([pd.read_parquet(p) for p in sorted((data / "contexts").glob("*.parquet"))])
    rows = {(r["date"], r["ticker"]): r for r in frame.to_dict("records")}
    panel = base["panel"]
    checked = set()
    # the bear-market scenario shows a stressed market the real one is not: not a live state
    for example in examples[examples["scenario"] != "bear_market"].head(60).to_dict("records"):
        day = pd.Timestamp(example["date"])
        trading = panel.xs(day, level="date").index
        universe = {t: inputs.sectors.get(t, "Unknown") for t in trading}
        book = ScenarioBook(np.datetime64(day), universe, LIMITS, seed=0)
        (scenario,) = [
            s
            for s in book.for_context(example["ticker"], example["sector"])
            if s.name == example["scenario"]
        ]
        ctx = context_from_row(rows[(day, example["ticker"])], "index", scenario.state)
        assert agent.prompt(ctx, LIMITS) == example["user"]
        checked.add(example["scenario"])
    assert {"empty", "holding", "full"} & checked
