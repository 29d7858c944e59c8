"""The trained model as a signal source: valid signals, in the engine, and evaluated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import same_files, tiny_trained

from synthpm.agent import PortfolioAgent
from synthpm.backtest import BacktestConfig, Market, compare, run_backtest
from synthpm.executor import LOCAL
from synthpm.limits import Limits
from synthpm.lm.decode import parse_signal
from synthpm.lm.evaluate import evaluate
from synthpm.signals import Signal
from synthpm.strategies import make_strategy

pytestmark = pytest.mark.slow
LIMITS = Limits(max_positions=4)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    data, model = tmp_path_factory.mktemp("ds"), tmp_path_factory.mktemp("lm")
    inputs, contexts = tiny_trained(data, model, max_positions=LIMITS.max_positions)
    return inputs, contexts, data, model


def test_the_agent_answers_with_valid_signals(world):
    _, contexts, _, model = world
    agent = PortfolioAgent.load(model, limits=LIMITS)
    day = contexts[:6]
    fast = agent.signals(day)
    full = agent.signals(day, mode="full")
    assert len(fast) == len(full) == 6
    for a, b in zip(fast, full, strict=True):
        Signal.model_validate(b.model_dump())
        assert (a.decision, a.conviction, a.hold_duration_days) == (
            b.decision,
            b.conviction,
            b.hold_duration_days,
        )  # signal-only mode is full mode's first three keys
    one = agent.analyze_opportunity(ticker="T1", date="2021-03-05", sector="Tech")
    assert one.decision in ("BUY", "SELL", "SKIP") and 1 <= one.hold_duration_days <= 365
    (system,) = PortfolioAgent.load(model).decoder.adapter.prefixes  # warmed at load
    assert list(system) == agent.prompt_ids(day[0])[: len(system)]
    read = PortfolioAgent.load(model, limits=LIMITS, conviction="read").signals(day)
    assert [s.decision for s in read] == [s.decision for s in fast]  # only conviction differs
    texts = agent.decoder.decode_text([agent.prompt_ids(c) for c in day], "signal")
    assert [s.conviction for s in read] == [parse_signal(t, True).conviction for t in texts]


def test_the_agent_trades_through_the_engine(world):
    inputs, contexts, _, model = world
    agent = PortfolioAgent.load(model, limits=LIMITS)
    window = contexts.frame["date"].sort_values().unique()[:8]
    result = run_backtest(
        agent,
        contexts,
        Market.from_inputs(inputs),
        BacktestConfig(end=str(window[-1].date()), limits=LIMITS),
    )
    assert len(result.decisions) == (contexts.frame["date"] <= window[-1]).sum()
    assert set(result.decisions["source"]) == {"lm"}
    assert (result.equity["cash"] >= 0).all()


def test_the_agent_runs_the_same_in_a_ray_worker(world, ray_workers, tmp_path):
    """The agent travels to a worker (its compiled grammar rebuilt there) and decides as here."""
    inputs, contexts, _, model = world
    window = contexts.frame["date"].sort_values().unique()[:8]
    config = BacktestConfig(end=str(window[-1].date()), limits=LIMITS)
    for name, executor in (("local", LOCAL), ("ray", ray_workers)):
        strategies = [PortfolioAgent.load(model, limits=LIMITS), make_strategy("always_buy")]
        compare(strategies, contexts, Market.from_inputs(inputs), config, tmp_path / name,
                log=lambda _: None, allow_in_sample=True, executor=executor)  # fmt: skip
    same_files(tmp_path / "local", tmp_path / "ray", skip=("metrics.json",))
    decisions = pd.read_parquet(tmp_path / "ray" / "lm" / "decisions.parquet")
    assert len(decisions) == (contexts.frame["date"] <= window[-1]).sum()


def test_evaluation_reports_every_figure(world):
    _, _, data, model = world
    report = evaluate(model, data, n=24, batch_size=8)
    assert report["schema_valid_rate"] == 1.0 and report["examples"] == 24
    for key in (
        "accuracy",
        "macro_f1",
        "majority_macro_f1",
        "conviction_brier",
        "faithfulness_rate",
    ):
        assert 0.0 <= report[key] <= 1.0, key
    assert np.isfinite(report["latency_p50_ms"]) and report["full_per_s_batched"] > 0
    assert (model / "eval.json").exists()
